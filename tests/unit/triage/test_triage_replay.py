"""`sanad triage score`: JSON Lines in, one JSON line out per case, bad lines reported and skipped over."""
import io
import json

from services.triage.assessment import CaseFacts, assess
from services.triage.replay import score_stream


def replay(*lines: str) -> tuple[list[dict], int]:
    out = io.StringIO()
    errors = score_stream(lines, out)
    return [json.loads(line) for line in out.getvalue().splitlines()], errors


def test_each_case_gives_one_line_with_id_level_score_and_reasons():
    results, errors = replay(
        json.dumps({"id": "a", "narrative": "راح انتحر الليلة"}, ensure_ascii=False),
        json.dumps({"id": 7, "narrative": "تسأل عن الحماية", "victim_age": 15}),
    )
    assert errors == 0
    assert [(r["id"], r["level"]) for r in results] == [("a", "critical"), (7, "high")]
    assert results[1]["reasons"] == [{"code": "minor", "evidence": ["victim_age=15"], "source": "checklist"}]
    assert all(isinstance(r["score"], int) for r in results)


def test_replay_takes_the_same_path_as_the_service():
    facts = {"id": "x", "narrative": "عمرها ١٥ ويهددها ينشر صورها لباجر", "suicidal_thoughts": True}
    [result], _ = replay(json.dumps(facts, ensure_ascii=False))
    expected = assess(CaseFacts(narrative=facts["narrative"], suicidal_thoughts=True)).to_dict()
    assert {k: result[k] for k in ("level", "score", "reasons")} == {
        k: expected[k] for k in ("level", "score", "reasons")}


def test_absent_and_null_fields_are_unknown():
    [result], errors = replay('{"id": "n", "narrative": null, "victim_age": null}')
    assert errors == 0 and result["level"] == "low" and result["reasons"] == []


def test_a_bad_field_names_the_field_and_the_replay_goes_on():
    results, errors = replay(
        '{"id": "bad", "victim_age": "fifteen"}',
        '{"id": "good", "narrative": "يبتزها"}',
    )
    assert errors == 1
    assert results[0]["id"] == "bad" and "victim_age" in results[0]["error"] and "level" not in results[0]
    assert results[1] == {**results[1], "id": "good", "level": "medium"}


def test_a_line_that_is_not_json_is_reported_with_its_line_number():
    results, errors = replay("{not json", '{"id": 2}')
    assert errors == 1
    assert results[0]["id"] is None and results[0]["line"] == 1 and "JSON" in results[0]["error"]
    assert results[1]["level"] == "low"


def test_a_line_that_is_not_an_object_or_has_a_bad_id_is_reported():
    results, errors = replay("[1, 2]", '{"id": {"nested": 1}}')
    assert errors == 2
    assert "object" in results[0]["error"] and results[1]["error"].startswith("id")


def test_blank_lines_are_skipped():
    results, errors = replay("", "   ", '{"id": 1}')
    assert len(results) == 1 and errors == 0
