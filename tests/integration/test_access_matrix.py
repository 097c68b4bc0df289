"""Who gets in, against the six real processes: every endpoint of intake (its API and the pages that show
case or account data), of referral's partner API and of its admin API, tried with no credentials, an
expired session, a revoked token or key, a credential of another role, and a credential whose holder the
case or referral is not theirs. Each is refused (401, 403 or 404, as the design says; the login form for a
page), shows nothing of the case, and is written to the service's audit log: the one refusal not audited is
a page visited with no session at all, which is how everyone reaches the login form.

The matrix is checked against the services' route tables and OpenAPI documents, so an endpoint added
without a line here fails the first test. A partner, finally, reads only the referrals made to it, only
for the needs the victim consented to, and of each only the fields its document lists.
"""
import json
import re
from dataclasses import dataclass

import pytest
import requests
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from sanad.platform.pool import Pool
from services.intake.service import OPENAPI_FILE, IntakeService
from services.referral.service import PARTNER_OPENAPI, ReferralService
from tests.support.people import (bearer, partner, referral_staff_key, referred_case, sanad, session_of,
                                  staff_member)

pytestmark = pytest.mark.integration

NARRATIVE = "He says he will send the photos to my brother tonight unless I pay."
CONTACT_NAME = "Umm Ali"
# Two needs, one consent: legal aid must never hear of this case.
CASE = {"narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar", "needs": ["counselling", "legal_aid"],
        "consents": ["counselling"], "safe_contact": {"name": CONTACT_NAME, "phone": "07801112233"}}


@dataclass(frozen=True)
class Guarded:
    """One guarded endpoint. `allowed` names a credential that gets past its gate; `other_role` one of a
    role it refuses, answered `other_status`; `foreign` one allowed in general but to whom this case or
    referral is not theirs (404). `action` is what referral's audit log calls the call."""
    service: str
    method: str
    path: str
    allowed: str
    other_role: str | None
    other_status: int = 403
    foreign: str | None = None
    body: dict | None = None
    query: str = ""
    page: bool = False
    action: str | None = None

    @property
    def key(self):
        return self.method, self.path

    def __str__(self):
        return f"{self.method} {self.path}"


INVALID_BODY = {"not_a_field": True}
NEW_USER = {"username": "never-made", "role": "operator", "password": "long enough to be a password"}
POLICY = {"ack_seconds": 300, "max_reoffers": 2}
TERMS = {"governorates": ["dhi_qar"], "always_open": True}

MATRIX = [
    # intake's API: operators, counsellors, supervisors and admins, by session or API token
    Guarded("intake", "DELETE", "/api/session", "operator", None),
    Guarded("intake", "GET", "/api/me", "operator", None),
    Guarded("intake", "GET", "/api/me/draft-key", "operator", "admin"),
    Guarded("intake", "GET", "/api/cases", "operator", "admin"),
    Guarded("intake", "POST", "/api/cases", "operator", "counsellor_a", body=CASE),
    Guarded("intake", "GET", "/api/cases/{case_id}", "operator", "admin", 404, foreign="operator_b"),
    Guarded("intake", "POST", "/api/cases/{case_id}/risk-override", "operator", "admin", 404, foreign="counsellor_b",
            body={"level": "critical", "reason": "she is on the roof"}),
    Guarded("intake", "PUT", "/api/cases/{case_id}/assignment", "supervisor", "admin", 404, foreign="operator_b",
            body={"assignee": None}),
    Guarded("intake", "GET", "/api/cases/{case_id}/audit", "supervisor", "operator"),
    Guarded("intake", "GET", "/api/users", "admin", "supervisor"),
    Guarded("intake", "POST", "/api/users", "admin", "operator", body=NEW_USER),
    Guarded("intake", "PATCH", "/api/users/{user_id}", "admin", "supervisor", body={"active": False}),
    # intake's pages that show cases or accounts
    Guarded("intake", "GET", "/queue", "operator", "admin", page=True),
    Guarded("intake", "GET", "/cases/new", "operator", "counsellor_a", page=True),
    Guarded("intake", "GET", "/cases/{case_id}", "operator", "admin", 404, foreign="counsellor_b", page=True),
    Guarded("intake", "GET", "/users", "admin", "operator", page=True),
    # referral's partner API: partner keys only
    Guarded("referral", "GET", "/partner/v1/referrals", "partner_a", "supervisor_key", action="referral.list"),
    Guarded("referral", "GET", "/partner/v1/referrals/{referral_id}", "partner_a", "supervisor_key",
            foreign="partner_b", action="referral.read"),
    Guarded("referral", "POST", "/partner/v1/referrals/{referral_id}/status", "partner_a", "admin_key",
            foreign="partner_b", body={"status": "accepted"}, action="referral.status"),
    Guarded("referral", "PUT", "/partner/v1/capacity", "partner_a", "supervisor_key", body={"accepting": False},
            action="partner.capacity"),
    # referral's admin API: staff keys, by role
    Guarded("referral", "GET", "/admin/v1/partners", "supervisor_key", "partner_a", action="directory.read"),
    Guarded("referral", "GET", "/admin/v1/partners/{partner_id}", "supervisor_key", "counsellor_key",
            action="directory.read"),
    Guarded("referral", "PATCH", "/admin/v1/partners/{partner_id}", "admin_key", "supervisor_key",
            body={"accepting": False}, action="directory.write"),
    Guarded("referral", "PUT", "/admin/v1/partners/{partner_id}/services/{service}", "admin_key", "supervisor_key",
            body=TERMS, action="directory.write"),
    Guarded("referral", "DELETE", "/admin/v1/partners/{partner_id}/services/{service}", "admin_key", "partner_a",
            action="directory.write"),
    Guarded("referral", "GET", "/admin/v1/policies", "supervisor_key", "counsellor_key", action="policy.read"),
    Guarded("referral", "PUT", "/admin/v1/policies/{level}", "admin_key", "supervisor_key", body=POLICY,
            action="policy.write"),
    Guarded("referral", "GET", "/admin/v1/match", "supervisor_key", "partner_a",
            query="?service=counselling&governorate=dhi_qar", action="directory.match"),
    Guarded("referral", "GET", "/admin/v1/cases/{case_id}/referrals", "supervisor_key", "admin_key",
            action="case.read"),
    Guarded("referral", "POST", "/admin/v1/cases/{case_id}/refer-anyway", "supervisor_key", "admin_key",
            body={"service": "legal_aid", "partner_id": "{partner_b_id}", "reason_code": "other"},
            action="referral.refer_anyway"),
    Guarded("referral", "POST", "/admin/v1/referrals/{referral_id}/status", "counsellor_key", "admin_key",
            body={"status": "accepted"}, action="referral.status"),
]
BY_KEY = {(g.service, *g.key): g for g in MATRIX}

# Endpoints anyone may call, none of which shows a case, a person or a key: the login form and its
# posts, quick exit, the language switch, static files, the API documents, health, readiness and metrics,
# "/" (a redirect), and the JSON 404 for any other /api address.
PUBLIC = {
    ("intake", "POST", "/api/session"), ("intake", "GET", "/api/openapi.json"), ("intake", "GET", "/"),
    ("intake", "GET", "/login"), ("intake", "POST", "/login"), ("intake", "POST", "/logout"),
    ("intake", "GET", "/exit"), ("intake", "GET", "/lang/{code}"), ("intake", "GET", "/static/{name}"),
    ("intake", "GET,POST,PUT,PATCH,DELETE", "/api/{rest}"),
    ("referral", "GET", "/partner/openapi.json"),
    *((service, "GET", path) for service in ("intake", "referral") for path in ("/health", "/ready", "/metrics")),
}
CREDENTIALS_REFUSED = ("none", "expired", "revoked")


def _template(path):
    """/api/cases/<uuid:case_id> and /api/cases/{case_id} alike as /api/cases/{case_id}."""
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", path)


def routes(service_class):
    found = set()
    for name in dir(service_class):
        for entrypoint in getattr(getattr(service_class, name), ENTRYPOINT_EXTENSIONS_ATTR, ()):
            if hasattr(entrypoint, "url"):
                found.add((entrypoint.method, _template(entrypoint.url)))
    return found


def documented(path):
    return {(method.upper(), template) for template, operations in json.loads(path.read_text())["paths"].items()
            for method in operations if method != "parameters"}


def test_every_endpoint_of_the_route_tables_and_documents_is_in_the_matrix_or_public():
    served = {("intake", *route) for route in routes(IntakeService)} | {
        ("referral", *route) for route in routes(ReferralService)}
    assert served - PUBLIC == set(BY_KEY), "an endpoint needs a line in MATRIX (or in PUBLIC, if anyone may call it)"
    assert {("intake", *op) for op in documented(OPENAPI_FILE)} <= set(BY_KEY) | PUBLIC
    assert {("referral", *op) for op in documented(PARTNER_OPENAPI)} <= set(BY_KEY)


# The world the matrix is tried in -------------------------------------------------------------------------

class World:
    pass


@pytest.fixture(scope="module")
def world(stack, stack_env):
    env = stack_env
    w = World()
    w.stack = stack
    w.partner_a = partner(env, "Matrix Counselling Centre (fictional)", "counselling")
    w.partner_b = partner(env, "Matrix Legal Aid (fictional)", "legal_aid")
    staff = {
        "operator": staff_member(env, "operator"), "operator_b": staff_member(env, "operator", prefix="other-op"),
        "supervisor": staff_member(env, "supervisor"), "admin": staff_member(env, "admin"),
        "counsellor_a": staff_member(env, "counsellor", partner_id=w.partner_a.id),
        "counsellor_b": staff_member(env, "counsellor", partner_id=w.partner_b.id),
    }
    w.staff = staff
    holder = session_of(stack, staff["operator"])
    w.case, referrals = referred_case(stack, CASE, ["counselling"], client=holder)
    w.referral_id = referrals["counselling"]

    # A revoked API token, an expired session (its expiry moved into the past, as time would), a partner
    # key replaced by a rotation without grace, and a staff key revoked in referral's table.
    revoked = staff_member(env, "supervisor", prefix="revoked")
    sanad(env, "token", "revoke", revoked.token_id)
    expiring = staff_member(env, "supervisor", prefix="expired")
    expired = session_of(stack, expiring)
    with Pool(env["SANAD_DATABASE_URL"], size=1, schema="intake").transaction() as cur:
        cur.execute("UPDATE sessions SET expires_at = now() - interval '1 minute' WHERE user_id = %(id)s",
                    {"id": expiring.id})
    old_partner_key = w.partner_a.key
    w.partner_a.key = sanad(env, "partner", "rotate-key", w.partner_a.id, "--grace-minutes", "0")[0].strip()
    keys = {role: referral_staff_key(env, role, w.partner_a.id if role == "counsellor" else None)
            for role in ("counsellor", "supervisor", "admin")}
    revoked_staff_key = referral_staff_key(env, "admin")
    with Pool(env["SANAD_DATABASE_URL"], size=1, schema="referral").transaction() as cur:
        cur.execute("UPDATE api_keys SET revoked_at = now() WHERE key_id = %(id)s",
                    {"id": revoked_staff_key.split("_")[1]})

    w.credentials = {name: {"headers": member.headers} for name, member in staff.items()}
    w.credentials.update({
        "none": {},
        "intake:expired": {"cookies": dict(expired.cookies), "headers": dict(expired.headers)},
        "intake:revoked": {"headers": revoked.headers},
        "partner_a": {"headers": w.partner_a.headers}, "partner_b": {"headers": w.partner_b.headers},
        "referral:expired": {"headers": bearer(old_partner_key)},
        "referral:revoked": {"headers": bearer(revoked_staff_key)},
        **{f"{role}_key": {"headers": bearer(key)} for role, key in keys.items()},
    })
    w.intake_db = Pool(env["SANAD_DATABASE_URL"], size=1, schema="intake")
    w.referral_db = Pool(env["SANAD_DATABASE_URL"], size=1, schema="referral")
    yield w
    w.intake_db.close()
    w.referral_db.close()
    for p in (w.partner_a, w.partner_b):
        p.receiver.__exit__(None, None, None)


def credential(world, guarded, name):
    """A credential by name; "expired" and "revoked" are the service's own kind (session or token for
    intake; for referral, a partner key rotated away, or a staff key revoked)."""
    if name in ("expired", "revoked"):
        name = f"{guarded.service}:{name}"
    return world.credentials[name]


def send(world, guarded, name, body=None):
    path = guarded.path.format(case_id=world.case["id"], referral_id=world.referral_id,
                               user_id=world.staff["operator_b"].id, partner_id=world.partner_a.id,
                               service="counselling", level="low")
    body = guarded.body if body is None else body
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace("{partner_b_id}", world.partner_b.id))
    kwargs = credential(world, guarded, name)
    return requests.request(guarded.method, world.stack.url(guarded.service) + path + guarded.query, json=body,
                            allow_redirects=False, timeout=30,
                            headers=dict(kwargs.get("headers", {})), cookies=kwargs.get("cookies"))


def audit_after(world, guarded, marker):
    db = world.intake_db if guarded.service == "intake" else world.referral_db
    with db.transaction() as cur:
        cur.execute("SELECT * FROM audit_log WHERE id > %(marker)s ORDER BY id", {"marker": marker})
        return [dict(row) for row in cur.fetchall()]


def audit_marker(world, guarded):
    db = world.intake_db if guarded.service == "intake" else world.referral_db
    with db.transaction() as cur:
        cur.execute("SELECT coalesce(max(id), 0) AS id FROM audit_log")
        return cur.fetchone()["id"]


def assert_refused_and_shows_nothing(world, guarded, response, status):
    text = response.text
    for secret in (NARRATIVE, CONTACT_NAME, world.case["reference"], "+9647801112233"):
        assert secret not in text, f"{guarded} let {secret!r} out"
    if guarded.page and status == 401:
        assert response.status_code == 303 and response.headers["Location"].startswith("/login"), response.text[:300]
        return
    assert response.status_code == status, response.text[:300]
    if not guarded.page:
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.json()["error"]["code"] in ("unauthenticated", "forbidden", "not_found", "case_not_found")
        assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Content-Type-Options"] == "nosniff"
        if status == 401:  # every 401 names the scheme to authenticate with (RFC 9110, section 11.6.1)
            assert response.headers["WWW-Authenticate"] == 'Bearer realm="sanad"'


# The matrix ------------------------------------------------------------------------------------------------

def cells():
    for guarded in MATRIX:
        for name in CREDENTIALS_REFUSED:
            yield pytest.param(guarded, name, 401, id=f"{guarded} | {name}")
        if guarded.other_role:
            yield pytest.param(guarded, guarded.other_role, guarded.other_status, id=f"{guarded} | {guarded.other_role}")
        if guarded.foreign:
            yield pytest.param(guarded, guarded.foreign, 404, id=f"{guarded} | {guarded.foreign} (not theirs)")


@pytest.mark.parametrize("guarded,who,status", cells())
def test_a_credential_that_may_not_is_refused_shows_nothing_and_is_audited(world, guarded, who, status):
    marker = audit_marker(world, guarded)
    response = send(world, guarded, who)
    assert_refused_and_shows_nothing(world, guarded, response, status)
    written = audit_after(world, guarded, marker)
    if guarded.service == "intake":
        assert_intake_audited(world, guarded, who, status, written)
    else:
        assert_referral_audited(world, guarded, who, written)


def assert_intake_audited(world, guarded, who, status, written):
    if guarded.page and who == "none":
        assert written == [], "a visit with no session at all goes to the login form unrecorded"
        return
    if status == 404:  # the case is not theirs: refused like a case that does not exist, and recorded as such
        assert [(row["action"], str(row["case_id"]), str(row["actor_id"])) for row in written] == [
            ("case_read_denied", world.case["id"], world.staff[who].id)], written
        return
    [row] = written
    assert row["action"] == "access_refused" and row["ip"] == "127.0.0.1"
    assert row["detail"]["path"].startswith(guarded.path.split("{")[0]) and row["detail"]["method"] == guarded.method
    if who in CREDENTIALS_REFUSED:
        assert (row["actor_id"], row["via"], row["detail"]["code"]) == (None, "anonymous", "unauthenticated")
        assert row["detail"]["presented"] == {"none": "none", "expired": "session", "revoked": "token"}[who]
    else:
        assert (str(row["actor_id"]), row["detail"]["code"]) == (world.staff[who].id, "forbidden")
    if "{case_id}" in guarded.path:
        assert str(row["case_id"]) == world.case["id"], "a refusal about a case shows in that case's trail"


def assert_referral_audited(world, guarded, who, written):
    [row] = written
    assert (row["action"], row["outcome"], row["remote_addr"]) == (guarded.action, "refused", "127.0.0.1"), row
    if who == guarded.foreign:
        assert row["actor_id"] == world.partner_b.id and str(row["referral_id"]) == world.referral_id
        return
    reason = {"none": "missing_or_malformed", "expired": "expired_key", "revoked": "expired_key"}.get(who, "wrong_role")
    assert row["detail"]["reason"] == reason and row["detail"]["path"].startswith(guarded.path.split("{")[0])


@pytest.mark.parametrize("guarded", MATRIX, ids=str)
def test_the_credential_the_design_allows_gets_past_the_gate(world, guarded):
    """The other half of each row: what is refused above is refused for who asks, not for what is asked.
    Writes carry a body the schema refuses (or name no such service), so nothing changes."""
    body = INVALID_BODY if guarded.body is not None else None
    if guarded.method == "DELETE" and guarded.service == "referral":
        guarded = Guarded(**{**guarded.__dict__, "path": guarded.path.replace("{service}", "shelter")})
    response = send(world, guarded, guarded.allowed, body=body)
    assert response.status_code not in (401, 403), response.text[:300]
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Content-Type-Options"] == "nosniff"
    if guarded.method == "GET":
        assert response.status_code == 200, response.text[:300]


# What a partner reads --------------------------------------------------------------------------------------

def test_nothing_refused_changed_the_referral_or_the_case(world):
    """Every refused write above left the referral offered and the case where it was."""
    answer = requests.get(world.stack.url("referral") + f"/partner/v1/referrals/{world.referral_id}",
                          headers=world.partner_a.headers, timeout=30)
    assert answer.status_code == 200 and answer.json()["status"] == "offered"
    case = requests.get(world.stack.url("intake") + f"/api/cases/{world.case['id']}",
                        headers=world.staff["supervisor"].headers, timeout=30).json()
    assert case["risk"] is None or not case["risk"]["overrides"]
    assert case["assigned_to"]["id"] == world.staff["operator"].id


def test_a_partner_reads_only_its_own_referrals_only_for_consented_needs_and_only_the_documented_fields(world):
    document = json.loads(PARTNER_OPENAPI.read_text())
    fields = set(document["components"]["schemas"]["Referral"]["properties"])
    url = world.stack.url("referral") + "/partner/v1/referrals"

    mine = requests.get(url, headers=world.partner_a.headers, timeout=30).json()["referrals"]
    assert [r["id"] for r in mine] == [world.referral_id]
    [referral] = mine
    assert set(referral) == fields
    assert (referral["reference"], referral["service"], referral["governorate"]) == (
        world.case["reference"], "counselling", "dhi_qar")
    shown = json.dumps(referral, ensure_ascii=False)
    assert world.case["id"] not in shown and NARRATIVE not in shown and CONTACT_NAME not in shown

    # Legal aid was needed but not consented to: its partner is offered nothing and finds nothing.
    assert requests.get(url, headers=world.partner_b.headers, timeout=30).json() == {"referrals": [], "next": None}
    assert world.partner_b.offers() == []
    assert [r["service"] for r in world.case["referrals"]] == ["counselling"]
    for offer in world.partner_a.offers():
        assert set(offer["data"]) == {"referral_id", "case_reference", "risk_level", "service", "governorate",
                                      "details_url"}
        # The link leads to the partner API of this stack (no proxy in front), which shows the referral.
        details = requests.get(offer["data"]["details_url"], headers=world.partner_a.headers, timeout=30)
        assert details.status_code == 200 and details.json() == referral, details.text[:300]


def test_a_counsellor_sees_a_case_referred_to_their_partner_and_only_that(world):
    intake = world.stack.url("intake")
    own = requests.get(f"{intake}/api/cases/{world.case['id']}", headers=world.staff["counsellor_a"].headers,
                       timeout=30)
    assert own.status_code == 200 and own.json()["reference"] == world.case["reference"]
    queue = requests.get(f"{intake}/api/cases", headers=world.staff["counsellor_b"].headers, timeout=30)
    assert queue.status_code == 200 and world.case["id"] not in queue.text
