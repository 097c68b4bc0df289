"""The labelled evaluation set: per-level recall and precision, and the two bars a release must clear.

Missing a critical case is the worst error the system can make, so critical recall must be 100%, and the
recall of "high or above" at least 95%. Over-flagging only costs precision, which is reported, not gated.
The confusion matrix is printed on every run (rows: labelled level, columns: assessed level).
"""
import json
from collections import Counter
from pathlib import Path

import pytest

from services.triage.assessment import LEVELS, assess, case_facts_from_mapping

EVALUATION_SET = Path(__file__).resolve().parents[2] / "data" / "triage_eval.jsonl"
LANGUAGE_FORMS = {"iraqi", "msa", "english", "arabizi", "mixed"}
CHECKLIST_FIELDS = ("victim_age", "material_published", "deadline_hours", "suicidal_thoughts", "threat_of_violence")
HIGH_OR_ABOVE = {"high", "critical"}


def load_cases() -> list[dict]:
    with EVALUATION_SET.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def results() -> list[tuple[dict, str]]:
    return [(case, assess(case_facts_from_mapping(case)).level) for case in load_cases()]


def confusion_report(results: list[tuple[dict, str]]) -> str:
    counts = Counter((case["label"], level) for case, level in results)
    width = max(map(len, LEVELS)) + 2
    lines = ["labelled \\ assessed".ljust(20) + "".join(level.rjust(width) for level in LEVELS)]
    for label in LEVELS:
        lines.append(label.ljust(20) + "".join(str(counts[(label, level)]).rjust(width) for level in LEVELS))
    lines.append("")
    for level in LEVELS:
        lines.append(f"{level:<9} recall {recall(results, {level}):7.1%}   precision {precision(results, level):7.1%}")
    lines.append(f"high or above recall {recall(results, HIGH_OR_ABOVE):.1%}")
    misses = [f"  {case['id']}: labelled {case['label']}, assessed {level}: {case['narrative']}"
              for case, level in results if case["label"] != level]
    return "\n".join(lines + (["disagreements:", *misses] if misses else []))


def recall(results, labels: set[str]) -> float:
    relevant = [level for case, level in results if case["label"] in labels]
    return sum(level in labels for level in relevant) / len(relevant) if relevant else 1.0


def precision(results, level: str) -> float:
    flagged = [case["label"] for case, assessed in results if assessed == level]
    return sum(label == level for label in flagged) / len(flagged) if flagged else 1.0


def test_the_set_is_large_varied_and_mostly_text_only():
    cases = load_cases()
    assert len(cases) >= 150
    assert {case["lang"] for case in cases} == LANGUAGE_FORMS
    assert len({case["id"] for case in cases}) == len(cases)
    assert {case["label"] for case in cases} == set(LEVELS)
    serious = [case for case in cases if case["label"] in HIGH_OR_ABOVE]
    text_only = [case for case in serious if all(case.get(field) is None for field in CHECKLIST_FIELDS)]
    assert len(text_only) * 2 >= len(serious)
    tags = Counter(tag for case in cases for tag in case["tags"])
    assert tags["hard_negative"] >= 20 and tags["hard_positive"] >= 10


def test_critical_recall_is_total_and_high_or_above_recall_at_least_95_percent(results, capsys):
    report = confusion_report(results)
    with capsys.disabled():
        print("\n" + report)
    assert recall(results, {"critical"}) == 1.0, report
    assert recall(results, HIGH_OR_ABOVE) >= 0.95, report
