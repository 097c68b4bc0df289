"""Intake records cases atomically with their event, sealed, and refuses bad input by field."""
import json

from nameko.testing.services import worker_factory

from sanad.contracts.events import parse
from sanad.contracts.sealing import narrative_context
from sanad.platform.http import ApiError
from services.intake.service import IntakeService
from tests.service.conftest import json_request, outbox_events, rows

NARRATIVE = "اسمها زينب، رقمها 07701234567، يهددها ينشر صورها"
CASE = {
    "narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar",
    "needs": ["counselling"], "consents": ["counselling"], "victim_age": 19,
}


def intake(pools, outbox, keys):
    return worker_factory(IntakeService, db=pools["intake"], outbox=outbox, keys=keys)


def call(service, method, *args):
    """Run an HTTP entrypoint as the JSON handler would, ApiErrors rendered as responses."""
    from sanad.platform.http import JsonHttpHandler
    try:
        return getattr(service, method)(*args)
    except ApiError as exc:
        return JsonHttpHandler("GET", "/").response_from_exception(exc)


def test_a_new_case_is_stored_sealed_with_its_event_in_the_same_transaction(pools, outbox, keys):
    response = call(intake(pools, outbox, keys), "create_case", json_request("POST", "/api/cases", CASE))

    assert response.status_code == 201
    created = json.loads(response.get_data())
    [case] = rows(pools["intake"], "SELECT * FROM cases")
    assert str(case["id"]) == created["id"] and case["reference"] == created["reference"]
    assert NARRATIVE not in json.dumps(case, default=str), "no plaintext narrative at rest"
    assert keys.data.open(case["narrative_sealed"], narrative_context(case["id"])) == NARRATIVE

    [(routing_key, body)] = outbox_events(pools["intake"])
    assert routing_key == "case.received.normal"
    assert NARRATIVE not in json.dumps(body, ensure_ascii=False), "no plaintext narrative on the broker"
    event = parse(body)
    assert event.data["reference"] == created["reference"]
    assert keys.transport.open(event.data["sealed_narrative"], narrative_context(case["id"])) == NARRATIVE


def test_the_same_idempotency_key_returns_the_first_case_and_stores_nothing_more(pools, outbox, keys):
    service = intake(pools, outbox, keys)
    first = call(service, "create_case", json_request("POST", "/api/cases", CASE, {"Idempotency-Key": "call-17"}))
    again = call(service, "create_case", json_request("POST", "/api/cases", CASE, {"Idempotency-Key": "call-17"}))

    assert (first.status_code, again.status_code) == (201, 200)
    assert json.loads(first.get_data())["id"] == json.loads(again.get_data())["id"]
    assert len(rows(pools["intake"], "SELECT id FROM cases")) == 1
    assert len(outbox_events(pools["intake"])) == 1


def test_invalid_fields_are_named_and_nothing_is_written(pools, outbox, keys):
    bad = {**CASE, "channel": "fax", "victim_age": -3, "consents": ["shelter"], "nickname": "x"}
    response = call(intake(pools, outbox, keys), "create_case", json_request("POST", "/api/cases", bad))

    assert response.status_code == 422
    fields = json.loads(response.get_data())["error"]["fields"]
    assert {"channel", "victim_age", "nickname"} <= set(fields)
    assert rows(pools["intake"], "SELECT id FROM cases") == []
    assert outbox_events(pools["intake"]) == []


def test_a_body_that_is_not_json_is_refused_with_a_clear_error(pools, outbox, keys):
    service = intake(pools, outbox, keys)
    as_text = call(service, "create_case", json_request("POST", "/api/cases", raw="narrative=x",
                                                        content_type="text/plain"))
    broken = call(service, "create_case", json_request("POST", "/api/cases", raw=b"{\"narrative\": "))
    not_utf8 = call(service, "create_case", json_request("POST", "/api/cases", raw=b"{\"narrative\": \"\xff\"}"))

    assert as_text.status_code == 415
    assert json.loads(broken.get_data())["error"]["code"] == "invalid_json"
    assert json.loads(not_utf8.get_data())["error"]["code"] == "invalid_encoding"


def test_the_status_view_shows_risk_referrals_and_deliveries_but_no_narrative(pools, outbox, keys):
    import uuid
    from datetime import datetime, timezone

    from sanad.contracts.events import new_event
    service = intake(pools, outbox, keys)
    created = json.loads(call(service, "create_case", json_request("POST", "/api/cases", CASE)).get_data())
    case_id = uuid.UUID(created["id"])
    now = datetime.now(timezone.utc)
    referral_id, partner_id, delivery_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    for event in (
        new_event("case.triaged", {
            "case_id": case_id, "reference": created["reference"], "received_at": now, "level": "high",
            "score": 70, "reasons": [{"code": "minor", "source": "checklist"}], "sealed_evidence": None,
            "lexicon_version": "test", "governorate": "dhi_qar", "needs": ["counselling"],
            "consents": ["counselling"]}, "triage"),
        new_event("referral.created", {
            "referral_id": referral_id, "case_id": case_id, "reference": created["reference"],
            "partner_id": partner_id, "partner_name": "Centre", "service": "counselling", "level": "high",
            "governorate": "dhi_qar", "created_at": now}, "referral"),
        new_event("delivery.attempted", {
            "delivery_id": delivery_id, "webhook_id": "msg_1", "referral_id": referral_id, "case_id": case_id,
            "partner_id": partner_id, "attempt": 1, "outcome": "delivered", "status_code": 204,
            "latency_ms": 3.5, "attempted_at": now, "next_attempt_at": None}, "notify"),
    ):
        service.on_case_status(event.to_message())

    response = call(service, "get_case", json_request("GET", f"/api/cases/{case_id}"), case_id)
    view = json.loads(response.get_data())
    assert view["status"] == "referred"
    assert view["risk"]["level"] == "high"
    assert view["referrals"][0]["deliveries"][0]["outcome"] == "delivered"
    assert NARRATIVE not in response.get_data(as_text=True)


def test_an_unknown_case_is_a_404_in_json(pools, outbox, keys):
    import uuid
    missing = uuid.uuid4()
    response = call(intake(pools, outbox, keys), "get_case", json_request("GET", f"/api/cases/{missing}"), missing)
    assert response.status_code == 404
    assert json.loads(response.get_data())["error"]["code"] == "not_found"
