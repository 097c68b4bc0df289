"""Schemathesis against the real running services: requests generated from intake's /api/openapi.json and
referral's /partner/openapi.json, valid ones and deliberately invalid ones, sent over HTTP to the real
processes, with credentials and without.

Every answer must be one the document promises: never a 5xx, a status code the operation lists, JSON with
the documented content type and shape, no stack trace, and a 422 naming the field at fault (a field of the
request that is wrong, when schemathesis broke one on purpose). Runs are reproducible: the generation is
derandomized and Hypothesis keeps no example database between runs.
"""
import json
import os
import uuid

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                               positive_data_acceptance, response_headers_conformance,
                                               response_schema_conformance, status_code_conformance)

from services.intake.service import OPENAPI_FILE
from services.referral.service import PARTNER_OPENAPI
from tests.support.people import partner, referred_case, staff_member

pytestmark = pytest.mark.integration

# Per operation and run: enough to find what was found, within a minute or so here. A longer hunt:
# SANAD_FUZZ_EXAMPLES=500 (the generation stays derandomized, so a failure found is found again).
EXAMPLES = int(os.environ.get("SANAD_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, positive_data_acceptance]
# What the documents cannot say in OpenAPI 3.0 (consents among needs, a district only in Dhi Qar, a
# lowering only by a supervisor, ...) refuses a body that fits the schema: 422 naming the field, and 409 for
# a referral status that no longer allows the change.
BUSINESS_RULE_STATUSES = ["2xx", "401", "403", "404", "409", "422", "429"]


def _config():
    return schemathesis.Config.from_dict({
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        "phases": {"stateful": {"enabled": False}},
        "checks": {"positive_data_acceptance": {"expected-statuses": BUSINESS_RULE_STATUSES}},
        "suppress-health-check": ["all"],
    })


INTAKE = schemathesis.openapi.from_path(OPENAPI_FILE, config=_config())
PARTNER_API = schemathesis.openapi.from_path(PARTNER_OPENAPI, config=_config())

CASE = {"narrative": "He says he will send the photos to my brother tonight.", "channel": "phone",
        "governorate": "dhi_qar", "needs": ["counselling"], "consents": ["counselling"]}


class World:
    """What the generated requests are sent to and as: the stack, staff of each role, a partner with a
    referral of its own, and real ids for the path parameters."""


@pytest.fixture(scope="module")
def world(stack, stack_env):
    made = World()
    made.stack = stack
    made.staff = {role: staff_member(stack_env, role) for role in ("operator", "supervisor", "admin")}
    # The account the generated PATCH /api/users/{id} may switch off: not one the runs act as.
    made.bystander = staff_member(stack_env, "operator", prefix="bystander")
    made.partner = partner(stack_env, "Fuzzed Counselling Centre (fictional)", "counselling")
    shown, referrals = referred_case(stack, CASE, ["counselling"], headers=made.staff["operator"].headers)
    made.case_id, made.referral_id = shown["id"], referrals["counselling"]
    yield made
    made.partner.receiver.__exit__(None, None, None)


def test_the_documents_fuzzed_are_the_ones_the_services_serve(world):
    for url, path in ((world.stack.url("intake") + "/api/openapi.json", OPENAPI_FILE),
                      (world.stack.url("referral") + "/partner/openapi.json", PARTNER_OPENAPI)):
        served = requests.get(url, timeout=30)
        assert served.status_code == 200 and served.headers["Content-Type"].startswith("application/json")
        assert served.json() == json.loads(path.read_text())


# Which staff role each intake operation is fuzzed as, so that each reaches past its permission check:
# accounts are an admin's business, a case's audit trail and reassignment a supervisor's.
INTAKE_ROLE = {"/api/users": "admin", "/api/users/{user_id}": "admin", "/api/cases/{case_id}/audit": "supervisor",
               "/api/cases/{case_id}/assignment": "supervisor"}


def _known_ids(case, world, use_known):
    """Half the time (as Hypothesis chooses) a well-formed id in the path is swapped for a real one, so
    the request reaches the code behind the 404."""
    real = {"case_id": world.case_id, "referral_id": world.referral_id, "user_id": world.bystander.id}
    for name, value in list((case.path_parameters or {}).items()):
        if use_known and name in real and _is_uuid(value):
            case.path_parameters[name] = real[name]


def _is_uuid(value):
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False


@INTAKE.given(use_known=st.booleans())
@INTAKE.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_intake_answers_every_generated_request_with_credentials_as_documented(case, use_known, world):
    _known_ids(case, world, use_known)
    member = world.staff[INTAKE_ROLE.get(case.path, "operator")]
    response = case.call_and_validate(base_url=world.stack.url("intake"), headers=_credentials(case, member.headers),
                                      checks=CHECKS, timeout=30)
    assert_clear_answer(case, response)


@INTAKE.parametrize()
@settings(deadline=None, max_examples=8, suppress_health_check=list(HealthCheck))
def test_intake_answers_every_generated_request_without_credentials_as_documented(case, world):
    response = case.call_and_validate(base_url=world.stack.url("intake"), checks=CHECKS, timeout=30)
    assert_clear_answer(case, response)
    if case.path != "/api/session":
        assert_refused_without_credentials(case, response)


def _well_formed_ids(case):
    return all(_is_uuid(value) for value in (case.path_parameters or {}).values())


@PARTNER_API.given(use_known=st.booleans())
@PARTNER_API.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_the_partner_api_answers_every_generated_request_with_the_partner_s_key_as_documented(case, use_known,
                                                                                              world):
    _known_ids(case, world, use_known)
    response = case.call_and_validate(base_url=world.stack.url("referral"),
                                      headers=_credentials(case, world.partner.headers), checks=CHECKS, timeout=30)
    assert_clear_answer(case, response)


@PARTNER_API.parametrize()
@settings(deadline=None, max_examples=8, suppress_health_check=list(HealthCheck))
def test_the_partner_api_answers_every_generated_request_without_a_key_as_documented(case, world):
    response = case.call_and_validate(base_url=world.stack.url("referral"), checks=CHECKS, timeout=30)
    assert_clear_answer(case, response)
    assert_refused_without_credentials(case, response)


def assert_refused_without_credentials(case, response):
    """401, unless no route takes the request at all: a malformed id (404), or a method the path does not
    serve (405; 404 when the id in the path is malformed too)."""
    if case.method.upper() != case.operation.method.upper():
        expected = 405 if _well_formed_ids(case) else 404
        assert response.status_code == expected, response.text[:300]
        if expected == 405:  # schemathesis keeps headers by lower-case name, each a list of values
            allowed = {method for value in response.headers["allow"] for method in value.split(", ")}
            assert case.operation.method.upper() in allowed, allowed
    elif response.status_code == 404:
        assert not _well_formed_ids(case), response.text[:300]
    else:
        assert response.status_code == 401, response.text[:300]


def assert_clear_answer(case, response):
    """No stack trace in any answer; an error is JSON with a code and a message; a 422 names fields, and
    when the body broke its schema, one of the fields it names is one that broke it."""
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, text[:500]
    if response.status_code < 400:
        return
    error = response.json()["error"]
    assert error["code"] and error["message"], error
    if response.status_code == 422:
        assert error.get("fields"), f"a 422 must name the field at fault: {error}"
        broken = _broken_body_fields(case)
        if broken:
            named = {name.split(".")[0] for name in error["fields"]}
            assert named & broken or named & {"body", "_body"}, \
                f"the body broke its schema at {sorted(broken)}; the answer names {sorted(named)}"


def _credentials(case, headers):
    """The caller's credentials, unless schemathesis broke the Authorization header on purpose (left it
    out, or sent a malformed one): ours in its place would make the request valid again, and the service
    accepting it would read as a fault."""
    broken = any(m.parameter_location == ParameterLocation.HEADER and m.parameter == "Authorization"
                 for m in _mutations(case))
    return {} if broken else headers


def _broken_body_fields(case):
    """The top-level body fields schemathesis made invalid on purpose in a negative case."""
    return {str(m.path[0]) for m in _mutations(case) if m.parameter_location == ParameterLocation.BODY and m.path}


def _mutations(case):
    """What schemathesis broke on purpose in a negative case; nothing in a positive one."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_negative:
        return ()
    return meta.phase.data.mutations
