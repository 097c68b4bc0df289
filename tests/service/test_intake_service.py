"""Intake through its HTTP entrypoints on a real database: sessions and tokens, every role rule, CSRF,
the failed-login limit, the full case record sealed at rest, the audit of every read and change, risk
overrides, the status projection, key rotation, and the pages' escaping."""
import dataclasses
import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from functools import partial

import eventlet
import eventlet.event
import pytest
from nameko.testing.services import worker_factory

from sanad.contracts.events import new_event, parse, particulars, seal_particulars
from sanad.contracts.sealing import evidence_context, narrative_context, override_reason_context
from sanad.platform.http import ApiError, JsonHttpHandler
from sanad.platform.outbox import OutboxWriter
from sanad.platform.retention import purge_platform_tables
from services.intake import accounts, auth, cases, handlers, retention, screen, sql
from services.intake.callers import RecentCallers
from services.intake.queue_views import LastShown
from services.intake.service import IntakeService, IntakeStatusService
from services.intake.slots import DEFAULT_SLOTS, Slots
from services.intake.vocabulary import field_context
from services.triage.assessment import default_assessor
from tests.service import conftest
from tests.service.conftest import outbox_events, rows
from tests.support.wire import counting_pool

NARRATIVE = "اسمها زينب، يهددها ينشر صورها اذا ما تدفع"
SECRETS = {  # each personal value, distinct, so a scan can find any of them anywhere
    "narrative": NARRATIVE,
    "name": "Umm-Ali-Marker",
    "phone": "0770 123 4567",
    "safe_times": "after-maghrib-marker",
    "code_word": "pomegranate-marker",
}
CASE = {
    "narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar", "district": "shatrah",
    "caller_relation": "parent", "victim_age_band": "15_17", "victim_gender": "female",
    "extortion_types": ["sexual_images", "chats"], "platforms": ["instagram"], "perpetrator": "ex_partner",
    "demands": ["money"], "demand_amount": "500", "demand_currency": "USD",
    "material_published": True, "published_on": ["telegram"],
    "needs": ["counselling", "legal_aid"], "consents": ["counselling"],
    "suicidal_thoughts": None, "threat_of_violence": True,
    "safe_contact": {"name": SECRETS["name"], "phone": SECRETS["phone"], "safe_times": SECRETS["safe_times"],
                     "code_word": SECRETS["code_word"], "no_messages": True},
}
PASSWORD = "correct horse battery staple"
STAFF_ADDRESS = "10.0.0.7"


def json_request(*args, **kwargs):
    """A request as it arrives from a staff machine on the hotline's network."""
    request = conftest.json_request(*args, **kwargs)
    request.remote_addr = STAFF_ADDRESS
    return request


def intake(pools, outbox, keys, recent_callers=None):
    return intake_on(pools["intake"], outbox, keys, recent_callers)


def intake_on(pool, outbox, keys, recent_callers=None, recording_slots=None):
    """IntakeService on `pool`, with the real lane screen, and a memory of callers and recording slots of
    its own."""
    return worker_factory(IntakeService, db=pool, outbox=outbox, keys=keys,
                          lane_of=partial(screen.triage_lane, default_assessor()),
                          recent_callers=recent_callers or RecentCallers(),
                          recording_slots=recording_slots or Slots(DEFAULT_SLOTS), queue_views=LastShown())


def intake_status(pools, keys):
    return worker_factory(IntakeStatusService, db=pools["intake"], keys=keys)


def call(service, method, *args):
    """Run an HTTP entrypoint as the JSON handler would, ApiErrors rendered as responses."""
    try:
        return getattr(service, method)(*args)
    except ApiError as exc:
        return JsonHttpHandler("GET", "/").response_from_exception(exc)


def body_of(response):
    return json.loads(response.get_data())


@dataclasses.dataclass
class Staff:
    id: uuid.UUID
    username: str
    cookie: str
    csrf: str

    def headers(self, csrf=True, **extra):
        headers = {"Cookie": f"{auth.SESSION_COOKIE}={self.cookie}", **extra}
        if csrf:
            headers["X-CSRF-Token"] = self.csrf
        return headers


def staff(pools, role, partner_id=None, now=None):
    """An account of `role` with a live session."""
    username = f"{role}-{uuid.uuid4().hex[:8]}"
    with pools["intake"].transaction() as cur:
        user_id = accounts.add_user(cur, username, username.title(), role, PASSWORD, partner_id)
        cookie, csrf = auth.start_session(cur, user_id, "127.0.0.1", now or datetime.now(timezone.utc))
    return Staff(user_id, username, cookie, csrf)


def token_for(pools, username):
    with pools["intake"].transaction() as cur:
        token, token_id = auth.add_token(cur, username, "tests", datetime.now(timezone.utc))
    return token, token_id


def post_case(service, who, case=CASE, **headers):
    return call(service, "create_case", json_request("POST", "/api/cases", case, {**who.headers(), **headers}))


def get_case(service, who, case_id):
    return call(service, "get_case", json_request("GET", f"/api/cases/{case_id}", headers=who.headers(csrf=False)),
                uuid.UUID(str(case_id)))


def audit_actions(pools, case_id):
    return [row["action"] for row in rows(pools["intake"], "SELECT action FROM audit_log WHERE case_id = %(id)s "
                                                          "ORDER BY id", {"id": case_id})]


def triaged(case_id, reference, level="high", evidence=None, keys=None, at=None):
    reasons = [{"code": "minor", "source": "checklist"}, {"code": "published", "source": "text"}]
    return new_event("case.triaged", {
        "case_id": case_id, "reference": reference, "received_at": datetime.now(timezone.utc), "level": level,
        "score": 60,
        "sealed_particulars": seal_particulars("case.triaged", {"reasons": reasons}, keys.transport, case_id),
        "sealed_evidence": keys.transport.seal(json.dumps(evidence, ensure_ascii=False), evidence_context(case_id))
        if evidence else None,
        "lexicon_version": "test", "governorate": "dhi_qar", "needs": ["counselling"], "consents": ["counselling"],
    }, "triage", correlation_id=case_id, now=at)


# Who may ask at all ------------------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,entrypoint,with_id", [
    ("POST", "/api/cases", "create_case", False),
    ("GET", "/api/cases", "list_cases", False),
    ("GET", "/api/cases/{id}", "get_case", True),
    ("POST", "/api/cases/{id}/risk-override", "override_risk", True),
    ("PUT", "/api/cases/{id}/assignment", "assign_case", True),
    ("GET", "/api/cases/{id}/audit", "case_audit", True),
    ("GET", "/api/users", "list_users", False),
    ("POST", "/api/users", "create_user", False),
    ("GET", "/api/me", "api_me", False),
    ("GET", "/api/me/draft-key", "api_draft_key", False),
])
def test_every_api_endpoint_answers_401_in_json_without_a_session_or_token(pools, outbox, keys, method, path,
                                                                            entrypoint, with_id):
    case_id = uuid.uuid4()
    request = json_request(method, path.format(id=case_id), {} if method != "GET" else None,
                           {"Cookie": f"{auth.SESSION_COOKIE}=made-up", "Authorization": "Basic eDp5"})
    args = (request, case_id) if with_id else (request,)
    response = call(intake(pools, outbox, keys), entrypoint, *args)
    assert response.status_code == 401
    assert body_of(response)["error"]["code"] == "unauthenticated"


# Recording the full case ----------------------------------------------------------------------------------

def test_an_operator_records_the_full_case_sealed_with_its_event_and_audit_in_one_transaction(pools, outbox, keys):
    operator = staff(pools, "operator")
    response = post_case(intake(pools, outbox, keys), operator)

    assert response.status_code == 201, response.get_data()
    created = body_of(response)
    [case] = rows(pools["intake"], "SELECT * FROM cases")
    assert str(case["id"]) == created["id"]
    assert (case["recorded_by"], case["assigned_to"]) == (operator.id, operator.id)
    assert case["district"] == "shatrah" and case["extortion_types"] == ["sexual_images", "chats"]
    assert keys.data.open(case["narrative_sealed"], narrative_context(case["id"])) == NARRATIVE
    assert keys.data.open(case["contact_phone_sealed"], field_context(case["id"], "contact_phone")) == "+9647701234567"
    assert case["contact_phone_hash"] == keys.lookup_hash("+9647701234567")
    assert audit_actions(pools, case["id"]) == ["case_recorded"]

    [(routing_key, message)] = outbox_events(pools["intake"])
    assert routing_key == "case.received.critical", "the checklist says a life is threatened: the critical lane"
    event = parse(message)
    assert set(event.data) == {"case_id", "reference", "received_at", "channel", "governorate", "needs",
                               "consents", "sealed_narrative", "sealed_particulars"}, "only what others need"
    received = particulars(event, keys.transport)
    assert received["preferences"] == {"family_contact": False, "staff_gender": None, "victim_age": 17}
    # A band of minors reaches triage as its oldest age, so a child stays a child.
    assert received["facts"]["victim_age"] == 17
    assert received["facts"]["threat_of_violence"] is True
    text = json.dumps(message, ensure_ascii=False)
    assert not any(value in text for value in SECRETS.values()), "nothing personal on the broker in plaintext"
    assert "victim_age" not in text and "threat_of_violence" not in text, "nor her age and what she fears"


def test_a_deadline_given_as_a_baghdad_time_reaches_triage_as_hours_from_now(pools, outbox, keys):
    operator = staff(pools, "operator")
    deadline = (datetime.now(timezone.utc) + timedelta(hours=6)).astimezone(timezone(timedelta(hours=3)))
    post_case(intake(pools, outbox, keys), operator, {**CASE, "deadline_at": deadline.isoformat()})

    [(_, message)] = outbox_events(pools["intake"])
    assert 5.9 < particulars(parse(message), keys.transport)["facts"]["deadline_hours"] <= 6


def test_an_anonymous_case_needs_no_name_or_phone_and_refuses_them(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    anonymous = {"narrative": "لا تريد ذكر اسمها", "channel": "whatsapp", "governorate": "dhi_qar", "anonymous": True}
    assert post_case(service, operator, anonymous).status_code == 201
    refused = post_case(service, operator, {**anonymous, "safe_contact": {"phone": "07701234567"}},
                        **{"Accept-Language": "en"})
    assert refused.status_code == 422
    assert body_of(refused)["error"]["fields"] == {"anonymous": ["An anonymous case has no name and no phone."]}


def test_field_errors_are_in_the_users_language_name_each_field_and_write_nothing(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    bad = {**CASE, "channel": "fax", "victim_age": 300, "nickname": "x", "safe_contact": {"phone": "call me"},
           "consents": ["shelter"]}
    arabic = body_of(post_case(service, operator, bad))["error"]
    english = body_of(post_case(service, operator, bad, **{"Accept-Language": "en-GB,en;q=0.8"}))["error"]

    assert set(arabic["fields"]) == {"channel", "victim_age", "nickname", "safe_contact.phone"}
    assert arabic["fields"]["channel"] == ["اختر من القائمة."]
    assert english["fields"]["victim_age"] == ["Must be between 0 and 120."]
    assert english["fields"]["safe_contact.phone"][0].startswith("Not a valid phone number")
    assert "call me" not in json.dumps(english), "a refused value is never echoed back"
    assert rows(pools["intake"], "SELECT id FROM cases") == [] and outbox_events(pools["intake"]) == []


def test_the_same_idempotency_key_returns_the_first_case_and_stores_nothing_more(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = post_case(service, operator, **{"Idempotency-Key": "call-17"})
    again = post_case(service, operator, **{"Idempotency-Key": "call-17"})

    assert (first.status_code, again.status_code) == (201, 200)
    assert body_of(first)["id"] == body_of(again)["id"]
    assert len(rows(pools["intake"], "SELECT id FROM cases")) == 1 and len(outbox_events(pools["intake"])) == 1


def test_an_idempotency_key_is_its_caller_s_own_so_another_account_choosing_it_learns_nothing(
        pools, outbox, keys):
    first_operator, second_operator = staff(pools, "operator"), staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = post_case(service, first_operator, **{"Idempotency-Key": "call-1"})
    same_body = post_case(service, second_operator, **{"Idempotency-Key": "call-1"})
    other_body = post_case(service, second_operator, {**CASE, "narrative": "Another caller."},
                           **{"Idempotency-Key": "call-2"})
    first_again = post_case(service, first_operator, {**CASE, "narrative": "Another caller."},
                            **{"Idempotency-Key": "call-2"})

    assert [r.status_code for r in (first, same_body, other_body, first_again)] == [201, 201, 201, 201]
    assert len({body_of(r)["id"] for r in (first, same_body, other_body, first_again)}) == 4
    assert post_case(service, second_operator, **{"Idempotency-Key": "call-1"}).status_code == 200, \
        "each account's own retry is still answered with its own case"


def test_the_same_case_resent_in_another_form_is_the_same_submission(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = post_case(service, operator, **{"Idempotency-Key": "call-19"})
    reordered = dict(reversed(list(CASE.items())))
    again = call(service, "create_case", json_request("POST", "/api/cases", raw=json.dumps(reordered, indent=4),
                                                      headers={**operator.headers(), "Idempotency-Key": "call-19"}))

    assert (first.status_code, again.status_code) == (201, 200)
    assert body_of(first)["id"] == body_of(again)["id"]


def test_another_case_under_a_key_already_used_is_refused_naming_the_key_and_nothing_is_lost_silently(
        pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = post_case(service, operator, **{"Idempotency-Key": "call-20"})
    other = post_case(service, operator, {**CASE, "narrative": "A different caller, a different threat."},
                      **{"Idempotency-Key": "call-20", "Accept-Language": "en"})

    assert (first.status_code, other.status_code) == (201, 422)
    error = body_of(other)["error"]
    assert error["code"] == "idempotency_key_reused" and list(error["fields"]) == ["Idempotency-Key"]
    assert "different caller" not in json.dumps(error)
    assert len(rows(pools["intake"], "SELECT id FROM cases")) == 1 and len(outbox_events(pools["intake"])) == 1
    [stored] = rows(pools["intake"], "SELECT idempotency_fingerprint FROM cases")
    assert stored["idempotency_fingerprint"] == handlers.submission_fingerprint(keys, CASE)


@pytest.mark.parametrize("via", ["token", "session"])
def test_a_case_is_recorded_in_one_transaction_of_two_round_trips(pools, outbox, keys, database_url, via):
    """Under a flood each round trip waits for intake's turn: who asks and BEGIN go together, then the
    case (with the session's new activity time), its audit row, its event and COMMIT."""
    operator = staff(pools, "operator")
    if via == "token":
        headers = {"Authorization": f"Bearer {token_for(pools, operator.username)[0]}"}
    else:
        headers = operator.headers()
    with counting_pool(database_url, schema="intake") as (pool, sent):
        service = intake_on(pool, outbox, keys)
        created = call(service, "create_case", json_request("POST", "/api/cases", CASE, {
            **headers, "Idempotency-Key": "call-18"}))

    assert created.status_code == 201
    assert len(sent) == 2, sent
    assert sent[0].startswith("BEGIN") and ("api_tokens" if via == "token" else "sessions") in sent[0]
    assert all(f"INSERT INTO {table}" in sent[1] for table in ("cases", "audit_log", "outbox"))
    assert sent[1].endswith("COMMIT")


def test_a_reference_another_case_holds_is_drawn_again(pools, outbox, keys, monkeypatch):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    taken = body_of(post_case(service, operator))["reference"]
    draws = iter([taken, taken, "SND-FRSH-0001"])
    monkeypatch.setattr(cases, "new_reference", lambda: next(draws))

    created = post_case(service, operator)

    assert created.status_code == 201 and body_of(created)["reference"] == "SND-FRSH-0001"
    assert len(rows(pools["intake"], "SELECT id FROM cases")) == 2
    assert [key for key, _ in outbox_events(pools["intake"])] == ["case.received.critical"] * 2, \
        "the failed tries left no event behind"


def test_a_critical_case_goes_first_from_before_its_insert_and_a_normal_one_never_does(pools, keys, database_url):
    """Precedence among intake's requests (sanad.platform.precedence) covers every round trip a critical
    case has left once its lane is known. For a caller this process has not allowed lately, that is after
    the caller's check, before the case's insert."""
    operator = staff(pools, "operator")
    normal = {**CASE, "threat_of_violence": False, "narrative": "he wants money for old chats"}
    with counting_pool(database_url, schema="intake") as (pool, sent):
        went_first_after = []
        outbox = OutboxWriter([], go_first=lambda: went_first_after.append(len(sent)))
        service = intake_on(pool, outbox, keys)
        critical = call(service, "create_case", json_request("POST", "/api/cases", CASE, operator.headers()))
        assert went_first_after == [1], sent
        ordinary = call(service, "create_case", json_request("POST", "/api/cases", normal, operator.headers()))

    assert (critical.status_code, ordinary.status_code) == (201, 201)
    assert went_first_after == [1], "the normal case did not go first"
    assert [key for key, _ in outbox_events(pools["intake"])] == ["case.received.critical", "case.received.normal"]



@pytest.mark.parametrize("via", ["token", "session"])
def test_a_caller_allowed_lately_has_a_critical_case_go_first_from_its_first_round_trip(pools, keys, database_url,
                                                                                       via):
    """services/intake/callers.py: a credential this process allowed lately vouches for reading the body
    before the caller's check, so a critical case waits no turn behind a flood even for that check; the
    check still runs, in the same two round trips. A normal case never goes first."""
    operator = staff(pools, "operator")
    headers = ({"Authorization": f"Bearer {token_for(pools, operator.username)[0]}"} if via == "token"
               else operator.headers())
    normal = {**CASE, "threat_of_violence": False, "narrative": "he wants money for old chats"}
    with counting_pool(database_url, schema="intake") as (pool, sent):
        went_first_after = []
        outbox = OutboxWriter([], go_first=lambda: went_first_after.append(len(sent)))
        service = intake_on(pool, outbox, keys)
        first = call(service, "create_case", json_request("POST", "/api/cases", normal, headers))
        before = len(sent)
        critical = call(service, "create_case", json_request("POST", "/api/cases", CASE, headers))

    assert (first.status_code, critical.status_code) == (201, 201)
    assert went_first_after == [before], "the critical case went first before any of its round trips"
    # The token's check runs as a prepared statement, by name, once the connection has prepared it.
    assert len(sent) - before == 2 and (sql.TOKEN_USER.name if via == "token" else "sessions") in sent[before]


def test_a_normal_case_waits_for_a_recording_slot_and_a_critical_one_does_not(pools, keys):
    """services/intake/slots.py: while every slot is held, a normal case read first is not recorded, and a
    critical one is; the normal case goes in once a slot is free."""
    operator = staff(pools, "operator")
    headers = {"Authorization": f"Bearer {token_for(pools, operator.username)[0]}"}
    slots, release = Slots(1), eventlet.event.Event()
    service = intake_on(pools["intake"], OutboxWriter([]), keys, recording_slots=slots)
    assert call(service, "list_cases", json_request("GET", "/api/cases", headers=headers)).status_code == 200

    def hold_the_only_slot():
        with slots.held_for("normal"):
            release.wait()

    holder = eventlet.spawn(hold_the_only_slot)
    eventlet.sleep(0)

    normal = {**CASE, "threat_of_violence": False, "narrative": "he wants money for old chats"}
    waiting = eventlet.spawn(call, service, "create_case", json_request("POST", "/api/cases", normal, headers))
    with eventlet.Timeout(5):
        critical = call(service, "create_case", json_request("POST", "/api/cases", CASE, headers))
    eventlet.sleep(0.1)
    assert critical.status_code == 201
    assert [key for key, _ in outbox_events(pools["intake"])] == ["case.received.critical"], \
        "the normal case waits for the slot the test holds"

    release.send()
    with eventlet.Timeout(5):
        assert waiting.wait().status_code == 201
    holder.wait()
    assert [key for key, _ in outbox_events(pools["intake"])] == ["case.received.critical", "case.received.normal"]


def test_a_credential_revoked_since_it_was_allowed_records_nothing_and_is_forgotten(pools, keys):
    """A refusal wins over anything read before the check: a critical case went first and was refused,
    a broken body is refused, not reported, and the credential vouches for nothing afterwards."""
    operator = staff(pools, "operator")
    went_first, recent = [], RecentCallers()
    service = intake(pools, OutboxWriter([], go_first=lambda: went_first.append(True)), keys, recent)
    answers = []
    for body in (CASE, {**CASE, "channel": "pigeon"}):
        token, token_id = token_for(pools, operator.username)
        headers = {"Authorization": f"Bearer {token}"}
        assert call(service, "list_cases", json_request("GET", "/api/cases", headers=headers)).status_code == 200
        assert recent.vouch(f"token:{token}")
        with pools["intake"].transaction() as cur:
            auth.revoke_token(cur, token_id, datetime.now(timezone.utc))
        answers.append(call(service, "create_case", json_request("POST", "/api/cases", body, headers)).status_code)
        assert not recent.vouch(f"token:{token}")

    assert answers == [401, 401]
    assert went_first == [True], "vouched for by the earlier request, the critical case went first"
    assert rows(pools["intake"], "SELECT id FROM cases") == []
    assert len(rows(pools["intake"], "SELECT id FROM audit_log WHERE action = 'access_refused'")) == 2


def test_only_callers_who_may_record_cases_are_vouched_for(pools, keys):
    supervisor, partner_staff = staff(pools, "supervisor"), staff(pools, "counsellor")
    recent = RecentCallers()
    service = intake(pools, OutboxWriter([]), keys, recent)
    for who in (supervisor, partner_staff):
        call(service, "list_cases", json_request("GET", "/api/cases", headers=who.headers(csrf=False)))

    assert recent.vouch(f"session:{supervisor.cookie}")
    assert not recent.vouch(f"session:{partner_staff.cookie}")


# Who sees what -------------------------------------------------------------------------------------------

def test_an_operator_cannot_read_a_case_held_by_another_and_the_attempt_is_audited(pools, outbox, keys):
    owner, other = staff(pools, "operator"), staff(pools, "operator")
    service = intake(pools, outbox, keys)
    case_id = body_of(post_case(service, owner))["id"]

    refused = get_case(service, other, case_id)
    missing = get_case(service, other, uuid.uuid4())

    assert refused.status_code == 404 and missing.status_code == 404
    assert body_of(refused) == body_of(missing), "a case one may not see looks like no case at all"
    assert NARRATIVE not in refused.get_data(as_text=True)
    assert get_case(service, owner, case_id).status_code == 200
    trail = rows(pools["intake"], "SELECT actor_id, action FROM audit_log WHERE case_id = %(id)s ORDER BY id",
                 {"id": case_id})
    assert [(r["actor_id"], r["action"]) for r in trail] == [
        (owner.id, "case_recorded"), (other.id, "case_read_denied"), (owner.id, "case_viewed")]
    queue = body_of(call(service, "list_cases", json_request("GET", "/api/cases", headers=other.headers())))
    assert queue["cases"] == []


def test_a_case_posted_by_a_machine_client_joins_the_open_queue_and_an_operator_may_take_it(pools, outbox, keys):
    client, operator, late = staff(pools, "operator"), staff(pools, "operator"), staff(pools, "operator")
    token, _ = token_for(pools, client.username)
    service = intake(pools, outbox, keys)
    created = call(service, "create_case", json_request("POST", "/api/cases", CASE,
                                                        {"Authorization": f"Bearer {token}"}))
    assert created.status_code == 201, "a token needs no CSRF token: it is not a cookie a browser sends by itself"
    case_id = body_of(created)["id"]

    assert [c["id"] for c in body_of(call(service, "list_cases", json_request(
        "GET", "/api/cases", headers=operator.headers())))["cases"]] == [case_id]
    taken = call(service, "assign_case", json_request("PUT", f"/api/cases/{case_id}/assignment",
                                                      {"assignee": str(operator.id)}, operator.headers()),
                 uuid.UUID(case_id))
    assert taken.status_code == 200
    assert get_case(service, late, case_id).status_code == 404, "once taken it leaves the open queue"
    grab = call(service, "assign_case", json_request("PUT", f"/api/cases/{case_id}/assignment",
                                                     {"assignee": str(late.id)}, late.headers()), uuid.UUID(case_id))
    assert grab.status_code == 404


def test_a_counsellor_sees_only_the_cases_referred_to_their_partner(pools, outbox, keys):
    partner, elsewhere = uuid.uuid4(), uuid.uuid4()
    operator, counsellor = staff(pools, "operator"), staff(pools, "counsellor", partner_id=partner)
    service = intake(pools, outbox, keys)
    ours, theirs = (body_of(post_case(service, operator)) for _ in range(2))
    for case, partner_id in ((ours, partner), (theirs, elsewhere)):
        intake_status(pools, keys).on_case_status([new_event("referral.created", {
            "referral_id": uuid.uuid4(), "case_id": uuid.UUID(case["id"]), "reference": case["reference"],
            "partner_id": partner_id, "partner_name": "Centre", "service": "counselling", "level": "high",
            "governorate": "dhi_qar", "created_at": datetime.now(timezone.utc)}, "referral").to_message()])

    assert get_case(service, counsellor, ours["id"]).status_code == 200
    assert get_case(service, counsellor, theirs["id"]).status_code == 404
    queue = body_of(call(service, "list_cases", json_request("GET", "/api/cases", headers=counsellor.headers())))
    assert [c["id"] for c in queue["cases"]] == [ours["id"]]
    assert post_case(service, counsellor).status_code == 403, "counsellors do not record cases"


@pytest.mark.parametrize("status,still_seen", [
    ("accepted", True), ("in_progress", True), ("completed", True), ("closed", True),
    ("declined", False), ("withdrawn", False),
])
def test_a_counsellor_no_longer_sees_a_case_their_partner_declined_or_that_was_withdrawn(
        status, still_seen, pools, outbox, keys):
    partner = uuid.uuid4()
    operator, counsellor = staff(pools, "operator"), staff(pools, "counsellor", partner_id=partner)
    service = intake(pools, outbox, keys)
    case = body_of(post_case(service, operator))
    referral_id, now = uuid.uuid4(), datetime.now(timezone.utc)
    intake_status(pools, keys).on_case_status([new_event("referral.created", {
        "referral_id": referral_id, "case_id": uuid.UUID(case["id"]), "reference": case["reference"],
        "partner_id": partner, "partner_name": "Centre", "service": "counselling", "level": "high",
        "governorate": "dhi_qar", "created_at": now}, "referral").to_message()])
    assert get_case(service, counsellor, case["id"]).status_code == 200, "an offer is read before it is answered"

    intake_status(pools, keys).on_case_status([new_event("referral.status_changed", {
        "referral_id": referral_id, "case_id": uuid.UUID(case["id"]), "reference": case["reference"],
        "partner_id": partner, "status": status, "previous_status": "offered", "note_code": None,
        "changed_at": now, "changed_by": "partner"}, "referral").to_message()])
    assert (get_case(service, counsellor, case["id"]).status_code == 200) is still_seen
    queue = body_of(call(service, "list_cases", json_request("GET", "/api/cases", headers=counsellor.headers())))
    assert (case["id"] in [c["id"] for c in queue["cases"]]) is still_seen


def test_a_counsellor_sees_their_own_referral_not_other_partners_escalations_or_staffs_reasons(
        pools, outbox, keys):
    ours, other = uuid.uuid4(), uuid.uuid4()
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    counsellor = staff(pools, "counsellor", partner_id=ours)
    service = intake(pools, outbox, keys)
    case = body_of(post_case(service, operator))
    unreferred = body_of(post_case(service, operator))  # the same caller's phone, not referred to us
    case_id, now = uuid.UUID(case["id"]), datetime.now(timezone.utc)
    events = [triaged(case_id, case["reference"], "high", keys=keys)] + [
        new_event("referral.created", {
            "referral_id": uuid.uuid4(), "case_id": case_id, "reference": case["reference"], "partner_id": partner,
            "partner_name": name, "service": service_code, "level": "high", "governorate": "dhi_qar",
            "created_at": now}, "referral")
        for partner, name, service_code in ((ours, "Counselling Centre", "counselling"),
                                            (other, "Police Cybercrime Unit", "police_cybercrime"))
    ] + [new_event("referral.escalated", {
        "referral_id": None, "case_id": case_id, "reference": case["reference"], "level": "high",
        "service": "police_cybercrime", "governorate": "dhi_qar", "reason": "ack_timeout", "step": 1,
        "reoffered_to": other, "escalated_at": now}, "referral")]
    intake_status(pools, keys).on_case_status([event.to_message() for event in events])
    reason = "Her cousin Huda called back for her"
    assert call(service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override",
                                                       {"level": "critical", "reason": reason},
                                                       supervisor.headers()), case_id).status_code == 200

    full = body_of(get_case(service, supervisor, case_id))
    assert {r["partner_name"] for r in full["referrals"]} == {"Counselling Centre", "Police Cybercrime Unit"}
    assert full["escalations"] and full["risk"]["overrides"][0]["reason"] == reason
    assert full["repeat_caller"] == {"other_cases": 1, "references": [unreferred["reference"]]}

    seen = body_of(get_case(service, counsellor, case_id))
    assert [r["partner_name"] for r in seen["referrals"]] == ["Counselling Centre"]
    assert seen["escalations"] == []
    [override] = seen["risk"]["overrides"]
    assert (override["level"], override["reason"], override["by"]) == ("critical", None, None)
    assert seen["repeat_caller"] == {"other_cases": 0, "references": []}, "nor that the caller has other cases"
    assert (seen["recorded_by"], seen["assigned_to"]) == (None, None)
    assert seen["narrative"] == body_of(get_case(service, supervisor, case_id))["narrative"]
    page = call(service, "case_page", json_request("GET", f"/cases/{case_id}", headers=counsellor.headers(csrf=False)),
                case_id).get_data(as_text=True)
    assert "Police Cybercrime Unit" not in page and reason not in page and "Huda" not in page


def test_every_read_of_the_queue_is_audited_with_its_cases_and_a_refresh_when_they_changed(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = body_of(post_case(service, operator))["id"]

    def read(poll):
        headers = {**operator.headers(csrf=False), **({"X-Sanad-Poll": "1"} if poll else {})}
        return body_of(call(service, "list_cases", json_request("GET", "/api/cases", headers=headers)))

    def views():
        return [row["detail"]["case_ids"] for row in rows(
            pools["intake"], "SELECT detail FROM audit_log WHERE action = 'queue_viewed' AND actor_id = %(id)s"
                             " ORDER BY id", {"id": operator.id})]

    assert [c["id"] for c in read(poll=False)["cases"]] == [first]
    read(poll=True)
    read(poll=True)
    assert views() == [[first]], "refreshes showing the same cases again are not written again"
    second = body_of(post_case(service, operator))["id"]
    read(poll=True)
    read(poll=True)
    read(poll=False)
    assert [sorted(ids) for ids in views()] == [[first], sorted([first, second]), sorted([first, second])]
    page = call(service, "queue_page", json_request("GET", "/queue", headers=operator.headers(csrf=False)))
    assert page.status_code == 200 and len(views()) == 4


def test_a_supervisor_sees_every_case_and_its_audit_trail_which_others_may_not(pools, outbox, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    service = intake(pools, outbox, keys)
    case_id = body_of(post_case(service, operator))["id"]
    get_case(service, supervisor, case_id)

    def trail(who):
        return call(service, "case_audit", json_request("GET", f"/api/cases/{case_id}/audit", headers=who.headers()),
                    uuid.UUID(case_id))

    entries = body_of(trail(supervisor))["entries"]
    assert [(e["actor_username"], e["action"], e["ip"]) for e in entries][:2] == [
        (operator.username, "case_recorded", STAFF_ADDRESS), (supervisor.username, "case_viewed", STAFF_ADDRESS)]
    assert trail(operator).status_code == 403


def test_an_admin_manages_accounts_but_sees_no_case(pools, outbox, keys):
    operator, admin = staff(pools, "operator"), staff(pools, "admin")
    service = intake(pools, outbox, keys)
    case_id = body_of(post_case(service, operator))["id"]

    assert get_case(service, admin, case_id).status_code == 404
    assert call(service, "list_cases", json_request("GET", "/api/cases", headers=admin.headers())).status_code == 403
    created = call(service, "create_user", json_request("POST", "/api/users", {
        "username": "amira.k", "role": "operator", "password": PASSWORD}, admin.headers()))
    assert created.status_code == 201
    assert call(service, "create_user", json_request("POST", "/api/users", {
        "username": "x.y", "role": "operator", "password": PASSWORD}, operator.headers())).status_code == 403
    disabled = call(service, "update_user", json_request("PATCH", f"/api/users/{operator.id}", {"active": False},
                                                        admin.headers()), operator.id)
    assert disabled.status_code == 200
    assert get_case(service, operator, case_id).status_code == 401, "disabling an account ends its sessions"


def test_deactivating_an_account_revokes_its_tokens_for_good_and_puts_its_cases_back_in_the_open_queue(
        pools, outbox, keys):
    leaving, colleague, admin = staff(pools, "operator"), staff(pools, "operator"), staff(pools, "admin")
    service = intake(pools, outbox, keys)
    held = body_of(post_case(service, leaving))["id"]  # recorded in a session: held by its recorder
    token, _ = token_for(pools, leaving.username)
    assert get_case(service, colleague, held).status_code == 404, "held by another operator"

    def set_active(active):
        return call(service, "update_user", json_request("PATCH", f"/api/users/{leaving.id}", {"active": active},
                                                         admin.headers()), leaving.id).status_code

    assert set_active(False) == 200
    assert get_case(service, colleague, held).status_code == 200, "back in the open queue"
    assert set_active(True) == 200
    bearer = {"Authorization": f"Bearer {token}"}
    assert call(service, "api_me", json_request("GET", "/api/me", headers=bearer)).status_code == 401, \
        "activating the account again brings back none of its old tokens"
    released = [e for e in rows(pools["intake"], "SELECT * FROM audit_log WHERE case_id = %(id)s", {"id": held})
                if e["action"] == "case_assigned"]
    assert len(released) == 1 and released[0]["detail"]["to"] is None


# Sessions, CSRF, tokens, the login limit -------------------------------------------------------------

def test_a_write_from_a_session_without_its_csrf_token_is_refused_and_writes_nothing(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    for headers in (operator.headers(csrf=False), operator.headers(csrf=False, **{"X-CSRF-Token": "guess"})):
        response = call(service, "create_case", json_request("POST", "/api/cases", CASE, headers))
        assert response.status_code == 403
        assert body_of(response)["error"]["code"] == "csrf_failed"
    assert rows(pools["intake"], "SELECT id FROM cases") == []


def test_a_session_ends_after_an_idle_hour_and_background_polling_does_not_keep_it_alive(pools):
    start = datetime(2026, 3, 10, 20, 0, tzinfo=timezone.utc)
    operator = staff(pools, "operator", now=start)
    with pools["intake"].transaction() as cur:
        assert auth.session_principal(cur, operator.cookie, start + timedelta(minutes=50), activity=False)
        assert auth.session_principal(cur, operator.cookie, start + timedelta(minutes=61)) is None
    busy = staff(pools, "operator", now=start)
    with pools["intake"].transaction() as cur:
        for minutes in range(50, 12 * 60, 50):
            assert auth.session_principal(cur, busy.cookie, start + timedelta(minutes=minutes)), minutes
        assert auth.session_principal(cur, busy.cookie, start + timedelta(hours=12, minutes=1)) is None, \
            "however active, a session ends with the shift"


def test_login_sets_a_session_cookie_that_is_httponly_and_samesite_strict_and_secure_outside_development(
        pools, outbox, keys, monkeypatch):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    response = call(service, "api_login", json_request("POST", "/api/session",
                                                       {"username": operator.username, "password": PASSWORD}))
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    assert "Max-Age" not in cookie and "Expires" not in cookie, "closing the browser forgets it"
    stored = rows(pools["intake"], "SELECT token_hash FROM sessions")
    value = re.search(rf"{auth.SESSION_COOKIE}=([^;]+)", cookie).group(1)
    assert value not in json.dumps(stored), "only a hash of the cookie is stored"
    monkeypatch.setenv("SANAD_ENV", "production")
    again = call(service, "api_login", json_request("POST", "/api/session",
                                                    {"username": operator.username, "password": PASSWORD}))
    assert "Secure" in again.headers["Set-Cookie"]


def test_arriving_at_the_quick_exit_page_ends_the_session_even_when_the_script_could_not(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    stale_token = call(service, "api_logout", json_request(
        "DELETE", "/api/session", headers=operator.headers(csrf=False, **{"X-CSRF-Token": "from-an-older-session"})))
    assert stale_token.status_code == 403, "the page's logout failed"

    left = call(service, "quick_exit", json_request("GET", "/exit", headers=operator.headers(csrf=False)))
    assert left.status_code == 200 and f"{auth.SESSION_COOKIE}=;" in left.headers["Set-Cookie"]
    me = call(service, "api_me", json_request("GET", "/api/me", headers=operator.headers()))
    assert me.status_code == 401, "Back, or /queue, does not get back in"
    assert rows(pools["intake"], "SELECT * FROM sessions") == []


def test_a_guess_sent_while_another_for_the_same_name_is_being_checked_is_turned_away(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)

    def login():
        return call(service, "api_login", json_request("POST", "/api/session",
                                                       {"username": operator.username, "password": PASSWORD}))

    with pools["intake"].transaction() as checking:  # a first guess, its failure not yet committed
        auth.attempt_login(checking, keys, operator.username, "wrong password!", "10.0.0.1",
                           datetime.now(timezone.utc))
        busy = login()
        assert (busy.status_code, body_of(busy)["error"]["code"]) == (429, "login_busy")
    assert login().status_code == 200, "once the first is recorded, the name is free again"


def test_behind_a_trusted_proxy_one_client_guessing_at_many_names_locks_out_only_itself(
        pools, outbox, keys, monkeypatch):
    monkeypatch.setenv("SANAD_TRUSTED_PROXIES", STAFF_ADDRESS)  # every request comes through the proxy
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)

    def login(username, password, client):
        return call(service, "api_login", json_request("POST", "/api/session", {
            "username": username, "password": password}, {"X-Forwarded-For": client})).status_code

    guesses = [login(f"someone-{n}", "wrong password!", "203.0.113.66") for n in range(auth.MAX_FAILURES_PER_ADDRESS)]
    assert guesses == [401] * auth.MAX_FAILURES_PER_ADDRESS
    assert login(operator.username, PASSWORD, "203.0.113.66") == 429, "the guessing client is stopped"
    assert login(operator.username, PASSWORD, "198.51.100.20") == 200, "everyone else behind the proxy is not"
    addresses = {r["ip"] for r in rows(pools["intake"], "SELECT ip::text FROM login_failures")}
    assert addresses == {"203.0.113.66"}


def test_five_failed_logins_lock_the_name_even_against_the_right_password(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)

    def login(password):
        return call(service, "api_login", json_request("POST", "/api/session",
                                                       {"username": operator.username, "password": password}))

    assert [login("wrong password!").status_code for _ in range(5)] == [401] * 5
    locked = login(PASSWORD)
    assert locked.status_code == 429 and body_of(locked)["error"]["code"] == "locked"
    assert operator.username not in json.dumps(rows(pools["intake"], "SELECT * FROM login_failures"), default=str)
    with pools["intake"].transaction() as cur:
        later = datetime.now(timezone.utc) + auth.LOGIN_WINDOW + timedelta(seconds=1)
        assert auth.attempt_login(cur, keys, operator.username, PASSWORD, "127.0.0.1", later).user is not None


def test_an_unknown_name_and_a_wrong_password_get_the_same_answer(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    wrong = call(service, "api_login", json_request("POST", "/api/session",
                                                    {"username": operator.username, "password": "not it at all"}))
    unknown = call(service, "api_login", json_request("POST", "/api/session",
                                                      {"username": "nobody", "password": "not it at all"}))
    assert (wrong.status_code, body_of(wrong)) == (unknown.status_code, body_of(unknown))


def test_a_request_showing_a_token_and_a_session_is_someones_only_if_both_are_live_and_the_same_account_s(
        pools, outbox, keys):
    operator, other = staff(pools, "operator"), staff(pools, "operator")
    service = intake(pools, outbox, keys)
    bearer = {"Authorization": f"Bearer {token_for(pools, operator.username)[0]}"}

    def me(headers):
        return call(service, "api_me", json_request("GET", "/api/me", headers=headers)).status_code
    assert me(bearer) == 200
    assert me({**bearer, **operator.headers(csrf=False)}) == 200
    assert me({**bearer, "Cookie": f"{auth.SESSION_COOKIE}=made-up"}) == 401, "a credential that fails counts"
    assert me({**bearer, "Cookie": f"{auth.SESSION_COOKIE}="}) == 401, "an empty one too"
    assert me({**bearer, **other.headers(csrf=False)}) == 401, "two accounts at once are nobody"
    assert me(operator.headers(csrf=False)) == 200
    assert me({**operator.headers(csrf=False), "Authorization": "Basic eDp5"}) == 401
    assert me({**operator.headers(csrf=False), "Authorization": "Bearer snd_made-up"}) == 401


def test_a_revoked_or_expired_token_opens_nothing(pools, outbox, keys):
    client = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    token, token_id = token_for(pools, client.username)
    with pools["intake"].transaction() as cur:
        expiring, _ = auth.add_token(cur, client.username, "short", datetime.now(timezone.utc) - timedelta(days=2),
                                     timedelta(days=1))
        auth.revoke_token(cur, token_id, datetime.now(timezone.utc))
    for bearer in (token, expiring):
        response = call(service, "list_cases", json_request("GET", "/api/cases", headers={
            "Authorization": f"Bearer {bearer}"}))
        assert response.status_code == 401


# Overrides ---------------------------------------------------------------------------------------------

def test_raising_the_risk_level_is_open_to_the_operator_and_lowering_it_takes_a_supervisor(pools, outbox, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    service = intake(pools, outbox, keys)
    created = body_of(post_case(service, operator))
    case_id = uuid.UUID(created["id"])

    def override(who, level, reason="قالت إنها كتبت رسالة وداع"):
        return call(service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override",
                                                           {"level": level, "reason": reason}, who.headers()), case_id)

    assert override(operator, "critical").status_code == 409, "nothing to override before triage"
    intake_status(pools, keys).on_case_status(
        [triaged(case_id, created["reference"], "medium", keys=keys).to_message()])
    assert override(operator, "critical").status_code == 200
    lowered = override(operator, "high")
    assert lowered.status_code == 403 and "level" in body_of(lowered)["error"]["fields"]
    assert override(supervisor, "high").status_code == 200

    events = [(key, parse(body)) for key, body in outbox_events(pools["intake"])
              if body["type"] == "case.risk_overridden"]
    assert [(key, e.data["previous_level"], e.data["level"]) for key, e in events] == [
        ("case.risk_overridden.critical", "medium", "critical"), ("case.risk_overridden.normal", "critical", "high")]
    assert keys.transport.open(events[0][1].data["sealed_reason"], override_reason_context(case_id)).startswith("قالت")
    assert "وداع" not in json.dumps([body for _, body in outbox_events(pools["intake"])], ensure_ascii=False)
    view = body_of(get_case(service, supervisor, case_id))
    assert view["risk"]["level"] == "high"
    assert [(o["previous_level"], o["level"]) for o in view["risk"]["overrides"]] == [
        ("medium", "critical"), ("critical", "high")]
    assert audit_actions(pools, case_id).count("risk_overridden") == 2
    assert "case_change_refused" in audit_actions(pools, case_id)


def test_raising_a_case_to_critical_goes_first_and_lowering_it_does_not(pools, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    went_first = []
    service = intake(pools, OutboxWriter([], go_first=lambda: went_first.append(True)), keys)
    created = body_of(post_case(service, operator, {**CASE, "threat_of_violence": False, "narrative": "old chats"}))
    case_id = uuid.UUID(created["id"])
    intake_status(pools, keys).on_case_status(
        [triaged(case_id, created["reference"], "medium", keys=keys).to_message()])

    def override(who, level):
        return call(service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override",
                                                           {"level": level, "reason": "she wrote a farewell"},
                                                           who.headers()), case_id)

    assert override(operator, "critical").status_code == 200
    assert went_first == [True]
    assert override(supervisor, "high").status_code == 200
    assert went_first == [True], "lowering a case's level is no reason to go first"


# The status projection ---------------------------------------------------------------------------------

def test_the_case_view_shows_reasons_with_their_words_referral_statuses_deliveries_and_escalations(
        pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    created = body_of(post_case(service, operator))
    case_id = uuid.UUID(created["id"])
    now = datetime.now(timezone.utc)
    referral_id, partner_id, delivery_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    status_later = new_event("referral.status_changed", {
        "referral_id": referral_id, "case_id": case_id, "reference": created["reference"], "partner_id": partner_id,
        "status": "accepted", "previous_status": "offered", "note_code": None, "changed_at": now + timedelta(minutes=2),
        "changed_by": "partner"}, "referral")
    status_earlier = new_event("referral.status_changed", {
        **status_later.data, "status": "offered", "previous_status": "offered", "changed_at": now}, "referral")
    for event in (
        triaged(case_id, created["reference"], "high", {"published": ["ينشر صورها"]}, keys),
        status_later,  # before intake has heard of the referral, and before an older change
        new_event("referral.created", {
            "referral_id": referral_id, "case_id": case_id, "reference": created["reference"],
            "partner_id": partner_id, "partner_name": "Centre", "service": "counselling", "level": "high",
            "governorate": "dhi_qar", "created_at": now}, "referral"),
        status_earlier,
        new_event("delivery.attempted", {
            "delivery_id": delivery_id, "webhook_id": "msg_1", "referral_id": referral_id, "case_id": case_id,
            "partner_id": partner_id, "attempt": 1, "outcome": "delivered", "status_code": 204, "latency_ms": 3.5,
            "attempted_at": now, "next_attempt_at": None}, "notify"),
        new_event("referral.escalated", {
            "referral_id": None, "case_id": case_id, "reference": created["reference"], "level": "high",
            "service": "legal_aid", "governorate": "dhi_qar", "reason": "no_match", "step": 1, "reoffered_to": None,
            "escalated_at": now}, "referral"),
    ):
        intake_status(pools, keys).on_case_status([event.to_message()])

    view = body_of(get_case(service, operator, case_id))
    assert view["status"] == "referred"
    assert view["risk"]["level"] == "high"
    assert {r["code"]: r["evidence"] for r in view["risk"]["reasons"]} == {"minor": [], "published": ["ينشر صورها"]}
    [referral] = view["referrals"]
    assert referral["status"] == "accepted", "the latest status change wins whatever order they arrive in"
    assert referral["deliveries"][0]["outcome"] == "delivered"
    assert [(e["service"], e["reason"]) for e in view["escalations"]] == [("legal_aid", "no_match")]
    assert view["narrative"] == NARRATIVE and view["safe_contact"]["code_word"] == SECRETS["code_word"]


def test_an_operator_is_told_of_a_repeat_caller_s_cases_a_colleague_holds_without_their_references(
        pools, outbox, keys):
    first_operator, second_operator = staff(pools, "operator"), staff(pools, "operator")
    service = intake(pools, outbox, keys)
    body_of(post_case(service, first_operator))
    second = body_of(post_case(service, second_operator))
    assert body_of(get_case(service, second_operator, second["id"]))["repeat_caller"] == {
        "other_cases": 1, "references": []}


def test_a_repeat_caller_is_found_by_phone_however_it_was_typed(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    first = body_of(post_case(service, operator))
    second = body_of(post_case(service, operator, {**CASE, "safe_contact": {"phone": "+964 ٧٧٠-١٢٣-٤٥٦٧"}}))

    view = body_of(get_case(service, operator, second["id"]))
    assert view["repeat_caller"] == {"other_cases": 1, "references": [first["reference"]]}


# Retention ---------------------------------------------------------------------------------------------

def test_a_refused_request_for_a_case_does_not_keep_it_from_being_purged_and_a_read_does(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    case_id = uuid.UUID(body_of(post_case(service, operator))["id"])
    with pools["intake"].transaction() as cur:
        cur.execute("UPDATE cases SET received_at = received_at - interval '3 days' WHERE id = %(id)s", {"id": case_id})
        cur.execute("UPDATE audit_log SET at = at - interval '3 days' WHERE case_id = %(id)s", {"id": case_id})
    cutoff = datetime.now(timezone.utc) - timedelta(days=1)

    def candidates():
        with pools["intake"].transaction() as cur:
            return retention.candidates(cur, cutoff)
    assert candidates() == [case_id]

    assert call(service, "get_case", json_request("GET", f"/api/cases/{case_id}"), case_id).status_code == 401
    stranger = staff(pools, "operator")
    assert get_case(service, stranger, case_id).status_code == 404
    assert audit_actions(pools, case_id)[-2:] == ["access_refused", "case_read_denied"]
    assert candidates() == [case_id], "a stranger who knows the id cannot hold the case open"

    assert get_case(service, operator, case_id).status_code == 200
    assert candidates() == [], "staff at work on it can"


def test_a_purged_case_takes_no_new_override_reason(pools, outbox, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    service = intake(pools, outbox, keys)
    case = body_of(post_case(service, operator))
    case_id = uuid.UUID(case["id"])
    intake_status(pools, keys).on_case_status([triaged(case_id, case["reference"], "medium", keys=keys).to_message()])
    now = datetime.now(timezone.utc)
    with pools["intake"].transaction() as cur:
        retention.purge(cur, [case_id], keys, now)
        purge_platform_tables(cur, [case_id], now)

    refused = call(service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override", {
        "level": "high", "reason": "She called again from her cousin's phone 07801234567"}, supervisor.headers()),
        case_id)
    assert refused.status_code == 409 and body_of(refused)["error"]["code"] == "case_purged"
    assert rows(pools["intake"], "SELECT count(*) AS n FROM case_overrides")[0]["n"] == 0
    assert body_of(get_case(service, supervisor, case_id))["risk"]["level"] == "medium"


# Nothing personal at rest in plaintext -----------------------------------------------------------------

TEXT_COLUMNS = """
    SELECT table_schema, table_name, column_name FROM information_schema.columns
    WHERE table_schema IN ('intake', 'triage') AND data_type IN ('text', 'jsonb', 'ARRAY', 'character varying')
"""


def test_the_database_holds_no_plaintext_of_any_encrypted_field_in_any_column(pools, outbox, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    service = intake(pools, outbox, keys)
    created = body_of(post_case(service, operator))
    case_id = uuid.UUID(created["id"])
    evidence = {"published": ["evidence-marker"]}
    intake_status(pools, keys).on_case_status(
        [triaged(case_id, created["reference"], "medium", evidence, keys).to_message()])
    override_reason = "override-reason-marker"
    call(service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override",
                                                {"level": "critical", "reason": override_reason},
                                                supervisor.headers()), case_id)
    call(service, "api_draft_key", json_request("GET", "/api/me/draft-key", headers=operator.headers()))
    get_case(service, supervisor, case_id)

    markers = [*SECRETS.values(), "+9647701234567", "7701234567", "evidence-marker", override_reason, "زينب"]
    found = []
    for column in rows(pools["intake"], TEXT_COLUMNS):
        query = (f'SELECT "{column["column_name"]}"::text AS value FROM '
                 f'"{column["table_schema"]}"."{column["table_name"]}"')
        for row in rows(pools["intake"], query):
            found += [(column["table_name"], column["column_name"], marker)
                      for marker in markers if row["value"] and marker in row["value"]]
    assert found == []
    sealed = rows(pools["intake"], "SELECT narrative_sealed, contact_code_word_sealed FROM cases")[0]
    assert all(value.startswith("s1.") for value in sealed.values())


# Key rotation -----------------------------------------------------------------------------------------

def test_rows_sealed_before_a_rotation_open_after_it_and_after_reseal_are_all_under_the_new_key(
        pools, outbox, keys):
    operator, supervisor = staff(pools, "operator"), staff(pools, "supervisor")
    old_service = intake(pools, outbox, keys)
    created = body_of(post_case(old_service, operator))
    case_id = uuid.UUID(created["id"])
    intake_status(pools, keys).on_case_status(
        [triaged(case_id, created["reference"], "medium", {"published": ["x"]}, keys).to_message()])
    call(old_service, "override_risk", json_request("POST", f"/api/cases/{case_id}/risk-override",
                                                    {"level": "high", "reason": "raised"}, supervisor.headers()), case_id)
    rotated = dataclasses.replace(keys, data=keys.data.rotated())
    new_service = intake(pools, outbox, rotated)

    assert body_of(get_case(new_service, operator, case_id))["narrative"] == NARRATIVE, "old rows open after rotation"
    changed = handlers.reseal(pools["intake"], rotated.data)
    assert changed == {"cases": 1, "case_overrides": 1, "users": 0}
    [case] = rows(pools["intake"], "SELECT * FROM cases")
    sealed = [value for column, value in case.items() if column.endswith("_sealed") and value]
    assert len(sealed) == 6 and not any(rotated.data.needs_reseal(value) for value in sealed)
    view = body_of(get_case(new_service, operator, case_id))
    assert view["narrative"] == NARRATIVE and view["risk"]["overrides"][0]["reason"] == "raised"
    retired = dataclasses.replace(rotated, data=dataclasses.replace(
        rotated.data, keys={rotated.data.primary: rotated.data.keys[rotated.data.primary]}))
    assert body_of(get_case(intake(pools, outbox, retired), operator, case_id))["safe_contact"]["phone"] == \
        "+9647701234567", "after reseal the old key can be retired"
    assert handlers.reseal(pools["intake"], rotated.data) == {"cases": 0, "case_overrides": 0, "users": 0}


def test_the_victim_s_exact_age_is_sealed_at_rest_and_an_older_version_s_clear_copy_shows_until_reseal_seals_it(
        pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    case_id = uuid.UUID(body_of(post_case(service, operator, {**CASE, "victim_age": 17}))["id"])

    def kept():
        [row] = rows(pools["intake"], "SELECT victim_age, victim_age_sealed, victim_age_band FROM cases")
        assert row["victim_age"] is None and row["victim_age_band"] == "15_17", "the band stays for statistics"
        return keys.data.open(row["victim_age_sealed"], field_context(case_id, "victim_age"))
    assert kept() == "17" and body_of(get_case(service, operator, case_id))["victim_age"] == 17
    with pools["intake"].transaction() as cur:  # as a case recorded before migration 0006 keeps it
        cur.execute("UPDATE cases SET victim_age = 16, victim_age_sealed = NULL")
    assert body_of(get_case(service, operator, case_id))["victim_age"] == 16

    assert handlers.reseal(pools["intake"], keys.data) == {"cases": 1, "case_overrides": 0, "users": 0}
    assert kept() == "16" and body_of(get_case(service, operator, case_id))["victim_age"] == 16
    assert handlers.reseal(pools["intake"], keys.data) == {"cases": 0, "case_overrides": 0, "users": 0}


def test_the_draft_key_is_one_per_account_and_stays_the_same_across_sessions(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)

    def key(who):
        return body_of(call(service, "api_draft_key", json_request("GET", "/api/me/draft-key", headers=who.headers())))

    first = key(operator)
    with pools["intake"].transaction() as cur:
        cookie, csrf = auth.start_session(cur, operator.id, "127.0.0.1", datetime.now(timezone.utc))
    assert key(Staff(operator.id, operator.username, cookie, csrf)) == first
    assert key(staff(pools, "operator"))["key"] != first["key"]


# Pages ------------------------------------------------------------------------------------------------

def test_pages_escape_what_people_typed_and_send_no_inline_script(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    injected = {**CASE, "narrative": "<script>alert(1)</script>' OR 1=1; --",
                "safe_contact": {"name": '"><img src=x onerror=alert(2)>'}}
    case_id = uuid.UUID(body_of(post_case(service, operator, injected))["id"])

    page = service.case_page(json_request("GET", f"/cases/{case_id}", headers=operator.headers()), case_id)
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert re.findall(r"<script[^>]*>", html) == ['<script src="/static/app.js" defer>']


def test_pages_are_arabic_right_to_left_by_default_and_english_on_request(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    arabic = service.new_case_page(json_request("GET", "/cases/new", headers=operator.headers())).get_data(as_text=True)
    english = service.new_case_page(json_request("GET", "/cases/new", headers=operator.headers(
        Cookie=f"{auth.SESSION_COOKIE}={operator.cookie}; sanad_lang=en"))).get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in arabic and "تسجيل حالة جديدة" in arabic
    assert '<html lang="en" dir="ltr">' in english and "Record a new case" in english


def test_a_page_asked_for_without_a_session_sends_to_the_login_page(pools, outbox, keys):
    response = intake(pools, outbox, keys).queue_page(json_request("GET", "/queue"))
    assert response.status_code == 303 and response.headers["Location"].startswith("/login?next=/queue")


def test_the_login_form_needs_its_own_csrf_cookie_and_then_opens_a_session(pools, outbox, keys):
    operator = staff(pools, "operator")
    service = intake(pools, outbox, keys)
    form = f"username={operator.username}&password={PASSWORD.replace(' ', '+')}&csrf_token=abc&next=//evil.example"

    forged = service.login_submit(json_request("POST", "/login", raw=form,
                                               content_type="application/x-www-form-urlencoded"))
    assert forged.status_code == 403
    assert not any(cookie.startswith(auth.SESSION_COOKIE) for cookie in forged.headers.getlist("Set-Cookie"))
    sessions_before = len(rows(pools["intake"], "SELECT token_hash FROM sessions"))

    signed = service.login_submit(json_request("POST", "/login", raw=form, content_type="application/x-www-form-urlencoded",
                                               headers={"Cookie": f"{auth.LOGIN_CSRF_COOKIE}=abc"}))
    assert signed.status_code == 303
    assert signed.headers["Location"] == "/queue", "never a redirect off the site"
    assert len(rows(pools["intake"], "SELECT token_hash FROM sessions")) == sessions_before + 1
