"""Triage assesses each case once, seals the words behind its reasons, and picks the lane by level."""
import json

from nameko.testing.services import worker_factory

from sanad.contracts.events import parse
from services.triage.assessment import DEFAULT_LEXICON_DIRECTORY, Assessor
from services.triage.service import TriageService
from tests.service.conftest import outbox_events, rows
from tests.service.events import case_received

SUICIDAL = "she said she will drink poison tonight, she wrote a goodbye letter"


ASSESSOR = Assessor.from_directory(DEFAULT_LEXICON_DIRECTORY)


def triage(pools, outbox, keys, assessor=ASSESSOR):
    return worker_factory(TriageService, db=pools["triage"], outbox=outbox, keys=keys, risk_model=assessor)


def test_a_critical_case_is_stored_and_announced_on_the_critical_lane(pools, outbox, keys):
    event = case_received(keys, SUICIDAL, suicidal_thoughts=True)
    triage(pools, outbox, keys).on_case_received(event.to_message())

    [assessment] = rows(pools["triage"], "SELECT * FROM assessments")
    assert assessment["level"] == "critical"
    assert "poison" not in json.dumps(assessment, default=str), "evidence is sealed at rest"
    [(routing_key, body)] = outbox_events(pools["triage"])
    assert routing_key == "case.triaged.critical"
    triaged = parse(body)
    assert triaged.data["level"] == "critical"
    assert triaged.correlation_id == event.correlation_id
    assert "poison" not in json.dumps(body), "evidence is sealed on the broker"


def test_a_duplicate_case_received_event_has_one_effect(pools, outbox, keys):
    message = case_received(keys, "he wants money or he will post the video").to_message()
    service = triage(pools, outbox, keys)
    service.on_case_received(message)
    service.on_case_received(message)

    assert len(rows(pools["triage"], "SELECT case_id FROM assessments")) == 1
    assert len(outbox_events(pools["triage"])) == 1


def test_a_message_breaking_its_contract_is_set_aside_with_its_reason(pools, outbox, keys):
    message = case_received(keys, "anything").to_message()
    message["data"]["governorate"] = "atlantis"
    triage(pools, outbox, keys).on_case_received(message)

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
    triage(pools, outbox, keys, assessor=BrokenModel()).on_case_received(event.to_message())

    [(routing_key, body)] = outbox_events(pools["triage"])
    assert routing_key == "case.triaged.critical"
    assert parse(body).data["reasons"] == [{"code": "assessment_failed", "source": "text"}]
