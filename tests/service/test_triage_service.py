"""Triage assesses each case once, seals the words behind its reasons, and picks the lane by level."""
import json
import uuid

import psycopg2.errors
import pytest
from nameko.testing.services import worker_factory

from sanad.contracts.events import new_event, parse, particulars
from sanad.contracts.sealing import particulars_context, preferences_context
from sanad.platform.outbox import OutboxWriter
from services.triage import handlers
from services.triage.assessment import DEFAULT_LEXICON_DIRECTORY, Assessor
from services.triage.handlers import Assessments, triage_case
from services.triage.service import TriageService
from tests.service.conftest import outbox_events, rows
from tests.service.events import case_received

SUICIDAL = "she said she will drink poison tonight, she wrote a goodbye letter"


ASSESSOR = Assessor.from_directory(DEFAULT_LEXICON_DIRECTORY)


def triage(pools, outbox, keys, assessor=ASSESSOR):
    return worker_factory(TriageService, db=pools["triage"], outbox=outbox, keys=keys, risk_model=assessor)


def told(body, keys):
    """The particulars (reasons, preferences) an announced case.triaged carries sealed."""
    return particulars(parse(body), keys.transport)


def test_a_critical_case_is_stored_and_announced_on_the_critical_lane(pools, outbox, keys):
    event = case_received(keys, SUICIDAL, suicidal_thoughts=True)
    triage(pools, outbox, keys).on_case_received([event.to_message()])

    [assessment] = rows(pools["triage"], "SELECT * FROM assessments")
    assert assessment["level"] == "critical"
    assert "poison" not in json.dumps(assessment, default=str), "evidence is sealed at rest"
    [(routing_key, body)] = outbox_events(pools["triage"])
    assert routing_key == "case.triaged.critical"
    triaged = parse(body)
    assert triaged.data["level"] == "critical"
    assert triaged.correlation_id == event.correlation_id
    assert "poison" not in json.dumps(body), "evidence is sealed on the broker"
    codes = {reason["code"] for reason in told(body, keys)["reasons"]}
    assert "suicidal_thoughts" in codes and not any(code in json.dumps(body) for code in codes), "so are reasons"


def test_particulars_that_open_to_something_else_are_set_aside_at_once_naming_the_field(pools, outbox, keys):
    message = case_received(keys, "he wants money").to_message()
    case_id = message["data"]["case_id"]
    message["data"]["sealed_particulars"] = keys.transport.seal(json.dumps({"facts": {"victim_age": "old"}}),
                                                                particulars_context(case_id))
    triage(pools, outbox, keys).on_case_received([message])

    [letter] = rows(pools["triage"], "SELECT * FROM dead_letters")
    assert letter["reason"].startswith("contract:") and "sealed_particulars" in letter["reason"]
    assert rows(pools["triage"], "SELECT * FROM handler_failures") == [], "not retried: it would fail every time"
    assert rows(pools["triage"], "SELECT case_id FROM assessments") == [] and outbox_events(pools["triage"]) == []


def test_a_case_received_of_version_1_still_queued_is_assessed_from_its_plain_facts(pools, outbox, keys):
    message = case_received(keys, "he wants money").to_message()
    message["version"] = 1
    del message["data"]["sealed_particulars"]
    message["data"]["facts"] = {"suicidal_thoughts": True}
    message["data"]["preferences"] = {"family_contact": True, "staff_gender": "female", "victim_age": 16}
    triage(pools, outbox, keys).on_case_received([message])

    [(_, body)] = outbox_events(pools["triage"])
    assert {"code": "suicidal_thoughts", "source": "checklist"} in told(body, keys)["reasons"]
    assert told(body, keys)["preferences"] == message["data"]["preferences"]
    assert "female" not in json.dumps(body), "announced sealed, as version 2"


def test_a_duplicate_case_received_event_has_one_effect(pools, outbox, keys):
    message = case_received(keys, "he wants money or he will post the video").to_message()
    service = triage(pools, outbox, keys)
    service.on_case_received([message])
    service.on_case_received([message])

    assert len(rows(pools["triage"], "SELECT case_id FROM assessments")) == 1
    assert len(outbox_events(pools["triage"])) == 1


def test_a_message_breaking_its_contract_is_set_aside_with_its_reason(pools, outbox, keys):
    message = case_received(keys, "anything").to_message()
    message["data"]["governorate"] = "atlantis"
    triage(pools, outbox, keys).on_case_received([message])

    [letter] = rows(pools["triage"], "SELECT * FROM dead_letters")
    assert letter["queue"] == "triage.case_received"
    assert "governorate" in letter["reason"]
    assert rows(pools["triage"], "SELECT case_id FROM assessments") == []


class BrokenModel:
    lexicon_version = "broken"

    def assess(self, facts):
        raise ValueError("a bug in the model")


def test_a_case_the_model_cannot_score_goes_to_a_person_as_critical(pools, outbox, keys):
    event = case_received(keys, "he will post my pictures")
    triage(pools, outbox, keys, assessor=BrokenModel()).on_case_received([event.to_message()])

    [(routing_key, body)] = outbox_events(pools["triage"])
    assert routing_key == "case.triaged.critical"
    assert told(body, keys)["reasons"] == [{"code": "assessment_failed", "source": "text"}]


# Overrides -------------------------------------------------------------------------------------------

def risk_overridden(keys, case_id, level, previous, reason="she has the pills with her now"):
    from datetime import datetime, timezone

    from sanad.contracts.events import new_event
    from sanad.contracts.sealing import override_reason_context
    from sanad.contracts.vocabulary import lane_for
    return new_event("case.risk_overridden", {
        "case_id": case_id, "reference": "SND-TEST-0001", "previous_level": previous, "level": level,
        "sealed_reason": keys.transport.seal(reason, override_reason_context(case_id)),
        "overridden_by": uuid.uuid4(), "role": "operator", "overridden_at": datetime.now(timezone.utc),
    }, producer="intake", lane=lane_for(level))


def test_an_override_keeps_the_original_assessment_and_announces_the_new_level_on_its_lane(pools, outbox, keys):
    received = case_received(keys, "he wants money or he will post the video", needs=("counselling", "legal_aid"),
                             consents=("legal_aid",))
    case_id = received.data["case_id"]
    service = triage(pools, outbox, keys)
    service.on_case_received([received.to_message()])
    [original] = rows(pools["triage"], "SELECT * FROM assessments")

    service.on_risk_overridden(risk_overridden(keys, case_id, "critical", original["level"]).to_message())

    [kept] = rows(pools["triage"], "SELECT * FROM assessments")
    assert kept == original, "the original assessment is untouched"
    [override] = rows(pools["triage"], "SELECT * FROM overrides")
    assert (override["previous_level"], override["level"]) == (original["level"], "critical")
    assert "pills" not in json.dumps(override, default=str), "the reason is sealed at rest"
    (_, first), (routing_key, body) = outbox_events(pools["triage"])
    assert routing_key == "case.triaged.critical"
    announced = parse(body)
    assert announced.data["level"] == "critical" and 75 <= announced.data["score"] <= 100
    assert told(body, keys)["reasons"][-1] == {"code": "override", "source": "override"}
    assert told(body, keys)["reasons"][:-1] == told(first, keys)["reasons"]
    assert (announced.data["needs"], announced.data["consents"]) == (["counselling", "legal_aid"], ["legal_aid"])
    assert "pills" not in json.dumps(body)


def test_an_override_carries_on_what_the_victim_asked_of_her_helpers(pools, outbox, keys):
    asked = {"family_contact": False, "staff_gender": "female", "victim_age": 15}
    received = case_received(keys, "he will post my pictures", preferences=asked)
    service = triage(pools, outbox, keys)
    service.on_case_received([received.to_message()])
    service.on_risk_overridden(risk_overridden(keys, received.data["case_id"], "critical", "high").to_message())

    (_, first), (_, overridden) = outbox_events(pools["triage"])
    assert told(first, keys)["preferences"] == told(overridden, keys)["preferences"] == asked


def test_what_the_victim_asked_is_kept_sealed_and_what_an_older_version_kept_in_the_clear_is_sealed_by_reseal(
        pools, outbox, keys):
    asked = {"family_contact": False, "staff_gender": "female", "victim_age": 15}
    received = case_received(keys, "he will post my pictures", preferences=asked)
    case_id = received.data["case_id"]
    service = triage(pools, outbox, keys)
    service.on_case_received([received.to_message()])

    def kept():
        [row] = rows(pools["triage"], "SELECT preferences, preferences_sealed FROM assessments")
        assert row["preferences"] is None and "victim_age" not in row["preferences_sealed"]
        return json.loads(keys.data.open(row["preferences_sealed"], preferences_context(case_id)))
    assert kept() == asked
    with pools["triage"].transaction() as cur:  # as a row assessed before migration 0004 keeps them
        cur.execute("UPDATE assessments SET preferences = %s, preferences_sealed = NULL", (json.dumps(asked),))
    service.on_risk_overridden(risk_overridden(keys, case_id, "critical", "high").to_message())
    assert told(outbox_events(pools["triage"])[-1][1], keys)["preferences"] == asked, "an override carries them on"

    assert handlers.reseal(pools["triage"], keys.data) == {"assessments": 1, "overrides": 0}
    assert kept() == asked
    assert handlers.reseal(pools["triage"], keys.data) == {"assessments": 0, "overrides": 0}, "safe to run again"


def test_an_override_lowering_a_case_goes_on_the_normal_lane(pools, outbox, keys):
    received = case_received(keys, SUICIDAL, suicidal_thoughts=True)
    service = triage(pools, outbox, keys)
    service.on_case_received([received.to_message()])
    service.on_risk_overridden(risk_overridden(keys, received.data["case_id"], "high", "critical").to_message())

    routing_key, body = outbox_events(pools["triage"])[-1]
    assert routing_key == "case.triaged.normal" and parse(body).data["level"] == "high"
    assert parse(body).data["score"] <= 74


def test_an_override_of_a_case_not_yet_assessed_is_returned_to_the_queue_not_lost(pools, outbox, keys):
    import pytest

    from services.triage.handlers import NotYetAssessed
    event = risk_overridden(keys, uuid.uuid4(), "critical", None)
    with pytest.raises(NotYetAssessed):
        triage(pools, outbox, keys).on_risk_overridden(event.to_message())

    assert rows(pools["triage"], "SELECT * FROM processed_events") == [], "not marked handled: it will come again"
    [failure] = rows(pools["triage"], "SELECT * FROM handler_failures")
    assert failure["event_id"] == event.id


def test_cases_received_in_one_batch_are_assessed_in_one_transaction_each_once(pools, outbox, keys):
    critical = case_received(keys, SUICIDAL, suicidal_thoughts=True)
    other = case_received(keys, "he wants money or he will post the video")
    messages = [critical.to_message(), other.to_message(), critical.to_message()]

    triage(pools, outbox, keys).on_case_received(messages)

    assessed = rows(pools["triage"], "SELECT case_id, level, xmin::text AS tx FROM assessments")
    assert sorted(str(a["case_id"]) for a in assessed) == sorted(str(e.data["case_id"]) for e in (critical, other))
    assert len({a["tx"] for a in assessed}) == 1, "one transaction, one commit"
    lanes = sorted(routing_key for routing_key, _ in outbox_events(pools["triage"]))
    assert lanes == ["case.triaged.critical", "case.triaged.normal"], "each on its own level's lane, once"


def replayed(event):
    """The same case.received under a new event id, as a republished event would come."""
    return new_event("case.received", event.data, producer="intake", correlation_id=event.correlation_id)


def test_a_case_received_again_under_a_new_event_id_is_assessed_and_announced_once(pools, outbox, keys):
    first = case_received(keys, "he wants money or he will post the video")
    other = case_received(keys, "he threatens to send the pictures to my father")
    service = triage(pools, outbox, keys)
    service.on_case_received([first.to_message()])

    service.on_case_received([replayed(first).to_message(), other.to_message(), replayed(first).to_message()])
    service.on_case_received([replayed(first).to_message()])

    assessed = rows(pools["triage"], "SELECT case_id FROM assessments")
    assert sorted(str(a["case_id"]) for a in assessed) == sorted(str(e.data["case_id"]) for e in (first, other))
    announced = [parse(body).data["case_id"] for _, body in outbox_events(pools["triage"])]
    assert sorted(map(str, announced)) == sorted(str(e.data["case_id"]) for e in (first, other))


def test_a_case_assessed_elsewhere_after_its_batch_looked_fails_the_batch_on_the_key(pools, keys):
    first, other = (case_received(keys, "he wants money or he will post the video") for _ in range(2))
    events = [parse(first.to_message()), parse(other.to_message())]
    assessments = Assessments()

    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pools["triage"].transaction() as cur:
            assessments.read(cur, events)
            with pools["triage"].transaction() as elsewhere:  # triage-critical, say, got there first
                triage_case(elsewhere, events[0], OutboxWriter([]), keys, ASSESSOR)
            for event in events:
                triage_case(cur, event, OutboxWriter([]), keys, ASSESSOR, assessments=assessments)

    assert [str(row["case_id"]) for row in rows(pools["triage"], "SELECT case_id FROM assessments")] == [
        str(first.data["case_id"])], "nothing of the batch was kept"
