"""Who may move a referral from which status to which, and with what code."""
import json
from pathlib import Path

import pytest

from services.referral.lifecycle import MAY_SET, NOTE_CODES, Change, TransitionRefused, acknowledges, change

PARTNER_DOCUMENT = json.loads(
    (Path(__file__).resolve().parents[2] / "services" / "referral" / "partner_openapi.json").read_text())


def refused(*args):
    with pytest.raises(TransitionRefused) as caught:
        change(*args)
    return caught.value


def test_a_partner_walks_a_referral_through_its_whole_life():
    assert change("offered", "accepted", "partner") == Change("offered", "accepted", None)
    assert change("accepted", "in_progress", "partner") == Change("accepted", "in_progress", None)
    assert change("in_progress", "completed", "partner", "support_given") == Change(
        "in_progress", "completed", "support_given")


def test_declining_needs_a_reason_code_from_the_list_and_names_the_field():
    problem = refused("offered", "declined", "partner", None)
    assert (problem.code, problem.field) == ("note_code_required", "note_code")
    assert refused("offered", "declined", "partner", "she is my cousin").field == "note_code"
    assert change("offered", "declined", "partner", "no_capacity").note_code == "no_capacity"


def test_closing_needs_an_outcome_code():
    assert refused("accepted", "closed", "partner").field == "note_code"
    assert change("accepted", "closed", "partner", "victim_unreachable").status == "closed"


def test_a_note_code_on_a_status_that_takes_none_is_refused():
    assert refused("offered", "accepted", "partner", "no_capacity").code == "note_not_allowed"


def test_a_partner_cannot_withdraw_only_sanad_can():
    assert refused("offered", "withdrawn", "partner", "ack_timeout").code == "status_not_allowed"
    assert change("offered", "withdrawn", "system", "ack_timeout").status == "withdrawn"
    assert change("accepted", "withdrawn", "staff", "reassigned").status == "withdrawn"


def test_staff_withdrawing_an_offer_cannot_give_the_system_s_reasons():
    for reason in ("ack_timeout", "delivery_exhausted"):
        refusal = refused("offered", "withdrawn", "staff", reason)
        assert (refusal.code, refusal.field) == ("note_code_required", "note_code")
        assert refusal.message == "Must be one of: reassigned."


def test_final_statuses_do_not_move_and_steps_are_not_skipped():
    assert refused("withdrawn", "accepted", "partner").code == "invalid_transition"
    assert refused("declined", "accepted", "partner").code == "invalid_transition"
    assert refused("offered", "in_progress", "partner").code == "invalid_transition"
    assert refused("offered", "completed", "partner", "support_given").code == "invalid_transition"


def test_repeating_the_current_status_is_no_change_so_a_retried_call_is_harmless():
    assert change("accepted", "accepted", "partner") is None


def test_only_an_answer_to_the_offer_stops_its_deadline():
    assert acknowledges("accepted") and acknowledges("declined")
    assert not any(acknowledges(s) for s in ("offered", "withdrawn", "in_progress"))


def test_the_partner_api_document_gives_each_status_exactly_the_codes_the_lifecycle_takes():
    documented = {}
    for variant in PARTNER_DOCUMENT["components"]["schemas"]["StatusChange"]["oneOf"]:
        codes = [code for code in variant["properties"]["note_code"]["enum"] if code is not None]
        for status in variant["properties"]["status"]["enum"]:
            documented[status] = (codes, "note_code" in variant["required"])
    assert set(documented) == set(MAY_SET["partner"])
    for status, (codes, required) in documented.items():
        assert codes == list(NOTE_CODES.get(status, ())) and required == bool(codes), status
