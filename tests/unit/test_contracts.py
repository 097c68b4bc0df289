"""The event envelope and versioned schemas: what producers may emit and what consumers accept."""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from sanad.contracts.events import (
    CURRENT_VERSION, SCHEMAS, ContractError, Envelope, Event, new_event, parse, particulars, seal_particulars,
)
from sanad.contracts.vocabulary import LANES, RISK_LEVELS, lane_for
from sanad.crypto import Keys, SealError

NOW = datetime(2024, 3, 10, 9, 30, tzinfo=timezone.utc)
CASE_ID = uuid.UUID("6b1f0c52-3c1e-4d8a-9a51-0f3e8f2b7c10")
REFERENCE = "SND-7K3Q-9F2M"
SEALED = "s1.k1.bm9uY2Vub25jZW5vbmNlY2lwaGVydGV4dA"


RING = Keys.generate().transport
RECEIVED_PARTICULARS = {
    "facts": {"victim_age": 17, "material_published": False, "deadline_hours": 48.0, "suicidal_thoughts": None,
              "threat_of_violence": True},
    "preferences": {"family_contact": False, "staff_gender": "female", "victim_age": 17},
}
TRIAGED_PARTICULARS = {
    "reasons": [{"code": "minor", "source": "checklist"}, {"code": "self_harm", "source": "text"}],
    "preferences": {"family_contact": True, "staff_gender": None, "victim_age": None},
}


def case_received(particulars_=RECEIVED_PARTICULARS):
    return {
        "case_id": CASE_ID, "reference": REFERENCE, "received_at": NOW, "channel": "whatsapp",
        "governorate": "basra", "needs": ["counselling", "legal_aid", "mediation"],
        "consents": ["counselling", "legal_aid"], "sealed_narrative": SEALED,
        "sealed_particulars": seal_particulars("case.received", particulars_, RING, CASE_ID),
    }


def case_triaged(particulars_=TRIAGED_PARTICULARS):
    return {
        "case_id": CASE_ID, "reference": REFERENCE, "received_at": NOW, "level": "critical", "score": 92,
        "sealed_particulars": seal_particulars("case.triaged", particulars_, RING, CASE_ID),
        "sealed_evidence": SEALED, "lexicon_version": "2024.03-ar-iq", "governorate": "basra",
        "needs": ["counselling", "legal_aid"], "consents": ["counselling"],
    }


def case_unmatched():
    return {"case_id": CASE_ID, "reference": REFERENCE, "level": "high", "governorate": "halabja",
            "services": ["shelter", "content_removal"]}


def referral_created():
    return {
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"), "case_id": CASE_ID,
        "reference": REFERENCE, "partner_id": uuid.UUID("a3d4e5f6-0718-4a2b-9c3d-4e5f60718293"),
        "partner_name": "Basra Women's Legal Aid", "service": "legal_aid", "level": "critical",
        "governorate": "basra", "created_at": NOW + timedelta(seconds=2),
    }


def delivery_attempted():
    return {
        "delivery_id": uuid.UUID("5e6f7081-92a3-4b4c-8d5e-6f708192a3b4"), "webhook_id": "msg_5e6f708192a3",
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"), "case_id": CASE_ID,
        "partner_id": uuid.UUID("a3d4e5f6-0718-4a2b-9c3d-4e5f60718293"), "attempt": 2, "outcome": "retrying",
        "status_code": 503, "latency_ms": 812.5, "attempted_at": NOW + timedelta(seconds=9),
        "next_attempt_at": NOW + timedelta(minutes=5, seconds=9),
    }


def referral_status_changed():
    return {
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"), "case_id": CASE_ID,
        "reference": REFERENCE, "partner_id": uuid.UUID("a3d4e5f6-0718-4a2b-9c3d-4e5f60718293"),
        "status": "declined", "previous_status": "offered", "note_code": "no_capacity",
        "changed_at": NOW + timedelta(minutes=12), "changed_by": "partner",
    }


def referral_escalated():
    return {
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"), "case_id": CASE_ID,
        "reference": REFERENCE, "level": "critical", "service": "legal_aid", "governorate": "basra",
        "reason": "ack_timeout", "step": 2, "reoffered_to": uuid.UUID("b4e5f607-1829-4a3b-8d4e-5f6071829304"),
        "escalated_at": NOW + timedelta(minutes=15),
    }


def notification_exhausted():
    return {
        "delivery_id": uuid.UUID("5e6f7081-92a3-4b4c-8d5e-6f708192a3b4"), "webhook_id": "msg_5e6f708192a3",
        "referral_id": uuid.UUID("1c7e2f0a-5b7d-4f3e-8c2a-6d9e0b1a2f34"), "case_id": CASE_ID,
        "partner_id": uuid.UUID("a3d4e5f6-0718-4a2b-9c3d-4e5f60718293"), "attempts": 8,
        "last_status_code": None, "last_error": "connection_error", "exhausted_at": NOW + timedelta(hours=34),
    }


def case_risk_overridden():
    return {
        "case_id": CASE_ID, "reference": REFERENCE, "previous_level": "medium", "level": "critical",
        "sealed_reason": SEALED, "overridden_by": uuid.UUID("c5f60718-293a-4b4c-9e5f-60718293a4b5"),
        "role": "supervisor", "overridden_at": NOW + timedelta(minutes=3),
    }


EXAMPLES = {
    "case.received": case_received,
    "case.triaged": case_triaged,
    "case.unmatched": case_unmatched,
    "referral.created": referral_created,
    "delivery.attempted": delivery_attempted,
    "referral.status_changed": referral_status_changed,
    "referral.escalated": referral_escalated,
    "notification.exhausted": notification_exhausted,
    "case.risk_overridden": case_risk_overridden,
}


def _message(event_type="referral.created", **overrides):
    message = new_event(event_type, EXAMPLES[event_type](), producer="referral", now=NOW).to_message()
    message.update(overrides)
    return message


def _over_the_wire(message):
    return json.loads(json.dumps(message))


def _version_1(event_type, particulars_):
    """A message of version 1 of `event_type`, which carried `particulars_` in plaintext."""
    message = _over_the_wire(_message(event_type))
    del message["data"]["sealed_particulars"]
    message["version"] = 1
    message["data"].update(_over_the_wire(particulars_))
    return message


def test_every_event_type_in_the_schemas_has_a_realistic_example_here():
    assert set(EXAMPLES) == {event_type for event_type, _ in SCHEMAS}


# Round trip

@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_the_message_is_what_the_envelope_and_data_schemas_dump_whether_made_or_parsed(event_type):
    event = new_event(event_type, EXAMPLES[event_type](), producer="test", lane="critical",
                      now=datetime(2024, 3, 10, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=3))))
    parsed = parse(_over_the_wire(event.to_message()))
    for message_of in (event, parsed):
        by_schemas = Envelope().dump({
            "id": message_of.id, "type": message_of.type, "version": message_of.version,
            "occurred_at": message_of.occurred_at, "producer": message_of.producer,
            "correlation_id": message_of.correlation_id, "lane": message_of.lane,
            "data": SCHEMAS[(event_type, message_of.version)]().dump(message_of.data),
        })
        assert message_of.to_message() == by_schemas


@pytest.mark.parametrize("event_type", sorted(EXAMPLES))
def test_message_survives_json_and_parses_back_to_the_same_event(event_type):
    data = EXAMPLES[event_type]()
    event = new_event(event_type, data, producer="test", lane="critical", now=NOW)

    parsed = parse(_over_the_wire(event.to_message()))

    assert parsed == event
    assert parsed.data == data
    assert parsed.version == CURRENT_VERSION[event_type]


def test_escalation_of_a_case_nobody_matched_round_trips_without_referral_or_next_partner():
    data = {**referral_escalated(), "referral_id": None, "reoffered_to": None, "reason": "no_match", "step": 1}
    event = new_event("referral.escalated", data, producer="referral", now=NOW)
    assert parse(_over_the_wire(event.to_message())).data == data


def test_first_risk_override_before_any_assessment_round_trips_with_no_previous_level():
    data = {**case_risk_overridden(), "previous_level": None}
    event = new_event("case.risk_overridden", data, producer="intake", now=NOW)
    assert parse(_over_the_wire(event.to_message())).data == data


def test_delivery_attempt_without_status_or_next_time_round_trips_with_nulls():
    data = {**delivery_attempted(), "outcome": "failed", "status_code": None, "next_attempt_at": None}
    event = new_event("delivery.attempted", data, producer="notify", now=NOW)
    assert parse(_over_the_wire(event.to_message())).data == data


def test_unknown_checklist_facts_arrive_as_nulls():
    data = case_received({"facts": {"victim_age": 30}})
    parsed = parse(_over_the_wire(new_event("case.received", data, producer="intake", now=NOW).to_message()))
    assert particulars(parsed, RING)["facts"] == {"victim_age": 30, "material_published": None,
                                                  "deadline_hours": None, "suicidal_thoughts": None,
                                                  "threat_of_violence": None}


# What travels sealed

@pytest.mark.parametrize("event_type,example,sealed", [
    ("case.received", case_received, RECEIVED_PARTICULARS),
    ("case.triaged", case_triaged, TRIAGED_PARTICULARS),
])
def test_the_victims_particulars_travel_sealed_and_open_as_they_were_sealed(event_type, example, sealed):
    message = new_event(event_type, example(), producer="test", now=NOW).to_message()
    text = json.dumps(message)
    assert not set(sealed) & set(message["data"]), "nothing of them in the clear"
    assert "female" not in text and "self_harm" not in text and "threat_of_violence" not in text
    assert particulars(parse(_over_the_wire(message)), RING) == sealed


def test_particulars_sealed_for_one_case_do_not_open_as_another_cases():
    message = _over_the_wire(_message("case.received"))
    message["data"]["case_id"] = str(uuid.uuid4())
    with pytest.raises(SealError):
        particulars(parse(message), RING)


def test_particulars_that_open_but_break_their_schema_name_the_field():
    message = _over_the_wire(_message("case.triaged"))
    message["data"]["sealed_particulars"] = RING.seal(json.dumps({"reasons": [{"code": "minor", "source": "?"}]}),
                                                      f"case:{CASE_ID}:particulars")
    with pytest.raises(ContractError) as raised:
        particulars(parse(message), RING)
    assert set(raised.value.errors) == {"sealed_particulars"}
    assert "reasons" in raised.value.errors["sealed_particulars"]


def test_the_producer_cannot_seal_particulars_that_break_their_schema():
    facts = {**RECEIVED_PARTICULARS["facts"], "victim_age": 130}
    with pytest.raises(ContractError) as raised:
        seal_particulars("case.received", {**RECEIVED_PARTICULARS, "facts": facts}, RING, CASE_ID)
    assert "victim_age" in raised.value.errors["sealed_particulars"]["facts"]


@pytest.mark.parametrize("event_type,plain", [
    ("case.received", RECEIVED_PARTICULARS),
    ("case.triaged", TRIAGED_PARTICULARS),
])
def test_a_version_1_event_still_queued_is_upcast_and_its_plain_particulars_kept(event_type, plain):
    parsed = parse(_version_1(event_type, plain))
    assert parsed.version == CURRENT_VERSION[event_type] == 2
    assert particulars(parsed, RING) == plain
    assert parsed.data["sealed_particulars"] is None and not set(plain) & set(parsed.data) - {"particulars"}


def test_a_version_2_event_cannot_pass_off_plain_particulars_as_opened_ones():
    message = _over_the_wire(_message("case.received"))
    message["data"]["sealed_particulars"] = None
    message["data"]["particulars"] = _over_the_wire(RECEIVED_PARTICULARS)
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert set(raised.value.errors["data"]) == {"sealed_particulars"}


def test_message_envelope_carries_every_envelope_field_in_json_form():
    correlation_id = uuid.uuid4()
    event = new_event("case.triaged", case_triaged(), producer="triage", correlation_id=correlation_id,
                      lane="critical", now=NOW)
    message = event.to_message()
    assert message == {
        "id": str(event.id), "type": "case.triaged", "version": 2, "occurred_at": NOW.isoformat(),
        "producer": "triage", "correlation_id": str(correlation_id), "lane": "critical",
        "data": message["data"],
    }
    assert message["data"]["case_id"] == str(CASE_ID)
    assert message["data"]["received_at"] == NOW.isoformat()


# The producer side

def test_new_event_stamps_its_own_id_current_version_and_the_given_time():
    event = new_event("case.unmatched", case_unmatched(), producer="referral", now=NOW)
    assert isinstance(event.id, uuid.UUID)
    assert event.version == CURRENT_VERSION["case.unmatched"]
    assert event.occurred_at == NOW
    assert event.producer == "referral"
    assert new_event("case.unmatched", case_unmatched(), producer="referral").id != event.id


def test_new_event_without_a_time_uses_an_aware_now():
    before = datetime.now(timezone.utc)
    event = new_event("case.unmatched", case_unmatched(), producer="referral")
    assert before <= event.occurred_at <= datetime.now(timezone.utc)


def test_correlation_id_defaults_to_the_event_id():
    event = new_event("case.received", case_received(), producer="intake", now=NOW)
    assert event.correlation_id == event.id
    assert parse(_over_the_wire(event.to_message())).correlation_id == event.id


def test_given_correlation_id_is_kept_through_the_wire():
    correlation_id = uuid.uuid4()
    event = new_event("case.triaged", case_triaged(), producer="triage", correlation_id=correlation_id, now=NOW)
    assert event.correlation_id == correlation_id != event.id
    assert parse(_over_the_wire(event.to_message())).correlation_id == correlation_id


def test_lane_defaults_to_normal():
    assert new_event("case.received", case_received(), producer="intake", now=NOW).lane == "normal"


@pytest.mark.parametrize("event_type,lane,expected", [
    ("case.received", "normal", "case.received.normal"),
    ("case.triaged", "critical", "case.triaged.critical"),
    ("referral.created", "critical", "referral.created.critical"),
    ("delivery.attempted", "normal", "delivery.attempted.normal"),
])
def test_routing_key_is_type_then_lane(event_type, lane, expected):
    event = new_event(event_type, EXAMPLES[event_type](), producer="test", lane=lane, now=NOW)
    assert event.routing_key == expected
    assert parse(_over_the_wire(event.to_message())).routing_key == expected


@pytest.mark.parametrize("field,value", [
    ("case_id", "not-a-uuid"),
    ("service", "tribal_court"),
    ("level", "severe"),
    ("level", None),
    ("governorate", "damascus"),
    ("created_at", datetime(2024, 3, 10, 9, 30)),
])
def test_new_event_refuses_invalid_data_and_names_the_field(field, value):
    data = {**referral_created(), field: value}
    with pytest.raises(ContractError) as raised:
        new_event("referral.created", data, producer="referral", now=NOW)
    assert set(raised.value.errors) == {field}


def test_new_event_refuses_missing_fields_and_names_each_of_them():
    data = referral_created()
    del data["partner_name"], data["created_at"]
    with pytest.raises(ContractError) as raised:
        new_event("referral.created", data, producer="referral", now=NOW)
    assert set(raised.value.errors) == {"partner_name", "created_at"}
    assert "partner_name" in str(raised.value)


def test_new_event_refuses_a_score_out_of_range_and_sealed_particulars_missing():
    data = {**case_triaged(), "score": 101}
    del data["sealed_particulars"]
    with pytest.raises(ContractError) as raised:
        new_event("case.triaged", data, producer="triage", now=NOW)
    assert set(raised.value.errors) == {"score", "sealed_particulars"}


def test_the_producer_cannot_seal_a_reason_with_a_source_outside_the_vocabulary():
    reasons = [{"code": "minor", "source": "gut_feeling"}]
    with pytest.raises(ContractError) as raised:
        seal_particulars("case.triaged", {**TRIAGED_PARTICULARS, "reasons": reasons}, RING, CASE_ID)
    assert set(raised.value.errors["sealed_particulars"]) == {"reasons"}


def test_new_event_refuses_an_invalid_need_inside_a_list():
    data = {**case_received(), "needs": ["counselling", "revenge"]}
    with pytest.raises(ContractError) as raised:
        new_event("case.received", data, producer="intake", now=NOW)
    assert set(raised.value.errors) == {"needs"}


def test_new_event_refuses_a_lane_outside_the_vocabulary():
    with pytest.raises(ContractError) as raised:
        new_event("referral.created", referral_created(), producer="referral", lane="urgent", now=NOW)
    assert "lane" in raised.value.errors


# The consumer side

@pytest.mark.parametrize("body", [None, "a string", b"{}", ["a", "list"], 42],
                         ids=["none", "str", "bytes", "list", "int"])
def test_parse_refuses_a_body_that_is_not_a_json_object(body):
    with pytest.raises(ContractError) as raised:
        parse(body)
    assert set(raised.value.errors) == {"_schema"}


def test_parse_refuses_an_unknown_event_type_naming_the_type():
    with pytest.raises(ContractError) as raised:
        parse(_message(type="referral.exploded"))
    assert set(raised.value.errors) == {"type"}
    assert "referral.exploded" in raised.value.errors["type"][0]


def test_parse_refuses_an_unknown_version_naming_the_version():
    with pytest.raises(ContractError) as raised:
        parse(_message(version=99))
    assert set(raised.value.errors) == {"version"}
    assert "99" in raised.value.errors["version"][0]


@pytest.mark.parametrize("version", ["1", 1.0, True, 0], ids=["string", "float", "bool", "zero"])
def test_parse_refuses_a_version_that_is_not_a_positive_integer(version):
    with pytest.raises(ContractError) as raised:
        parse(_message(version=version))
    assert set(raised.value.errors) == {"version"}


@pytest.mark.parametrize("field", ["id", "type", "version", "occurred_at", "producer", "correlation_id", "lane",
                                   "data"])
def test_parse_refuses_an_envelope_missing_a_field_naming_it(field):
    message = _message()
    del message[field]
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert set(raised.value.errors) == {field}


@pytest.mark.parametrize("field,value", [
    ("id", "42"),
    ("correlation_id", "not-a-uuid"),
    ("occurred_at", "2024-03-10T09:30:00"),
    ("occurred_at", "yesterday"),
    ("lane", "urgent"),
    ("producer", ""),
    ("data", ["not", "a", "dict"]),
])
def test_parse_refuses_an_invalid_envelope_field_naming_it(field, value):
    with pytest.raises(ContractError) as raised:
        parse(_message(**{field: value}))
    assert set(raised.value.errors) == {field}


@pytest.mark.parametrize("event_type,field", [
    ("case.received", "sealed_narrative"),
    ("case.triaged", "lexicon_version"),
    ("case.unmatched", "services"),
    ("referral.created", "partner_id"),
    ("delivery.attempted", "outcome"),
    ("referral.status_changed", "previous_status"),
    ("referral.escalated", "reason"),
    ("notification.exhausted", "last_error"),
    ("case.risk_overridden", "sealed_reason"),
])
def test_parse_refuses_data_missing_a_required_field_naming_it_under_data(event_type, field):
    message = _over_the_wire(_message(event_type))
    del message["data"][field]
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert set(raised.value.errors) == {"data"}
    assert set(raised.value.errors["data"]) == {field}


@pytest.mark.parametrize("event_type,field,value", [
    ("case.received", "channel", "carrier_pigeon"),
    ("case.received", "received_at", "2024-03-10T09:30:00"),
    ("case.triaged", "level", "extreme"),
    ("case.triaged", "score", -1),
    ("case.unmatched", "governorate", "aleppo"),
    ("referral.created", "referral_id", "ref-1"),
    ("delivery.attempted", "attempt", 0),
    ("delivery.attempted", "outcome", "bounced"),
    ("referral.status_changed", "status", "ghosted"),
    ("referral.status_changed", "changed_by", "partner_staff"),
    ("referral.status_changed", "note_code", "x" * 65),
    ("referral.escalated", "reason", "felt_like_it"),
    ("referral.escalated", "step", 0),
    ("notification.exhausted", "attempts", 0),
    ("case.risk_overridden", "level", "catastrophic"),
    ("case.risk_overridden", "overridden_by", "supervisor-1"),
])
def test_parse_refuses_invalid_data_naming_the_field_under_data(event_type, field, value):
    message = _over_the_wire(_message(event_type))
    message["data"][field] = value
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert set(raised.value.errors["data"]) == {field}


def test_parse_refuses_a_null_where_the_schema_does_not_allow_one():
    message = _over_the_wire(_message("referral.created"))
    message["data"]["partner_name"] = None
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert set(raised.value.errors["data"]) == {"partner_name"}


def test_parse_refuses_data_checked_against_the_wrong_type_schema():
    message = _over_the_wire(_message("case.unmatched"))
    message["type"] = "referral.created"
    with pytest.raises(ContractError) as raised:
        parse(message)
    assert {"referral_id", "partner_id", "service"} <= set(raised.value.errors["data"])


def test_contract_error_names_the_offending_fields_in_its_message():
    with pytest.raises(ContractError, match="lane"):
        parse(_message(lane="urgent"))


def test_parsed_event_is_an_immutable_event_with_typed_values():
    parsed = parse(_over_the_wire(_message("referral.created")))
    assert isinstance(parsed, Event)
    assert isinstance(parsed.id, uuid.UUID) and isinstance(parsed.data["partner_id"], uuid.UUID)
    assert parsed.occurred_at == NOW and parsed.occurred_at.tzinfo is not None
    with pytest.raises(AttributeError):
        parsed.lane = "critical"


# Lanes

def test_only_critical_risk_takes_the_critical_lane():
    assert {level: lane_for(level) for level in RISK_LEVELS} == {
        "low": "normal", "medium": "normal", "high": "normal", "critical": "critical",
    }


def test_every_lane_lane_for_returns_is_a_lane_the_envelope_accepts():
    assert {lane_for(level) for level in RISK_LEVELS} == set(LANES)


def test_a_field_added_within_a_version_by_a_newer_producer_is_ignored_by_the_consumer():
    message = _message()
    message["data"]["added_later"] = "something new"
    event = parse(_over_the_wire(message))
    assert "added_later" not in event.data


def test_a_producer_naming_an_unknown_event_type_gets_a_contract_error():
    with pytest.raises(ContractError) as raised:
        new_event("case.teleported", {}, producer="intake")
    assert "type" in raised.value.errors


@pytest.mark.parametrize("version", [1, 2])
def test_a_case_from_a_producer_that_sends_no_preferences_means_no_family_contact(version):
    facts_only = {"facts": RECEIVED_PARTICULARS["facts"]}
    if version == 1:
        message = _version_1("case.received", facts_only)
    else:
        message = new_event("case.received", case_received(facts_only), producer="intake", now=NOW).to_message()
    assert particulars(parse(_over_the_wire(message)), RING)["preferences"] == {
        "family_contact": False, "staff_gender": None, "victim_age": None}
