"""Intake over real HTTP with the six real processes: a staff session from login to logout, a risk
override that travels to triage and comes back as the case's level, and the key rotation procedure an
operator follows (rotate, restart, reseal) leaving every old row readable."""
import json
import shutil
import signal
import uuid

import pytest
import requests

from tests.integration.conftest import sanad_cli
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

PASSWORD = "a long night-shift passphrase"
NARRATIVE = "يهددها ينشر صورها اذا ما تدفع 300 دولار"
CASE = {"narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar", "needs": ["counselling"],
        "consents": ["counselling"], "safe_contact": {"name": "أم علي", "phone": "07801112233"}}


@pytest.fixture(scope="module")
def accounts(stack_env):
    made = {}
    for role in ("operator", "supervisor"):
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        sanad_cli(stack_env, "user", "add", username, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
        made[role] = username
    return made


def logged_in(stack, username):
    session = requests.Session()
    response = session.post(stack.url("intake") + "/api/session", json={"username": username, "password": PASSWORD},
                            timeout=10)
    assert response.status_code == 200, response.text
    session.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    return session, response


def test_a_staff_session_from_login_to_logout(stack, accounts):
    session, login = logged_in(stack, accounts["operator"])
    cookie = login.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie

    anonymous = requests.get(stack.url("intake") + "/api/cases", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"
    no_csrf = requests.post(stack.url("intake") + "/api/cases", json=CASE, cookies=session.cookies, timeout=10)
    assert no_csrf.status_code == 403
    created = session.post(stack.url("intake") + "/api/cases", json=CASE, timeout=10)
    assert created.status_code == 201
    case = session.get(stack.url("intake") + created.json()["status_url"], timeout=10).json()
    assert case["narrative"] == NARRATIVE and case["safe_contact"]["phone"] == "+9647801112233"

    assert session.delete(stack.url("intake") + "/api/session", timeout=10).status_code == 200
    assert session.get(stack.url("intake") + "/api/cases", timeout=10).status_code == 401


def test_an_address_or_method_no_route_takes_is_answered_in_json_naming_the_methods_there_are(stack):
    intake = stack.url("intake")
    case_id = uuid.uuid4()
    for method, path, allowed in [("PUT", "/api/users", {"GET", "HEAD", "POST"}),
                                  ("OPTIONS", f"/api/cases/{case_id}", {"GET", "HEAD"}),
                                  ("PATCH", "/api/me", {"GET", "HEAD"})]:
        response = requests.request(method, intake + path, timeout=10)
        assert response.status_code == 405, (method, path, response.text)
        assert set(response.headers["Allow"].split(", ")) == allowed, (method, path)
        assert response.json()["error"]["code"] == "method_not_allowed"

    for method, path in [("GET", "/api/cases/not-a-case-id"), ("OPTIONS", "/api/nothing-here"),
                         ("GET", "/api/cases/%0A")]:
        response = requests.request(method, intake + path, headers={"Accept-Language": "en"}, timeout=10)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found"
    arabic = requests.get(intake + "/api/cases/not-a-case-id", headers={"Accept-Language": "ar"}, timeout=10)
    assert arabic.json()["error"]["message"] == "لا يوجد شيء في هذا العنوان."


def test_a_body_sent_in_chunks_is_read_like_any_other_up_to_the_same_limit(stack, accounts):
    session, _ = logged_in(stack, accounts["operator"])
    body = json.dumps(CASE, ensure_ascii=False).encode()
    created = session.post(stack.url("intake") + "/api/cases", data=iter([body[:10], body[10:]]),
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert created.request.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in created.request.headers
    assert created.status_code == 201, created.text
    assert session.get(stack.url("intake") + created.json()["status_url"], timeout=10).json()["narrative"] == NARRATIVE

    too_long = json.dumps({**CASE, "narrative": "x" * 300_000}).encode()
    refused = session.post(stack.url("intake") + "/api/cases", data=iter([too_long]),
                           headers={"Content-Type": "application/json"}, timeout=10)
    assert refused.status_code == 413 and refused.json()["error"]["code"] == "request_entity_too_large"


def test_an_override_travels_to_triage_and_comes_back_as_the_cases_level(stack, accounts):
    operator, _ = logged_in(stack, accounts["operator"])
    supervisor, _ = logged_in(stack, accounts["supervisor"])
    case_url = stack.url("intake") + operator.post(stack.url("intake") + "/api/cases", json=CASE,
                                                   timeout=10).json()["status_url"]

    def assessed():
        """triage assessed the case"""
        return operator.get(case_url, timeout=10).json()["risk"]
    original = wait_until(assessed)
    assert original["level"] != "critical"

    raised = operator.post(case_url + "/risk-override", json={"level": "critical", "reason": "she is on the roof"},
                           timeout=10)
    assert raised.status_code == 200

    def reannounced():
        """triage re-announced the case with the override among its reasons"""
        risk = operator.get(case_url, timeout=10).json()["risk"]
        return risk if {"code": "override", "source": "override", "evidence": []} in risk["reasons"] else None
    risk = wait_until(reannounced)
    assert risk["level"] == "critical"
    assert [r["code"] for r in risk["reasons"][:-1]] == [r["code"] for r in original["reasons"]], \
        "the original reasons are kept"
    trail = supervisor.get(case_url + "/audit", timeout=10).json()["entries"]
    assert [e["action"] for e in trail if e["action"] == "risk_overridden"] == ["risk_overridden"]
    assert operator.get(case_url + "/audit", timeout=10).status_code == 403


def test_rotating_the_data_key_then_resealing_keeps_every_old_row_readable(stack, stack_env, accounts, tmp_path):
    """Last in this module: it restarts intake on a rotated copy of the key file."""
    operator, _ = logged_in(stack, accounts["operator"])
    old_case = operator.post(stack.url("intake") + "/api/cases", json=CASE, timeout=10).json()
    rotated_file = tmp_path / "keys.json"
    shutil.copy(stack_env["SANAD_KEYS_FILE"], rotated_file)
    env = {**stack_env, "SANAD_KEYS_FILE": str(rotated_file)}
    before = json.loads(rotated_file.read_text())["data"]["primary"]

    sanad_cli(env, "keys", "rotate")
    primary = json.loads(rotated_file.read_text())["data"]["primary"]
    assert primary != before
    stack.env["SANAD_KEYS_FILE"] = str(rotated_file)
    stack.signal("intake", signal.SIGTERM)
    stack.restart("intake")
    stack.wait_healthy(names=["intake"])
    output = sanad_cli(env, "keys", "reseal")
    assert "intake: cases" in output and f"data key {primary}" in output
    assert all(f"{schema}: " in output for schema in ("intake", "triage", "referral", "notify")), \
        "every service that stores a sealed value reseals it"

    operator, _ = logged_in(stack, accounts["operator"])
    case = operator.get(stack.url("intake") + old_case["status_url"], timeout=10).json()
    assert case["narrative"] == NARRATIVE and case["safe_contact"]["name"] == "أم علي"
