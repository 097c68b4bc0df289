"""Hostile input against intake's API, the real process over real HTTP: oversized bodies, deep JSON, wrong
content types, bytes that are not UTF-8, huge narratives, SQL, HTML and control characters in every text
field, and Hypothesis-made bodies. Every answer is a JSON error that names the field at fault (or a
success that stores the text exactly as typed), never a 500 and never a stack trace, and a refused request
leaves nothing half-written behind.
"""
import json

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sanad.launcher import Stack
from sanad.platform.pool import Pool
from services.intake.schemas import MAX_NARRATIVE_CHARS
from tests.conftest import ARTIFACTS
from tests.support.operator import machine_client
from tests.support.ports import free_ports

pytestmark = pytest.mark.integration

CASE = {
    "narrative": "He says he will send the photos to my brother tonight.",
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
}
# Where a caller's own words go: the narrative and the safe contact's text fields.
TEXT_FIELDS = (("narrative",), ("safe_contact", "name"), ("safe_contact", "phone"), ("safe_contact", "safe_times"),
               ("safe_contact", "code_word"))
HOSTILE_TEXT = (
    "'; DROP TABLE cases; --",
    "x' OR '1'='1",
    "<script>alert('x')</script>",
    "<img src=x onerror=alert(1)>",
    "{{7*7}} ${7*7} %s %n",
    "\u202eevil\u202c \ufeff zero\u200bwidth",
    "line one\r\nline two\ttab",
    "nul \u0000 inside",
    "lone surrogate \ud800 here",
    "😀" * 40,
)


LOG_DIR = ARTIFACTS / "logs" / "test_hostile_input"


@pytest.fixture(scope="module")
def intake(stack_env):
    env = {**stack_env, "SANAD_LOG_LEVEL": "INFO"}
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    running = Stack(env=env, port_base=free_ports(6), log_dir=LOG_DIR)
    running.start(["intake"])
    try:
        running.wait_healthy(timeout=90)
        running.auth = machine_client(env, "hostile-client")
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def db(stack_env):
    pool = Pool(stack_env["SANAD_DATABASE_URL"], size=2, schema="intake")
    yield pool
    pool.close()


def written(db):
    """How many cases and outbox events intake holds: a refused request must not change either."""
    with db.transaction() as cur:
        cur.execute("SELECT (SELECT count(*) FROM cases) AS cases, (SELECT count(*) FROM outbox) AS events")
        return dict(cur.fetchone())


def post(intake, data, content_type="application/json", headers=None):
    return requests.post(intake.url("intake") + "/api/cases", data=data, timeout=30,
                         headers={"Content-Type": content_type, **intake.auth, **(headers or {})})


def assert_clear_json_error(response, status, field=None):
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    assert "Traceback" not in response.text and 'File "' not in response.text
    error = response.json()["error"]
    assert error["code"] and error["message"]
    if field is not None:
        assert field in error.get("fields", {}), f"the error should name {field}: {error}"


def with_value(path, value):
    case = json.loads(json.dumps(CASE))
    if len(path) == 1:
        case[path[0]] = value
    else:
        case.setdefault(path[0], {})[path[1]] = value
    return case


@pytest.mark.parametrize("body,content_type,status", [
    pytest.param(b'{"narrative": "' + b"a" * 300_000 + b'"}', "application/json", 413, id="oversized body"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "application/json", 400, id="deeply nested arrays"),
    pytest.param(b'{"narrative": ' + b'{"a": ' * 20_000 + b"1" + b"}" * 20_000 + b"}", "application/json", 400,
                 id="deeply nested objects"),
    pytest.param(b'{"narrative": "\xff\xfe caf\xe9"}', "application/json", 400, id="invalid UTF-8"),
    pytest.param(b'{"narrative": "unterminated', "application/json", 400, id="broken JSON"),
    pytest.param(b'["not", "an", "object"]', "application/json", 400, id="JSON that is not an object"),
    pytest.param(b'{"deadline_hours": 1' + b"0" * 5000 + b"}", "application/json", 400, id="a 5000-digit number"),
    pytest.param(json.dumps(CASE).encode(), "text/plain", 415, id="text/plain"),
    pytest.param(json.dumps(CASE).encode(), "application/xml", 415, id="application/xml"),
    pytest.param(b"narrative=x&channel=phone", "application/x-www-form-urlencoded", 415, id="a form"),
    pytest.param(json.dumps(CASE).encode(), "", 415, id="no content type"),
])
def test_a_malformed_request_is_refused_with_a_clear_json_error_and_nothing_written(intake, db, body, content_type,
                                                                                      status):
    before = written(db)
    assert_clear_json_error(post(intake, body, content_type), status)
    assert written(db) == before


def test_a_narrative_one_character_too_long_is_refused_naming_the_narrative(intake, db):
    before = written(db)
    response = post(intake, json.dumps(with_value(("narrative",), "ب" * (MAX_NARRATIVE_CHARS + 1))))
    assert_clear_json_error(response, 422, "narrative")
    assert written(db) == before
    at_the_limit = post(intake, json.dumps(with_value(("narrative",), "ب" * MAX_NARRATIVE_CHARS)))
    assert at_the_limit.status_code == 201, at_the_limit.text[:300]


@pytest.mark.parametrize("path", TEXT_FIELDS, ids=".".join)
@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_sql_html_and_control_characters_in_a_text_field_are_kept_as_text_or_refused_naming_the_field(
        intake, db, path, text):
    before = written(db)
    response = post(intake, json.dumps(with_value(path, text)))
    if response.status_code == 201:
        after = written(db)
        assert after == {"cases": before["cases"] + 1, "events": before["events"] + 1}
        view = requests.get(intake.url("intake") + response.json()["status_url"], headers=intake.auth, timeout=10)
        assert view.status_code == 200
        shown = view.json()
        for key in path:
            shown = shown[key]
        if path[-1] != "phone":  # a phone is kept in its canonical form
            assert shown == text.strip(), "the text must be stored exactly as typed (trimmed)"
    else:
        assert_clear_json_error(response, 422, ".".join(path))
        assert written(db) == before


def test_a_hostile_idempotency_key_is_refused_naming_the_header(intake, db):
    before = written(db)
    assert_clear_json_error(post(intake, json.dumps(CASE), headers={"Idempotency-Key": "k" * 201}), 400,
                            "Idempotency-Key")
    assert written(db) == before


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
field_names = st.sampled_from(["narrative", "channel", "governorate", "needs", "consents", "victim_age",
                               "deadline_hours", "deadline_at", "demand_amount", "demands", "safe_contact",
                               "anonymous", "published_on", "material_published", "unknown_field"])


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(changes=st.dictionaries(field_names, json_values, max_size=4))
def test_no_body_hypothesis_makes_up_gets_a_500_or_a_stack_trace(intake, changes):
    response = post(intake, json.dumps({**CASE, **changes}))
    assert response.status_code in (200, 201, 400, 422), response.text[:500]
    assert "Traceback" not in response.text
    if response.status_code == 422:
        assert response.json()["error"]["fields"]


def test_no_refusal_above_was_logged_as_an_error_of_the_service(intake):
    """Every request above was the client's mistake: intake logs a refusal as a warning at most, so that
    an ERROR line, and the alert an operator may hang on it, means something went wrong inside."""
    lines = [json.loads(line) for line in (LOG_DIR / "intake.log").read_text().splitlines() if line.startswith("{")]
    assert lines, "intake wrote no log"
    errors = [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    assert not errors, errors[:3]
