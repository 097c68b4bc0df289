"""`sanad triage score`: replay cases from JSON Lines through the assessment the service uses.

A supervisor runs past cases against new lexicons before deploying them and compares the levels. Each input
line is one case (id, narrative, victim_age, material_published, deadline_hours, suicidal_thoughts,
threat_of_violence; any may be null or absent); each output line is {"id", "level", "score", "reasons"}.
A line that cannot be read yields {"id", "error"} naming the field at fault, and the replay goes on: one
bad case must not hide the verdict on the others.
"""
import json
from typing import Callable, Iterable, TextIO

from services.triage.assessment import Assessment, CaseFacts, InvalidCaseFacts, assess, case_facts_from_mapping


def score_stream(
    lines_in: Iterable[str], out: TextIO, assessor: Callable[[CaseFacts], Assessment] = assess
) -> int:
    """Score every case in lines_in, writing one JSON line per case to out. Returns the number of errors."""
    errors = 0
    for number, line in enumerate(lines_in, start=1):
        if not line.strip():
            continue
        result = _score_line(line, number, assessor)
        errors += "error" in result
        out.write(json.dumps(result, ensure_ascii=False) + "\n")
    return errors


def _score_line(line: str, number: int, assessor: Callable[[CaseFacts], Assessment]) -> dict:
    try:
        case = json.loads(line)
    except json.JSONDecodeError as error:
        return {"id": None, "line": number, "error": f"line: not valid JSON ({error.msg})"}
    if not isinstance(case, dict):
        return {"id": None, "line": number, "error": "line: expected a JSON object"}
    case_id = case.get("id")
    if case_id is not None and not isinstance(case_id, (str, int)):
        return {"id": None, "line": number, "error": "id: must be a string, a number or null"}
    try:
        facts = case_facts_from_mapping(case)
    except InvalidCaseFacts as error:
        return {"id": case_id, "line": number, "error": str(error)}
    assessment = assessor(facts)
    return {
        "id": case_id,
        "level": assessment.level,
        "score": assessment.score,
        "reasons": [reason.to_dict() for reason in assessment.reasons],
        "lexicon_version": assessment.lexicon_version,
    }
