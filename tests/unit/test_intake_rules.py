"""Intake's pure rules: what a new case may contain, references, case status, new staff accounts."""
import json
import math
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError

from services.intake import screen
from services.intake.accounts import check_new_account
from services.intake.cases import REFERENCE_ALPHABET, case_status, facts_of, new_reference, triage_lane
from services.intake.schemas import MAX_NARRATIVE_CHARS, MAX_OVERRIDE_REASON, Assignment, RiskOverride, load
from services.intake.schemas import load_new_case as load_at
from services.triage.assessment import default_assessor

NOW = datetime(2026, 3, 10, 21, 0, tzinfo=timezone.utc)


def load_new_case(body):
    return load_at(body, NOW)

NARRATIVE = "Someone on Instagram has my photos and wants 1000 dollars by Thursday or he sends them to my family."


def body(**fields):
    return {"narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar", **fields}


def errors_of(payload):
    with pytest.raises(ValidationError) as raised:
        load_new_case(payload)
    return raised.value.messages


# load_new_case: the shape of a new case

def test_minimal_case_loads_with_empty_needs_unknown_facts_and_the_safe_defaults():
    assert load_new_case(body()) == {
        "narrative": NARRATIVE, "channel": "phone", "governorate": "dhi_qar", "needs": [], "consents": [],
        "victim_age": None, "material_published": None, "deadline_hours": None, "suicidal_thoughts": None,
        "threat_of_violence": None, "caller_relation": None, "victim_age_band": None, "victim_gender": None,
        "district": None, "extortion_types": [], "platforms": [], "perpetrator": None, "demands": [],
        "demand_amount": None, "demand_currency": None, "deadline_at": None, "published_on": [],
        "family_contact_allowed": False, "tribe_contact_allowed": False, "anonymous": False,
        "safe_contact": {"name": None, "phone": None, "safe_times": None, "code_word": None, "no_messages": True},
    }


def test_full_case_loads_every_field_as_given():
    case = load_new_case(body(
        channel="whatsapp", governorate="nineveh", needs=["counselling", "legal_aid", "mediation"],
        consents=["legal_aid"], victim_age=16, material_published=True, deadline_hours=36.5,
        suicidal_thoughts=False, threat_of_violence=True,
    ))
    assert case["needs"] == ["counselling", "legal_aid", "mediation"]
    assert case["consents"] == ["legal_aid"]
    assert (case["victim_age"], case["material_published"], case["deadline_hours"]) == (16, True, 36.5)
    assert (case["suicidal_thoughts"], case["threat_of_violence"]) == (False, True)


@pytest.mark.parametrize("field", ["nickname", "phone", "victim_name", "risk_level"])
def test_unknown_field_is_refused_naming_it(field):
    assert errors_of(body(**{field: "x"})) == {field: ["unknown_field"]}


@pytest.mark.parametrize("field", ["narrative", "channel", "governorate"])
def test_required_field_missing_is_refused_naming_it(field):
    payload = body()
    del payload[field]
    assert set(errors_of(payload)) == {field}


def test_every_missing_required_field_is_named_at_once():
    assert set(errors_of({})) == {"narrative", "channel", "governorate"}


@pytest.mark.parametrize("field,value", [
    ("channel", "telegram"), ("channel", "PHONE"), ("governorate", "damascus"), ("governorate", "Basra"),
])
def test_value_outside_its_vocabulary_is_refused_naming_the_field(field, value):
    assert set(errors_of(body(**{field: value}))) == {field}


def test_need_outside_the_service_types_is_refused_naming_needs():
    assert set(errors_of(body(needs=["counselling", "revenge"]))) == {"needs"}


def test_consent_outside_the_service_types_is_refused_naming_consents():
    assert set(errors_of(body(needs=["counselling"], consents=["revenge"]))) == {"consents"}


def test_consent_for_a_service_not_needed_is_refused_naming_consents_and_the_service():
    messages = errors_of(body(needs=["counselling"], consents=["counselling", "mediation", "legal_aid"]))
    assert set(messages) == {"consents"}
    assert "legal_aid" in messages["consents"][0] and "mediation" in messages["consents"][0]
    assert "counselling" not in messages["consents"][0]


def test_consent_without_any_needs_is_refused():
    assert set(errors_of(body(consents=["mediation"]))) == {"consents"}


def test_duplicate_needs_and_consents_are_removed_keeping_first_order():
    case = load_new_case(body(needs=["legal_aid", "counselling", "legal_aid"],
                              consents=["counselling", "counselling", "legal_aid"]))
    assert case["needs"] == ["legal_aid", "counselling"]
    assert case["consents"] == ["counselling", "legal_aid"]


@pytest.mark.parametrize("age", [0, 1, 17, 18, 120])
def test_victim_age_within_0_to_120_is_accepted(age):
    assert load_new_case(body(victim_age=age))["victim_age"] == age


@pytest.mark.parametrize("age", [-1, 121, 999])
def test_victim_age_outside_0_to_120_is_refused(age):
    assert set(errors_of(body(victim_age=age))) == {"victim_age"}


@pytest.mark.parametrize("age", [16.0, 16.5, "16", True], ids=["float", "fraction", "string", "bool"])
def test_victim_age_must_be_a_json_integer(age):
    assert set(errors_of(body(victim_age=age))) == {"victim_age"}


def test_unknown_facts_may_be_sent_as_null():
    case = load_new_case(body(victim_age=None, material_published=None, deadline_hours=None,
                              suicidal_thoughts=None, threat_of_violence=None))
    assert all(case[name] is None for name in ("victim_age", "material_published", "deadline_hours",
                                               "suicidal_thoughts", "threat_of_violence"))


@pytest.mark.parametrize("hours", [0, 0.5, 72, 24 * 365])
def test_deadline_from_now_up_to_a_year_is_accepted(hours):
    assert load_new_case(body(deadline_hours=hours))["deadline_hours"] == hours


@pytest.mark.parametrize("hours", [-1, -0.01, 24 * 365 + 1])
def test_deadline_in_the_past_or_beyond_a_year_is_refused(hours):
    assert set(errors_of(body(deadline_hours=hours))) == {"deadline_hours"}


@pytest.mark.parametrize("hours", [math.nan, "NaN", math.inf, "Infinity", -math.inf],
                         ids=["nan", "nan-string", "inf", "inf-string", "minus-inf"])
def test_deadline_that_is_not_a_finite_number_is_refused(hours):
    assert set(errors_of(body(deadline_hours=hours))) == {"deadline_hours"}


@pytest.mark.parametrize("value", ["perhaps", "true", "yes", 1, 0, 0.0, "on"])
@pytest.mark.parametrize("flag", ["material_published", "suicidal_thoughts", "threat_of_violence", "anonymous"])
def test_flag_that_is_not_a_json_boolean_is_refused_even_if_it_reads_like_one(flag, value):
    assert set(errors_of(body(**{flag: value}))) == {flag}


@pytest.mark.parametrize("hours", ["5", True, "5.0"])
def test_deadline_hours_must_be_a_json_number(hours):
    assert set(errors_of(body(deadline_hours=hours))) == {"deadline_hours"}


@pytest.mark.parametrize("amount, expected", [(300, "300.00"), ("300", "300.00"), ("12.5", "12.50"), (12.5, "12.50")])
def test_an_amount_is_a_number_or_digits_with_at_most_two_decimals(amount, expected):
    case = load_new_case(body(demands=["money"], demand_amount=amount, demand_currency="USD"))
    assert str(case["demand_amount"]) == expected


@pytest.mark.parametrize("amount", ["1e3", " 12", "12.345", "-5", "300 USD", True])
def test_an_amount_written_otherwise_is_refused_naming_it(amount):
    assert set(errors_of(body(demands=["money"], demand_amount=amount, demand_currency="USD"))) == {
        "demand_amount"}


API_DOCUMENT = json.loads((Path(__file__).resolve().parents[2] / "services" / "intake" / "openapi.json").read_text())
AMOUNT_IN_THE_DOCUMENT = re.compile(
    API_DOCUMENT["components"]["schemas"]["NewCase"]["properties"]["demand_amount"]["oneOf"][1]["pattern"])


@settings(max_examples=400)
@given(st.one_of(st.from_regex(r"\A[0-9]{1,14}(\.[0-9]{1,3})?\Z"), st.sampled_from(
    ["0", "00.00", "0.01", "0.1", "999999999999.99", "1000000000000", "1000000000000.0", "1000000000000.01"])))
def test_the_api_document_admits_exactly_the_amounts_written_as_text_that_intake_takes(amount):
    try:
        load_new_case(body(demands=["money"], demand_amount=amount, demand_currency="USD"))
        taken = True
    except ValidationError:
        taken = False
    assert bool(AMOUNT_IN_THE_DOCUMENT.search(amount)) == taken


@pytest.mark.parametrize("field, value", [("demand_currency", ""), ("channel", " "), ("victim_gender", "  "),
                                          ("governorate", " dhi_qar ")])
def test_a_choice_is_taken_as_sent_so_a_blank_or_padded_one_is_refused_naming_it(field, value):
    assert set(errors_of(body(**{field: value}))) == {field}


def test_free_text_is_trimmed_and_blank_free_text_is_not_given():
    case = load_new_case(body(narrative="  " + NARRATIVE + "\n",
                              safe_contact={"name": "   ", "safe_times": " evenings "}))
    assert case["narrative"] == NARRATIVE
    assert case["safe_contact"]["name"] is None and case["safe_contact"]["safe_times"] == "evenings"
    assert errors_of(body(narrative="   ")) == {"narrative": ["required"]}


def test_free_text_is_measured_as_sent_so_spaces_around_it_cannot_stretch_it_past_its_limit():
    within = " " + "x" * (MAX_OVERRIDE_REASON - 1)
    assert load(RiskOverride, {"level": "high", "reason": within})["reason"] == within.strip()
    with pytest.raises(ValidationError) as raised:
        load(RiskOverride, {"level": "high", "reason": "\r" + "x" * MAX_OVERRIDE_REASON})
    assert set(raised.value.messages) == {"reason"}


def test_an_assignee_is_an_id_or_null_never_a_blank_string():
    assert load(Assignment, {"assignee": None}) == {"assignee": None}
    with pytest.raises(ValidationError) as raised:
        load(Assignment, {"assignee": ""})
    assert set(raised.value.messages) == {"assignee"}


def test_narrative_of_exactly_the_maximum_length_is_accepted_in_arabic():
    narrative = "ك" * MAX_NARRATIVE_CHARS
    assert MAX_NARRATIVE_CHARS == 20_000
    assert load_new_case(body(narrative=narrative))["narrative"] == narrative


@pytest.mark.parametrize("narrative", ["", "x" * (MAX_NARRATIVE_CHARS + 1)], ids=["empty", "one-too-long"])
def test_narrative_empty_or_too_long_is_refused(narrative):
    assert set(errors_of(body(narrative=narrative))) == {"narrative"}


def test_narrative_must_be_text():
    assert set(errors_of(body(narrative=["a", "list"]))) == {"narrative"}


def test_errors_in_several_fields_are_reported_together():
    assert set(errors_of(body(channel="fax", victim_age=200, deadline_hours=-3, extra=1))) == {
        "channel", "victim_age", "deadline_hours", "extra"}


# References

def sequence(*values):
    """A randbelow that returns these values in turn and records each bound it was asked for."""
    remaining = list(values)
    bounds = []

    def randbelow(bound):
        bounds.append(bound)
        return remaining.pop(0)

    randbelow.bounds = bounds
    return randbelow


def test_reference_is_snd_then_two_groups_of_four_chosen_by_the_injected_random():
    randbelow = sequence(0, 1, 2, 3, 28, 29, 30, 31)
    assert new_reference(randbelow) == "SND-0123-WXYZ"
    assert randbelow.bounds == [32] * 8


def test_reference_alphabet_is_crockford_base32_without_i_l_o_u():
    assert REFERENCE_ALPHABET == "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    assert len(set(REFERENCE_ALPHABET)) == 32
    assert not set("ILOU") & set(REFERENCE_ALPHABET)


def test_every_alphabet_position_appears_in_references():
    seen = set()
    for start in range(0, 32, 8):
        reference = new_reference(sequence(*range(start, start + 8)))
        seen.update(reference[4:8] + reference[9:13])
    assert seen == set(REFERENCE_ALPHABET)


def test_real_references_match_the_format_and_differ():
    import re

    pattern = re.compile(r"^SND-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$")
    references = [new_reference() for _ in range(200)]
    assert all(pattern.match(reference) for reference in references)
    assert len(set(references)) == 200


# Facts and status

def test_facts_of_picks_the_checklist_and_fills_what_is_missing_with_none():
    assert facts_of({"victim_age": 15, "threat_of_violence": True, "narrative": NARRATIVE, "phone": "0770"}) == {
        "victim_age": 15, "material_published": None, "deadline_hours": None, "suicidal_thoughts": None,
        "threat_of_violence": True,
    }


TRIAGED = {"risk_level": "high", "consents": ["counselling"], "unmatched_services": []}


def test_case_not_yet_triaged_is_awaiting_triage_whatever_else_is_known():
    assert case_status({"consents": ["counselling"]}, [], []) == "awaiting_triage"
    assert case_status({"risk_level": None}, [{"id": 1}], [{"outcome": "delivered"}]) == "awaiting_triage"


def test_triaged_case_with_consent_and_no_referral_yet_is_referring():
    assert case_status(TRIAGED, [], []) == "referring"


def test_case_with_a_referral_but_no_delivery_yet_is_referring():
    assert case_status(TRIAGED, [{"service": "counselling"}], []) == "referring"


def test_case_whose_deliveries_are_still_retrying_or_failed_is_referring():
    deliveries = [{"outcome": "retrying"}, {"outcome": "failed"}]
    assert case_status(TRIAGED, [{"service": "counselling"}], deliveries) == "referring"


def test_case_with_any_delivered_referral_is_referred():
    deliveries = [{"outcome": "failed"}, {"outcome": "delivered"}]
    assert case_status(TRIAGED, [{"service": "counselling"}], deliveries) == "referred"


def test_case_nobody_could_take_needs_a_supervisor():
    case = {**TRIAGED, "unmatched_services": ["shelter"]}
    assert case_status(case, [], []) == "needs_supervisor"


def test_a_referral_made_for_one_need_outranks_another_need_left_unmatched():
    case = {**TRIAGED, "unmatched_services": ["shelter"]}
    assert case_status(case, [{"service": "counselling"}], []) == "referring"
    assert case_status(case, [{"service": "counselling"}], [{"outcome": "delivered"}]) == "referred"


@pytest.mark.parametrize("consents", [[], None])
def test_triaged_case_without_consent_to_any_referral_says_so(consents):
    assert case_status({"risk_level": "low", "consents": consents}, [], []) == "triaged_no_referral_consent"


def test_case_status_walks_forward_as_intake_hears_more():
    case = {"consents": ["counselling"]}
    referrals, deliveries = [], []
    seen = [case_status(case, referrals, deliveries)]
    case["risk_level"] = "critical"
    seen.append(case_status(case, referrals, deliveries))
    referrals.append({"service": "counselling"})
    deliveries.append({"outcome": "retrying"})
    seen.append(case_status(case, referrals, deliveries))
    deliveries.append({"outcome": "delivered"})
    seen.append(case_status(case, referrals, deliveries))
    assert seen == ["awaiting_triage", "referring", "referring", "referred"]


# New staff accounts

def test_acceptable_account_has_no_errors():
    assert check_new_account("amira.k", "counsellor", "correct horse battery", uuid.uuid4()) == {}


@pytest.mark.parametrize("role", ["operator", "supervisor", "admin"])
def test_each_role_without_a_partner_is_accepted(role):
    assert check_new_account("staff_01", role, "x" * 12) == {}


def test_a_counsellor_is_accepted_with_their_partner_and_refused_without_one():
    assert check_new_account("staff_01", "counsellor", "x" * 12, uuid.uuid4()) == {}
    assert set(check_new_account("staff_01", "counsellor", "x" * 12)) == {"partner_id"}
    assert set(check_new_account("staff_01", "operator", "x" * 12, uuid.uuid4())) == {"partner_id"}


@pytest.mark.parametrize("username", ["a", "Amira", "amira k", ".amira", "-amira", "أميرة", "a" * 51, "", None],
                         ids=["one-char", "upper-case", "space", "leading-dot", "leading-dash", "arabic",
                              "51-chars", "empty", "none"])
def test_bad_username_is_refused_naming_username(username):
    assert set(check_new_account(username, "operator", "x" * 12)) == {"username"}


@pytest.mark.parametrize("username", ["ab", "a" * 50, "amira.k-2_b", "0perator"])
def test_username_at_the_edges_of_the_rule_is_accepted(username):
    assert check_new_account(username, "operator", "x" * 12) == {}


def test_username_with_a_trailing_newline_is_refused():
    assert set(check_new_account("amira\n", "operator", "x" * 12)) == {"username"}


@pytest.mark.parametrize("role", ["root", "Admin", "", None])
def test_unknown_role_is_refused_naming_the_roles(role):
    errors = check_new_account("amira", role, "x" * 12)
    assert set(errors) == {"role"}
    assert "operator, counsellor, supervisor, admin" in errors["role"][0]


@pytest.mark.parametrize("password", ["", None, "x" * 11, "short"])
def test_password_shorter_than_twelve_characters_is_refused(password):
    assert set(check_new_account("amira", "operator", password)) == {"password"}


def test_password_of_exactly_twelve_characters_is_accepted():
    assert check_new_account("amira", "operator", "x" * 12) == {}


def test_every_problem_with_an_account_is_reported_at_once():
    assert set(check_new_account("A", "root", "short")) == {"username", "role", "password"}


@pytest.mark.parametrize("facts, lane", [
    ({"suicidal_thoughts": True}, "critical"),
    ({"threat_of_violence": True}, "critical"),
    ({"suicidal_thoughts": True, "threat_of_violence": False, "deadline_hours": 2}, "critical"),
    ({"suicidal_thoughts": False, "threat_of_violence": False, "material_published": True}, "normal"),
    ({"suicidal_thoughts": None, "threat_of_violence": None, "deadline_hours": 1, "victim_age": 15}, "normal"),
    ({}, "normal"),
])
def test_by_its_checklist_a_case_goes_to_triage_s_critical_lane_only_when_a_life_is_in_danger(facts, lane):
    assert triage_lane(facts) == lane


@pytest.mark.parametrize("level, reasons, lane", [
    ("critical", {"suicide_plan"}, "critical"),
    ("high", {"suicidal_thoughts"}, "critical"),
    ("high", {"violence_threat"}, "critical"),
    ("high", {"prior_attempt"}, "critical"),
    ("high", {"past_suicidality"}, "critical"),
    ("medium", {"extortion"}, "normal"),
    ("low", set(), "normal"),
])
def test_a_first_reading_of_the_note_sends_a_danger_to_life_to_the_critical_lane(level, reasons, lane):
    assert triage_lane({}, level, reasons) == lane


NO_FACTS = {name: None for name in ("victim_age", "material_published", "deadline_hours", "suicidal_thoughts",
                                    "threat_of_violence")}


@pytest.mark.parametrize("narrative, lane", [
    ("قالت راح انتحر اذا نشر الصور", "critical"),
    ("Caller says she will take all her pills tonight if the pictures are sent to her family.", "critical"),
    ("He said he will kill her if she tells anyone. يهدد يقتلها", "critical"),
    ("ma afakker antehar bs ta3bana", "critical"),
    ("يهددني ينشر صوري اذا ما ادفع له فلوس. He wants 500 dollars by Friday.", "normal"),
])
def test_intake_reads_the_note_with_triage_s_own_model_to_pick_the_lane(narrative, lane):
    assert screen.triage_lane(default_assessor(), narrative, NO_FACTS) == lane


def test_without_triage_s_model_intake_routes_by_the_checklist_and_a_note_the_model_fails_on_goes_critical():
    class Broken:
        def assess(self, facts):
            raise ValueError("broken lexicon")

    assert screen.triage_lane(None, "قالت راح انتحر", NO_FACTS) == "normal"
    assert screen.triage_lane(None, "", {**NO_FACTS, "suicidal_thoughts": True}) == "critical"
    assert screen.triage_lane(Broken(), "anything", NO_FACTS) == "critical"


def test_a_case_the_checklist_puts_on_the_critical_lane_goes_there_without_waiting_for_the_note_to_be_read():
    class Counting:
        read = 0

        def assess(self, facts):
            self.read += 1
            return default_assessor().assess(facts)

    model = Counting()
    assert screen.triage_lane(model, "قالت راح انتحر", {**NO_FACTS, "threat_of_violence": True}) == "critical"
    assert model.read == 0
    assert screen.triage_lane(model, "قالت راح انتحر", NO_FACTS) == "critical"
    assert model.read == 1
