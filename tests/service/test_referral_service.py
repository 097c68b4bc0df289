"""Referral offers consented needs to matching partners, chases every offer until someone acknowledges it,
and lets each partner see and change only its own referrals, audited. Deadlines are fired by calling the
timer's use case with a moved clock: nothing here sleeps."""
import dataclasses
import json
import re
import uuid
from datetime import datetime, timedelta, timezone

import eventlet
import psycopg2.errors
import pytest
from nameko.testing.services import worker_factory
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from sanad.contracts.events import new_event, parse
from sanad.contracts.sealing import preferences_context
from sanad.contracts.vocabulary import lane_for
from sanad.platform import inbox
from sanad.platform.http import ApiError, JsonHttpHandler
from services.referral import access, handlers, sql
from services.referral.directory import PartnerEntry, ServiceTerms, parse_hours
from services.referral.handlers import add_partner
from services.referral.service import CriticalReferralService, ReferralService
from tests.service.conftest import outbox_events, rows
from tests.service.events import case_triaged
from tests.support.wire import counting_pool

PARTNER_ADDRESS = "10.20.30.40"


def add_partners(pools):
    with pools["referral"].transaction() as cur:
        local = add_partner(cur, "Nasiriyah Women's Centre", ["counselling", "shelter"], ["dhi_qar"])
        national = add_partner(cur, "National Legal Aid", ["legal_aid", "counselling"], ["nationwide"])
    return local, national


def key_for(pools, keys, partner_id=None, role="partner", staff_name=None):
    with pools["referral"].transaction() as cur:
        _, key = access.issue_key(cur, keys.lookup, datetime.now(timezone.utc), role, partner_id=partner_id,
                                  staff_name=staff_name)
    return key


def referral_service(pools, outbox, keys, cls=ReferralService):
    return worker_factory(cls, db=pools["referral"], outbox=outbox, keys=keys)


def call(service, entrypoint, method, path, *args, body=None, key=None, raw=None, query=None):
    """Run an HTTP entrypoint as its handler would: (status, JSON body, response)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    request = Request(EnvironBuilder(method=method, path=path, data=data, headers=headers, query_string=query,
                                     content_type="application/json",
                                     environ_base={"REMOTE_ADDR": PARTNER_ADDRESS}).get_environ())
    try:
        response = getattr(service, entrypoint)(request, *args)
    except ApiError as exc:
        response = JsonHttpHandler("GET", "/").response_from_exception(exc)
    text = response.get_data()
    return response.status_code, (json.loads(text) if text else None), response


def events(pools, event_type=None):
    found = [(key, parse(body)) for key, body in outbox_events(pools["referral"])]
    return [(key, e) for key, e in found if event_type is None or e.type == event_type]


def referrals(pools):
    return rows(pools["referral"], "SELECT * FROM referrals ORDER BY attempt, created_at")


def deadlines(pools):
    return rows(pools["referral"], "SELECT * FROM ack_deadlines ORDER BY created_at, steps_taken")


def audit(pools):
    return rows(pools["referral"], "SELECT * FROM audit_log ORDER BY id")


def escalate(pools, outbox, keys, at, lanes=("critical", "normal")):
    effects, _ = handlers.escalate_due(pools["referral"], outbox, keys, lanes, now=at, fired_by="test")
    return effects


def two_counsellors(pools, keys):
    """Two partners who can both take a counselling need in Dhi Qar: a local one (chosen first) and a
    nationwide one (next)."""
    with pools["referral"].transaction() as cur:
        first = add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
        second = add_partner(cur, "National Counselling Line", ["counselling"], ["nationwide"])
    return (first, key_for(pools, keys, first)), (second, key_for(pools, keys, second))


def offer_critical_case(pools, outbox, keys, **kwargs):
    event = case_triaged(keys, level="critical", **kwargs)
    referral_service(pools, outbox, keys, CriticalReferralService).on_case_triaged(event.to_message())
    return event


# Offering -------------------------------------------------------------------------------------------------

def test_each_consented_need_goes_to_the_best_partner(pools, outbox, keys):
    local, national = add_partners(pools)
    event = case_triaged(keys, needs=["counselling", "legal_aid", "shelter"], consents=["counselling", "legal_aid"])
    referral_service(pools, outbox, keys).on_case_triaged([event.to_message()])

    chosen = {r["service"]: r["partner_id"] for r in referrals(pools)}
    assert chosen == {"counselling": local, "legal_aid": national}, "no referral without consent"
    assert [e.type for _, e in events(pools)] == ["referral.created", "referral.created"]


def test_cases_triaged_in_one_batch_are_offered_in_one_transaction_taking_turns_as_if_one_by_one(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        amara = add_partner(cur, "Amara Counselling Centre", ["counselling"], ["dhi_qar"])
        basra_road = add_partner(cur, "Basra Road Counselling Centre", ["counselling"], ["dhi_qar"])
    cases = [case_triaged(keys) for _ in range(4)]
    repeated = cases[0].to_message()

    referral_service(pools, outbox, keys).on_case_triaged([case.to_message() for case in cases] + [repeated])

    offers = rows(pools["referral"], "SELECT partner_id, xmin::text AS tx FROM referrals")
    assert sorted(o["partner_id"] for o in offers) == sorted([amara, amara, basra_road, basra_road]), \
        "each offer counts towards the next one's choice, within the batch too; the repeat offered nothing"
    assert len({o["tx"] for o in offers}) == 1, "one transaction, one commit"
    assert len(outbox_events(pools["referral"])) == 4


def test_a_batch_reads_its_cases_levels_the_policies_and_the_partners_once_and_offers_with_its_commit(
        pools, outbox, keys, database_url):
    """BEGIN with the inbox rows, the cases' levels, the policies, the partners offering the batch's
    services; then COMMIT with every case's referral and what else was left for later."""
    add_partners(pools)
    cases = [case_triaged(keys) for _ in range(4)]
    with counting_pool(database_url, schema="referral") as (pool, sent):
        service = worker_factory(ReferralService, db=pool, outbox=outbox, keys=keys)
        service.on_case_triaged([case.to_message() for case in cases])

    assert len(sent) == 5, sent
    assert sent[-1].count(f"EXECUTE {sql.INSERT_NEW_REFERRAL.name}") == len(cases) and sent[-1].endswith("COMMIT")
    assert len(referrals(pools)) == len(cases)


def test_a_case_triaged_again_under_a_new_event_id_in_a_later_batch_is_offered_once(pools, outbox, keys):
    add_partners(pools)
    first = case_triaged(keys)
    again = new_event("case.triaged", first.data, producer="triage", correlation_id=first.correlation_id)
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([first.to_message(), case_triaged(keys).to_message()])

    service.on_case_triaged([again.to_message(), case_triaged(keys).to_message()])

    assert len(rows(pools["referral"], "SELECT id FROM referrals WHERE case_id = %(id)s",
                    {"id": first.data["case_id"]})) == 1
    assert len(referrals(pools)) == 3
    assert len(events(pools, "referral.created")) == 3


def test_a_case_offered_elsewhere_after_its_batch_read_fails_the_batch_on_the_key(pools, outbox, keys):
    add_partners(pools)
    first, other = (parse(case_triaged(keys).to_message()) for _ in range(2))
    at_hand = handlers.CasesAtHand()

    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pools["referral"].transaction() as cur:
            at_hand.read(cur, [first, other])
            with pools["referral"].transaction() as elsewhere:  # referral-critical, say, got there first
                handlers.refer_case(elsewhere, first, outbox, keys)
            for event in (first, other):
                handlers.refer_case(cur, event, outbox, keys, at_hand=at_hand)

    assert [r["case_id"] for r in referrals(pools)] == [first.data["case_id"]], "nothing of the batch was kept"


def test_a_case_triaged_then_raised_in_one_batch_ends_as_if_its_events_came_one_by_one(pools, outbox, keys):
    two_counsellors(pools, keys)
    medium = case_triaged(keys, level="medium")
    raised = new_event("case.triaged", {**medium.data, "level": "high"}, producer="triage",
                       correlation_id=medium.correlation_id)

    referral_service(pools, outbox, keys).on_case_triaged([medium.to_message(), raised.to_message()])

    [offer] = referrals(pools)
    [deadline] = deadlines(pools)
    assert offer["level"] == "high", "the second event found the level the first had recorded, and raised it"
    assert (deadline["policy_level"], deadline["lane"]) == ("high", "normal")


def test_partners_equally_placed_take_turns_by_open_referrals_counted_as_offers_open_and_close(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        amara = add_partner(cur, "Amara Counselling Centre", ["counselling"], ["dhi_qar"])
        basra_road = add_partner(cur, "Basra Road Counselling Centre", ["counselling"], ["dhi_qar"])
    service = referral_service(pools, outbox, keys)

    def open_referrals():
        """What matching ranks by, checked against a count of the referrals themselves."""
        with pools["referral"].transaction() as cur:
            ranked_by = {e["id"]: e["open_referrals"] for e in handlers.directory(cur)}
        counted = {row["partner_id"]: row["open"] for row in rows(pools["referral"], """
            SELECT partner_id, count(*) AS open FROM referrals
            WHERE status IN ('offered', 'accepted', 'in_progress') GROUP BY partner_id""")}
        assert ranked_by == {amara: counted.get(amara, 0), basra_road: counted.get(basra_road, 0)}
        return ranked_by

    service.on_case_triaged([case_triaged(keys).to_message()])
    assert handlers.fold_partner_load(pools["referral"])
    service.on_case_triaged([case_triaged(keys).to_message()])
    service.on_case_triaged([case_triaged(keys).to_message()])
    assert [r["partner_id"] for r in referrals(pools)] == [amara, basra_road, amara]
    assert open_referrals() == {amara: 2, basra_road: 1}

    first = referrals(pools)[0]
    with pools["referral"].transaction() as cur:  # declined: offered to the next partner at once
        handlers.change_status(cur, outbox, keys, first["id"], "declined", "no_capacity", "partner", partner_id=amara)
    assert open_referrals() == {amara: 1, basra_road: 2}
    assert handlers.fold_partner_load(pools["referral"])
    assert open_referrals() == {amara: 1, basra_road: 2}
    assert rows(pools["referral"], "SELECT * FROM partner_load_changes") == []


def test_one_process_folds_partners_load_at_a_time(pools):
    with pools["referral"].transaction() as cur:
        cur.execute(sql.FOLD_LOCK)
        assert cur.fetchone()["mine"]
        assert not handlers.fold_partner_load(pools["referral"]), "another process is folding"
    assert handlers.fold_partner_load(pools["referral"])


def test_the_victims_age_from_intake_keeps_an_adults_only_partner_from_a_minor(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        adults_only = handlers.create_partner(cur, PartnerEntry(name="Adult Counselling", services=(
            ServiceTerms(service="counselling", governorates=("dhi_qar",), min_age=18),)))
        for_all = handlers.create_partner(cur, PartnerEntry(name="Youth Counselling", services=(
            ServiceTerms(service="counselling", governorates=("nationwide",)),)))
    minor = case_triaged(keys, preferences={"family_contact": False, "staff_gender": None, "victim_age": 15})
    adult = case_triaged(keys, preferences={"family_contact": False, "staff_gender": None, "victim_age": 30})
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([minor.to_message()])
    service.on_case_triaged([adult.to_message()])

    chosen = {r["case_id"]: r["partner_id"] for r in referrals(pools)}
    assert chosen[minor.data["case_id"]] == for_all
    assert chosen[adult.data["case_id"]] == adults_only, "a partner in her governorate comes first"


def test_a_case_triaged_under_version_1_still_queued_is_matched_by_its_plain_preferences(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        handlers.create_partner(cur, PartnerEntry(name="Adult Counselling", services=(
            ServiceTerms(service="counselling", governorates=("dhi_qar",), min_age=18),)))
        for_all = handlers.create_partner(cur, PartnerEntry(name="Youth Counselling", services=(
            ServiceTerms(service="counselling", governorates=("nationwide",)),)))
    message = case_triaged(keys).to_message()
    message["version"] = 1
    del message["data"]["sealed_particulars"]
    message["data"]["reasons"] = [{"code": "minor", "source": "checklist"}]
    message["data"]["preferences"] = {"family_contact": False, "staff_gender": None, "victim_age": 15}
    referral_service(pools, outbox, keys).on_case_triaged([message])

    [referral] = referrals(pools)
    assert referral["partner_id"] == for_all


def test_a_need_re_offered_after_a_decline_still_fits_the_victim_s_age(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        youth = handlers.create_partner(cur, PartnerEntry(name="Youth Shelter", services=(
            ServiceTerms(service="shelter", governorates=("dhi_qar",), max_age=17),)))
        handlers.create_partner(cur, PartnerEntry(name="Women's Shelter", services=(
            ServiceTerms(service="shelter", governorates=("dhi_qar",), min_age=18),)))
    youth_key = key_for(pools, keys, partner_id=youth)
    girl = case_triaged(keys, level="high", needs=("shelter",), consents=("shelter",),
                        preferences={"family_contact": False, "staff_gender": None, "victim_age": 15})
    referral_service(pools, outbox, keys).on_case_triaged([girl.to_message()])
    [offer] = referrals(pools)
    assert offer["partner_id"] == youth

    status, _, _ = call(referral_service(pools, outbox, keys), "partner_change_status", "POST", "/",
                        str(offer["id"]), body={"status": "declined", "note_code": "no_capacity"}, key=youth_key)
    assert status == 200
    assert [r["partner_id"] for r in referrals(pools)] == [youth], "never to the shelter for adults"
    [(_, escalated)] = events(pools, "referral.escalated")
    assert (escalated.data["reason"], escalated.data["reoffered_to"]) == ("declined", None), "a supervisor is paged"


def test_what_the_victim_asked_is_kept_sealed_and_an_older_version_s_clear_copy_matches_until_reseal_seals_it(
        pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        youth = handlers.create_partner(cur, PartnerEntry(name="Youth Shelter", services=(
            ServiceTerms(service="shelter", governorates=("dhi_qar",), max_age=17),)))
        handlers.create_partner(cur, PartnerEntry(name="Women's Shelter", services=(
            ServiceTerms(service="shelter", governorates=("dhi_qar",), min_age=18),)))
    asked = {"family_contact": False, "staff_gender": None, "victim_age": 15}
    girl = case_triaged(keys, level="high", needs=("shelter",), consents=("shelter",), preferences=asked)
    case_id = girl.data["case_id"]
    referral_service(pools, outbox, keys).on_case_triaged([girl.to_message()])

    def kept():
        [row] = rows(pools["referral"], "SELECT preferences, preferences_sealed FROM cases")
        assert row["preferences"] is None and "victim_age" not in row["preferences_sealed"]
        return json.loads(keys.data.open(row["preferences_sealed"], preferences_context(case_id)))
    assert kept() == asked
    with pools["referral"].transaction() as cur:  # as a case recorded before migration 0006 keeps them
        cur.execute("UPDATE cases SET preferences = %s, preferences_sealed = NULL", (json.dumps(asked),))
    [offer] = referrals(pools)
    with pools["referral"].transaction() as cur:
        handlers.change_status(cur, outbox, keys, offer["id"], "declined", "no_capacity", "partner", partner_id=youth)
    assert [r["partner_id"] for r in referrals(pools)] == [youth], "never re-offered to the shelter for adults"

    assert handlers.reseal(pools["referral"], keys.data) == {"audit_log": 0, "cases": 1}
    assert kept() == asked
    assert handlers.reseal(pools["referral"], keys.data) == {"audit_log": 0, "cases": 0}, "safe to run again"


def test_a_critical_case_is_referred_on_the_critical_lane(pools, outbox, keys):
    add_partners(pools)
    offer_critical_case(pools, outbox, keys)

    [(routing_key, _)] = outbox_events(pools["referral"])
    assert routing_key == "referral.created.critical"


def test_a_critical_case_is_offered_in_one_transaction_of_five_round_trips(pools, outbox, keys, database_url):
    """Each round trip is a wait for a core under a flood. What is left needs an answer before the next
    step: BEGIN with the inbox row and the case's level before (a repeated event fails here, on the inbox
    row), the partners' offers (the case's upsert with them), the policy, the referral's insert (an
    attempt that exists stops here); then its deadline, its event and COMMIT go together."""
    add_partners(pools)
    with counting_pool(database_url, schema="referral") as (pool, sent):
        service = worker_factory(CriticalReferralService, db=pool, outbox=outbox, keys=keys)
        service.on_case_triaged(case_triaged(keys, level="critical").to_message())

    assert len(sent) == 5, sent
    assert "BEGIN" in sent[0] and inbox.RECORD_FIRST_TIME.name in sent[0]
    assert sent[-1].endswith("COMMIT") and "INSERT INTO ack_deadlines" in sent[-1] and "INSERT INTO outbox" in sent[-1]
    [(routing_key, _)] = outbox_events(pools["referral"])
    assert routing_key == "referral.created.critical"


def test_a_need_nobody_can_take_goes_to_the_supervisor_at_once_and_intake_is_told(pools, outbox, keys):
    add_partners(pools)
    event = case_triaged(keys, level="high", needs=["content_removal"], consents=["content_removal"])
    referral_service(pools, outbox, keys).on_case_triaged([event.to_message()])

    (unmatched_key, unmatched), (escalated_key, escalated) = events(pools)
    assert (unmatched_key, unmatched.data["services"]) == ("case.unmatched.normal", ["content_removal"])
    assert escalated_key == "referral.escalated.normal"
    assert escalated.data["reason"] == "no_match" and escalated.data["referral_id"] is None
    assert (escalated.data["service"], escalated.data["step"], escalated.data["reoffered_to"]) == (
        "content_removal", 1, None)
    assert escalated.correlation_id == event.correlation_id


def retriaged(event, level):
    return new_event("case.triaged", {**event.data, "level": level}, producer="triage",
                     correlation_id=event.correlation_id, lane=lane_for(level))


def offered_at_medium(pools, outbox, keys):
    """A medium case offered to the one partner in the directory: (that partner, its case.triaged, the offer)."""
    with pools["referral"].transaction() as cur:
        partner = add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
    event = case_triaged(keys, level="medium")
    referral_service(pools, outbox, keys).on_case_triaged([event.to_message()])
    [offer] = referrals(pools)
    return partner, event, offer


def declined_then_another_partner(pools, outbox, keys):
    """A medium case its one partner declined, so its need has nobody, and then a second partner in the
    directory: (the case.triaged, the second partner)."""
    first, event, offer = offered_at_medium(pools, outbox, keys)
    with pools["referral"].transaction() as cur:
        handlers.change_status(cur, outbox, keys, offer["id"], "declined", "no_capacity", "partner", partner_id=first)
        second = add_partner(cur, "Shatra Counselling", ["counselling"], ["dhi_qar"])
    return event, second


def raise_to_critical(pools, outbox, keys, event):
    """Staff raised the case: its case.triaged again, at critical, on the critical lane's process."""
    referral_service(pools, outbox, keys, CriticalReferralService).on_case_triaged(
        retriaged(event, "critical").to_message())


def test_a_case_raised_after_its_partner_stopped_accepting_keeps_its_offer_and_is_not_announced_unmatched(
        pools, outbox, keys):
    centre, event, _ = offered_at_medium(pools, outbox, keys)
    with pools["referral"].transaction() as cur:
        handlers.set_accepting(cur, centre, False, "partner")

    raise_to_critical(pools, outbox, keys, event)
    [offer] = referrals(pools)
    assert (offer["partner_id"], offer["status"], offer["level"]) == (centre, "offered", "critical")
    assert events(pools, "referral.escalated") == [], "no false no_match page"
    assert events(pools, "case.unmatched") == []


def test_a_need_announced_unmatched_is_not_announced_again_at_the_same_level_but_is_when_raised(
        pools, outbox, keys):
    add_partners(pools)
    event = case_triaged(keys, level="high", needs=["content_removal"], consents=["content_removal"])
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([event.to_message()])
    service.on_case_triaged([retriaged(event, "high").to_message()])
    service.on_case_triaged([retriaged(event, "medium").to_message()])
    assert [key for key, _ in events(pools, "referral.escalated")] == ["referral.escalated.normal"]
    assert [e.data["services"] for _, e in events(pools, "case.unmatched")] == [["content_removal"]] * 3, \
        "intake is told each time, so that what it shows stays whole"

    raise_to_critical(pools, outbox, keys, event)
    assert [key for key, _ in events(pools, "referral.escalated")] == [
        "referral.escalated.normal", "referral.escalated.critical"], "a critical case pages on its own lane"
    assert [key for key, _ in events(pools, "case.unmatched")][-1] == "case.unmatched.critical"


def test_a_need_whose_offers_all_ended_is_offered_to_someone_new_when_the_case_is_raised_and_only_then(
        pools, outbox, keys):
    event, second = declined_then_another_partner(pools, outbox, keys)
    ended = {r["id"] for r in referrals(pools)}

    referral_service(pools, outbox, keys).on_case_triaged([retriaged(event, "medium").to_message()])
    assert {r["id"] for r in referrals(pools)} == ended, "the same level asks nothing new of a settled need"

    raise_to_critical(pools, outbox, keys, event)
    fresh = [r for r in referrals(pools) if r["id"] not in ended]
    assert [(r["status"], r["level"], r["offered_by"]) for r in fresh] == [("offered", "critical", "matching")]
    assert fresh[0]["attempt"] == max(r["attempt"] for r in referrals(pools) if r["id"] in ended) + 1
    assert fresh[0]["partner_id"] == second, "not the partner who declined"
    assert events(pools, "case.unmatched") == []


def test_a_raised_case_reads_its_needs_after_a_refer_anyway_under_way_and_offers_nothing_twice(
        pools, outbox, keys):
    event, second = declined_then_another_partner(pools, outbox, keys)

    with pools["referral"].transaction() as holder:  # a supervisor's refer-anyway, under way
        holder.execute(sql.LOCK_CASE_OFFERS, {"case_id": event.data["case_id"]})
        raising = eventlet.spawn(raise_to_critical, pools, outbox, keys, event)
        eventlet.sleep(0.5)
        handlers.refer_anyway(holder, outbox, keys, event.data["case_id"], "counselling", second)
    raising.wait()
    live = [(r["partner_id"], r["attempt"], r["offered_by"]) for r in referrals(pools) if r["status"] == "offered"]
    assert live == [(second, 2, "refer_anyway")]


def test_a_need_carried_through_is_not_offered_again_when_the_case_is_raised(pools, outbox, keys):
    first, event, offer = offered_at_medium(pools, outbox, keys)
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Shatra Counselling", ["counselling"], ["dhi_qar"])
        handlers.change_status(cur, outbox, keys, offer["id"], "accepted", None, "partner", partner_id=first)
        handlers.change_status(cur, outbox, keys, offer["id"], "closed", "victim_withdrew", "partner", partner_id=first)
    raise_to_critical(pools, outbox, keys, event)
    assert [r["status"] for r in referrals(pools)] == ["closed"], "the victim withdrew: nobody is offered it"
    assert events(pools, "case.unmatched") == []


def test_intake_is_told_every_need_nobody_can_take_each_time_and_when_none_is_left(pools, outbox, keys):
    add_partners(pools)
    event = case_triaged(keys, level="high", needs=["content_removal"], consents=["content_removal"])
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([event.to_message()])
    both = ["content_removal", "police_cybercrime"]
    service.on_case_triaged([new_event("case.triaged", {**event.data, "needs": both, "consents": both},
                                       producer="triage", correlation_id=event.correlation_id).to_message()])
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Takedown Desk", ["content_removal", "police_cybercrime"], ["nationwide"])
    service.on_case_triaged([new_event("case.triaged", {**event.data, "needs": both, "consents": both},
                                       producer="triage", correlation_id=event.correlation_id).to_message()])
    told = [e.data["services"] for _, e in events(pools, "case.unmatched")]
    assert told == [["content_removal"], both, []], "intake shows what it is told last"
    assert [e.data["service"] for _, e in events(pools, "referral.escalated")] == [
        "content_removal", "police_cybercrime"], "each need is paged once at a level"


def test_a_critical_case_nobody_can_take_pages_on_the_critical_lane(pools, outbox, keys):
    offer_critical_case(pools, outbox, keys)
    assert [key for key, _ in events(pools, "referral.escalated")] == ["referral.escalated.critical"]


def test_the_same_triaged_case_twice_is_referred_once(pools, outbox, keys):
    add_partners(pools)
    message = case_triaged(keys).to_message()
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([message])
    service.on_case_triaged([message])

    assert len(referrals(pools)) == 1
    assert len(deadlines(pools)) == 1


def test_a_partner_outside_its_hours_is_passed_over_for_one_open_around_the_clock(pools, outbox, keys):
    office = ServiceTerms("counselling", ("dhi_qar",), always_open=False, hours=parse_hours("sun-thu 08:00-14:00"))
    with pools["referral"].transaction() as cur:
        handlers.create_partner(cur, PartnerEntry("Office Hours Centre", (office,)))
        helpline = handlers.create_partner(cur, PartnerEntry("Helpline", (ServiceTerms("counselling",
                                                                                       ("nationwide",)),)))
    friday_night_in_nasiriyah = datetime(2024, 3, 8, 20, 0, tzinfo=timezone.utc)
    sunday_morning_in_nasiriyah = datetime(2024, 3, 10, 6, 0, tzinfo=timezone.utc)
    for at in (friday_night_in_nasiriyah, sunday_morning_in_nasiriyah):
        with pools["referral"].transaction() as cur:
            handlers.refer_case(cur, case_triaged(keys), outbox, keys, now=at)

    assert [r["partner_id"] for r in referrals(pools)][0] == helpline
    office_id = rows(pools["referral"], "SELECT id FROM partners WHERE name = 'Office Hours Centre'")[0]["id"]
    assert {r["partner_id"] for r in referrals(pools)} == {helpline, office_id}, "in its hours the local office wins"


# Deadlines and escalation --------------------------------------------------------------------------------

def test_an_offer_waits_for_acknowledgement_under_a_snapshot_of_its_level_s_policy(pools, outbox, keys):
    two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)

    [referral], [deadline] = referrals(pools), deadlines(pools)
    assert deadline["referral_id"] == referral["id"] and deadline["status"] == "pending"
    assert deadline["due_at"] == referral["created_at"] + timedelta(minutes=5)
    assert (deadline["lane"], deadline["policy_level"], deadline["ack_seconds"], deadline["max_reoffers"]) == (
        "critical", "critical", 300, 3)


def test_an_unacknowledged_critical_offer_is_reoffered_to_the_next_partner_and_the_supervisor_paged(
        pools, outbox, keys):
    (first, _), (second, _) = two_counsellors(pools, keys)
    event = offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    due = deadlines(pools)[0]["due_at"]

    assert escalate(pools, outbox, keys, due - timedelta(seconds=1)).escalated == [], "nothing fires early"
    assert escalate(pools, outbox, keys, due).escalated == [("ack_timeout", "critical")]

    withdrawn, reoffer = referrals(pools)
    assert (withdrawn["id"], withdrawn["partner_id"], withdrawn["status"], withdrawn["note_code"]) == (
        offer["id"], first, "withdrawn", "ack_timeout")
    assert (reoffer["partner_id"], reoffer["status"], reoffer["attempt"], reoffer["offered_by"]) == (
        second, "offered", 2, "reoffer")

    [(created_key, created)] = events(pools, "referral.created")[1:]
    assert created_key == "referral.created.critical" and created.data["referral_id"] == reoffer["id"]
    assert created.data["referral_id"] != offer["id"], "a re-offer is a new referral with a new id"
    [(escalated_key, escalated)] = events(pools, "referral.escalated")
    assert escalated_key == "referral.escalated.critical"
    assert escalated.data == {
        "referral_id": offer["id"], "case_id": event.data["case_id"], "reference": event.data["reference"],
        "level": "critical", "service": "counselling", "governorate": "dhi_qar", "reason": "ack_timeout", "step": 1,
        "reoffered_to": second, "escalated_at": due,
    }
    [(_, withdrawal)] = events(pools, "referral.status_changed")
    assert (withdrawal.data["status"], withdrawal.data["changed_by"], withdrawal.data["note_code"]) == (
        "withdrawn", "system", "ack_timeout")

    fired, pending = deadlines(pools)
    assert fired["status"] == "fired" and pending["referral_id"] == reoffer["id"]
    assert (pending["chain_id"], pending["steps_taken"], pending["due_at"]) == (
        fired["chain_id"], 1, due + timedelta(minutes=5))
    assert escalate(pools, outbox, keys, due).escalated == [], "a fired deadline never fires again"


def test_with_nobody_left_the_offer_stands_and_the_supervisor_is_paged_until_the_chain_ends(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        only = add_partner(cur, "Only Centre", ["counselling"], ["dhi_qar"])
        handlers.set_policy(cur, handlers.Policy("critical", 60, 2), "test")
    offer_critical_case(pools, outbox, keys)
    clock = deadlines(pools)[0]["due_at"]
    pages = []
    while (pending := [d for d in deadlines(pools) if d["status"] == "pending"]):
        clock = pending[0]["due_at"]
        pages += escalate(pools, outbox, keys, clock).escalated

    assert pages == [("ack_timeout", "critical")] * 3, "max_reoffers pages, then one final page"
    [referral] = referrals(pools)
    assert (referral["partner_id"], referral["status"]) == (only, "offered"), "a late acknowledgement beats none"
    assert [e.data["step"] for _, e in events(pools, "referral.escalated")] == [1, 2, 3]
    assert all(e.data["reoffered_to"] is None for _, e in events(pools, "referral.escalated"))


def test_an_acceptance_through_the_partner_api_cancels_the_deadline_so_nobody_is_paged(pools, outbox, keys):
    (first, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    due = deadlines(pools)[0]["due_at"]

    status, body, _ = call(referral_service(pools, outbox, keys), "partner_change_status", "POST",
                           f"/partner/v1/referrals/{offer['id']}/status", str(offer["id"]),
                           body={"status": "accepted"}, key=first_key)
    assert status == 200 and body["status"] == "accepted" and body["acknowledge_by"] is None
    assert escalate(pools, outbox, keys, due + timedelta(hours=1)).escalated == []
    assert [d["status"] for d in deadlines(pools)] == ["cancelled"]
    assert events(pools, "referral.escalated") == []
    [(key, accepted)] = events(pools, "referral.status_changed")
    assert key == "referral.status_changed.critical"
    assert (accepted.data["previous_status"], accepted.data["status"], accepted.data["changed_by"]) == (
        "offered", "accepted", "partner")


def test_a_policy_change_does_not_alter_an_escalation_already_running(pools, outbox, keys):
    two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    due = deadlines(pools)[0]["due_at"]
    with pools["referral"].transaction() as cur:
        handlers.set_policy(cur, handlers.Policy("critical", 3600, 0), "test")

    assert escalate(pools, outbox, keys, due).escalated == [("ack_timeout", "critical")], "old deadline, old policy"
    _, reoffer_deadline = deadlines(pools)
    assert (reoffer_deadline["ack_seconds"], reoffer_deadline["max_reoffers"], reoffer_deadline["policy_version"]) == (
        300, 3, 0), "version 0: the built-in default, as the tables are emptied before each test"
    assert reoffer_deadline["due_at"] == due + timedelta(minutes=5)

    later = offer_critical_case(pools, outbox, keys)
    [newest] = rows(pools["referral"], "SELECT d.* FROM ack_deadlines d JOIN referrals r ON r.id = d.referral_id "
                                       "WHERE r.case_id = %(case_id)s", {"case_id": later.data["case_id"]})
    assert (newest["ack_seconds"], newest["policy_version"]) == (3600, 1), "new chains take the new policy"


def test_a_decline_with_a_reason_goes_to_the_next_partner_at_once(pools, outbox, keys):
    (first, first_key), (second, _) = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)

    status, body, _ = call(referral_service(pools, outbox, keys), "partner_change_status", "POST",
                           "/", str(offer["id"]), body={"status": "declined", "note_code": "no_capacity"},
                           key=first_key)
    assert (status, body["status"], body["note_code"]) == (200, "declined", "no_capacity")
    declined, reoffer = referrals(pools)
    assert reoffer["partner_id"] == second and reoffer["status"] == "offered"
    [(_, escalated)] = events(pools, "referral.escalated")
    assert (escalated.data["reason"], escalated.data["reoffered_to"], escalated.data["step"]) == (
        "declined", second, 1)
    assert [d["status"] for d in deadlines(pools)] == ["cancelled", "pending"]


STALE_NEXT_ATTEMPT = """
    SELECT coalesce(max(attempt), 0) AS attempt FROM referrals WHERE case_id = %(case_id)s AND service = %(service)s
"""


def test_a_reoffer_whose_attempt_another_offer_took_is_neither_announced_nor_withdraws_the_offer(
        pools, outbox, keys, monkeypatch):
    """What a re-offer racing a refer-anyway saw: NEXT_ATTEMPT answered before the other offer committed."""
    two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    monkeypatch.setattr(sql, "NEXT_ATTEMPT", STALE_NEXT_ATTEMPT)

    escalate(pools, outbox, keys, at=datetime.now(timezone.utc) + timedelta(minutes=6))
    assert [(r["attempt"], r["status"]) for r in referrals(pools)] == [(1, "offered")], "the offer stands"
    assert events(pools, "referral.escalated") == [], "no page names a partner who was offered nothing"
    [deadline] = deadlines(pools)
    assert (deadline["status"], deadline["failures"]) == ("pending", 1), "retried, and counted as overdue"


def test_a_refer_anyway_whose_attempt_another_offer_took_is_a_conflict_not_a_referral_id_of_none(
        pools, outbox, keys, monkeypatch):
    (first, _), (second, _) = two_counsellors(pools, keys)
    event = offer_critical_case(pools, outbox, keys)
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    monkeypatch.setattr(sql, "NEXT_ATTEMPT", STALE_NEXT_ATTEMPT)

    status, body, _ = call(referral_service(pools, outbox, keys), "admin_refer_anyway", "POST", "/",
                           str(event.data["case_id"]), key=supervisor,
                           body={"service": "counselling", "partner_id": str(second), "reason_code": "urgent_risk"})
    assert (status, body["error"]["code"]) == (409, "offer_lost")
    assert [r["partner_id"] for r in referrals(pools)] == [first]
    assert [e.data["reason"] for _, e in events(pools, "referral.escalated")] == []
    assert [(a["action"], a["outcome"]) for a in audit(pools)][-1] == ("referral.refer_anyway", "conflict")


def test_a_decline_whose_reoffer_found_its_attempt_taken_is_a_conflict_that_changes_nothing(
        pools, outbox, keys, monkeypatch):
    (first, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    monkeypatch.setattr(sql, "NEXT_ATTEMPT", STALE_NEXT_ATTEMPT)

    status, body, _ = call(referral_service(pools, outbox, keys), "partner_change_status", "POST", "/",
                           str(offer["id"]), body={"status": "declined", "note_code": "no_capacity"}, key=first_key)
    assert (status, body["error"]["code"]) == (409, "offer_lost"), "a conflict to try again, not a 500"
    assert [r["status"] for r in referrals(pools)] == ["offered"]
    assert [(a["action"], a["outcome"]) for a in audit(pools)][-1] == ("referral.status", "conflict")


def test_a_reoffer_and_a_refer_anyway_of_one_case_wait_for_each_other(pools, outbox, keys):
    (first, first_key), (second, _) = two_counsellors(pools, keys)
    event = offer_critical_case(pools, outbox, keys)
    case_id = event.data["case_id"]
    [offer] = referrals(pools)
    with pools["referral"].transaction() as holder:
        holder.execute(sql.LOCK_CASE_OFFERS, {"case_id": case_id})  # another offer of the case, under way
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            with pools["referral"].transaction() as cur:
                cur.execute("SET LOCAL lock_timeout = '200ms'")
                handlers.refer_anyway(cur, outbox, keys, case_id, "counselling", second)
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            with pools["referral"].transaction() as cur:
                cur.execute("SET LOCAL lock_timeout = '200ms'")
                handlers.change_status(cur, outbox, keys, offer["id"], "declined", "no_capacity", "partner",
                                       partner_id=first)
    assert [r["status"] for r in referrals(pools)] == ["offered"]


def exhausted(referral, last_status_code=503, last_error=None):
    return new_event("notification.exhausted", {
        "delivery_id": uuid.uuid4(), "webhook_id": f"msg_{referral['id'].hex}", "referral_id": referral["id"],
        "case_id": referral["case_id"], "partner_id": referral["partner_id"], "attempts": 8,
        "last_status_code": last_status_code, "last_error": last_error, "exhausted_at": datetime.now(timezone.utc),
    }, producer="notify", lane="critical")


@pytest.mark.parametrize("status_code,error,unreachable", [
    (None, "endpoint_disabled", True), (None, "no_endpoint", True), (410, None, True),
    (503, None, False), (None, "timeout", False), (404, None, False),
])
def test_a_partner_notify_cannot_reach_at_all_takes_no_new_cases_until_someone_says_it_can(
        status_code, error, unreachable, pools, outbox, keys):
    (first, _), (second, _) = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys, CriticalReferralService)
    service.on_notification_exhausted(exhausted(offer, status_code, error).to_message())

    with pools["referral"].transaction() as cur:
        [partner] = handlers.directory(cur, first)
    assert partner["accepting"] is not unreachable
    assert (partner["accepting_changed_by"] == "system: webhook unreachable") is unreachable
    assert referrals(pools)[-1]["partner_id"] == second, "its case went on to the next partner either way"
    next_case = offer_critical_case(pools, outbox, keys).data["case_id"]
    [next_offer] = [r for r in referrals(pools) if r["case_id"] == next_case]
    assert next_offer["partner_id"] == (second if unreachable else first), "the next case skips it, or not"


def test_an_offer_notify_could_not_deliver_is_withdrawn_and_reoffered(pools, outbox, keys):
    (first, _), (second, _) = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)

    referral_service(pools, outbox, keys, CriticalReferralService).on_notification_exhausted(
        exhausted(offer).to_message())

    undelivered, reoffer = referrals(pools)
    assert (undelivered["status"], undelivered["note_code"]) == ("withdrawn", "delivery_exhausted")
    assert reoffer["partner_id"] == second
    [(key, escalated)] = events(pools, "referral.escalated")
    assert (key, escalated.data["reason"]) == ("referral.escalated.critical", "delivery_exhausted")


def test_an_exhausted_notification_for_an_offer_already_accepted_changes_nothing(pools, outbox, keys):
    (_, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)
    call(service, "partner_change_status", "POST", "/", str(offer["id"]), body={"status": "accepted"}, key=first_key)

    service.on_notification_exhausted(exhausted(offer).to_message())
    assert [r["status"] for r in referrals(pools)] == ["accepted"]
    assert events(pools, "referral.escalated") == []


def test_critical_deadlines_fire_first_and_the_critical_process_fires_no_others(pools, outbox, keys):
    two_counsellors(pools, keys)
    referral_service(pools, outbox, keys).on_case_triaged([case_triaged(keys, level="high").to_message()])
    offer_critical_case(pools, outbox, keys)
    now = datetime.now(timezone.utc)
    with pools["referral"].transaction() as cur:  # the normal one fell due first
        cur.execute("UPDATE ack_deadlines SET due_at = %(at)s - CASE lane WHEN 'normal' THEN interval '1 minute' "
                    "ELSE interval '0' END", {"at": now})

    with pools["referral"].transaction() as cur:
        cur.execute(handlers.sql.CLAIM_DUE_DEADLINE, {"now": now, "lanes": ["normal", "critical"]})
        assert cur.fetchone()["lane"] == "critical"
    assert escalate(pools, outbox, keys, now, lanes=("critical",)).escalated == [("ack_timeout", "critical")]
    assert [d["lane"] for d in deadlines(pools) if d["status"] == "pending" and d["due_at"] <= now] == ["normal"]
    assert escalate(pools, outbox, keys, now, lanes=("normal",)).escalated == [("ack_timeout", "normal")]


def test_a_deadline_whose_referral_was_answered_in_the_same_instant_pages_nobody(pools, outbox, keys):
    two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    with pools["referral"].transaction() as cur:  # an answer that slipped past the cancellation
        cur.execute("UPDATE referrals SET status = 'accepted' WHERE id = %(id)s", {"id": offer["id"]})

    assert escalate(pools, outbox, keys, datetime.now(timezone.utc) + timedelta(hours=1)).escalated == []
    assert [d["status"] for d in deadlines(pools)] == ["cancelled"]


# The partner API ---------------------------------------------------------------------------------------

def test_a_call_without_a_valid_key_is_refused_with_json_naming_the_header_and_audited(pools, outbox, keys):
    local, _ = add_partners(pools)
    service = referral_service(pools, outbox, keys)
    real = key_for(pools, keys, local)
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    for key in (None, "not-a-key", forged):
        status, body, response = call(service, "partner_list_referrals", "GET", "/partner/v1/referrals", key=key)
        assert status == 401 and body["error"]["code"] == "unauthenticated"
        assert "Authorization" in body["error"]["fields"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    refusals = audit(pools)
    assert [(a["action"], a["outcome"], a["actor_kind"]) for a in refusals] == [
        ("referral.list", "refused", "anonymous")] * 3
    assert [a["detail"]["reason"] for a in refusals] == ["missing_or_malformed", "missing_or_malformed", "unknown_key"]
    assert refusals[2]["key_id"] == real.split("_")[1] and refusals[2]["remote_addr"] == PARTNER_ADDRESS
    assert forged not in json.dumps(refusals, default=str), "no key material in the audit trail"


def test_a_partner_reads_only_what_it_needs_and_the_read_is_audited_with_where_from(pools, outbox, keys):
    (first, first_key), _ = two_counsellors(pools, keys)
    event = offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)

    status, body, _ = call(referral_service(pools, outbox, keys), "partner_get_referral", "GET", "/",
                           str(offer["id"]), key=first_key)
    assert status == 200
    assert set(body) == {"id", "reference", "level", "service", "governorate", "status", "note_code", "offered_at",
                         "acknowledge_by", "acknowledged_at", "updated_at"}
    assert (body["reference"], body["level"], body["service"], body["governorate"], body["status"]) == (
        event.data["reference"], "critical", "counselling", "dhi_qar", "offered")
    assert datetime.fromisoformat(body["acknowledge_by"]) == deadlines(pools)[0]["due_at"]
    assert str(event.data["case_id"]) not in json.dumps(body), "the internal case id stays inside"
    [read] = audit(pools)
    assert (read["action"], read["outcome"], read["actor_kind"], read["actor_id"], read["remote_addr"]) == (
        "referral.read", "ok", "partner", str(first), PARTNER_ADDRESS)
    assert (read["referral_id"], read["case_id"]) == (offer["id"], event.data["case_id"])


def test_a_partner_s_list_and_status_changes_leave_a_line_in_each_case_s_trail(pools, outbox, keys):
    (first, first_key), _ = two_counsellors(pools, keys)
    cases = [offer_critical_case(pools, outbox, keys).data["case_id"] for _ in range(2)]
    service = referral_service(pools, outbox, keys)

    status, body, _ = call(service, "partner_list_referrals", "GET", "/partner/v1/referrals", key=first_key)
    assert (status, len(body["referrals"])) == (200, 2)
    listed = [a for a in audit(pools) if a["action"] == "referral.list"]
    assert sorted((a["case_id"], a["referral_id"]) for a in listed) == sorted(
        (r["case_id"], r["id"]) for r in referrals(pools))
    assert {a["outcome"] for a in listed} == {"ok"} and {a["detail"]["count"] for a in listed} == {2}

    offer = referrals(pools)[0]
    for wanted in ("accepted", "completed"):  # the second skips a step: a conflict
        call(service, "partner_change_status", "POST", "/", str(offer["id"]), body={"status": wanted},
             key=first_key)
    changes = [a for a in audit(pools) if a["action"] == "referral.status"]
    assert [(a["outcome"], a["case_id"]) for a in changes] == [("ok", offer["case_id"]),
                                                               ("conflict", offer["case_id"])]
    assert offer["case_id"] in cases


def test_a_partner_pages_through_all_its_referrals_newest_first_and_only_its_own(pools, outbox, keys):
    (_, first_key), (second, second_key) = two_counsellors(pools, keys)
    for _ in range(6):
        offer_critical_case(pools, outbox, keys)
    service = referral_service(pools, outbox, keys)

    pages, query = [], "limit=2"
    while query is not None and len(pages) < 5:
        status, body, _ = call(service, "partner_list_referrals", "GET", "/partner/v1/referrals", key=first_key,
                               query=query)
        assert status == 200
        pages.append([r["id"] for r in body["referrals"]])
        path, _, query = body["next"].partition("?") if body["next"] else (None, None, None)
        assert path in ("/partner/v1/referrals", None)
    everything = sorted(referrals(pools), key=lambda r: (r["created_at"], r["id"]), reverse=True)
    assert [len(page) for page in pages] == [2, 2, 2], "three full pages, the last saying none follows"
    assert sum(pages, []) == [str(r["id"]) for r in everything], "every referral once, newest first"

    status, body, _ = call(service, "partner_list_referrals", "GET", "/partner/v1/referrals", key=second_key,
                           query=f"before={everything[0]['id']}")
    assert (status, body["error"]["code"], list(body["error"]["fields"])) == (404, "unknown_page", ["before"]), \
        "another partner's referral is no starting point, and looks like none at all"
    assert [(a["outcome"], a["actor_id"]) for a in audit(pools) if a["action"] == "referral.list"][-1] == (
        "not_found", str(second))


def test_a_partner_s_empty_list_is_audited_once_without_ids(pools, outbox, keys):
    (_, first_key), _ = two_counsellors(pools, keys)
    call(referral_service(pools, outbox, keys), "partner_list_referrals", "GET", "/partner/v1/referrals",
         key=first_key)
    [listed] = audit(pools)
    assert (listed["action"], listed["referral_id"], listed["case_id"], listed["detail"]["count"]) == (
        "referral.list", None, None, 0)


def test_a_partner_can_neither_see_nor_change_another_partner_s_referral_and_the_attempt_is_audited(
        pools, outbox, keys):
    _, (second, second_key) = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)

    read = call(service, "partner_get_referral", "GET", "/", str(offer["id"]), key=second_key)
    change = call(service, "partner_change_status", "POST", "/", str(offer["id"]), body={"status": "accepted"},
                  key=second_key)
    unknown = call(service, "partner_get_referral", "GET", "/", str(uuid.uuid4()), key=second_key)

    assert [r[0] for r in (read, change, unknown)] == [404, 404, 404], "another's referral looks like none at all"
    assert read[1] == unknown[1]
    assert [r["status"] for r in referrals(pools)] == ["offered"]
    assert [(a["action"], a["outcome"], a["actor_id"]) for a in audit(pools)] == [
        ("referral.read", "refused", str(second)), ("referral.status", "refused", str(second)),
        ("referral.read", "not_found", str(second))]
    listed = call(service, "partner_list_referrals", "GET", "/partner/v1/referrals", key=second_key)
    assert listed[1] == {"referrals": [], "next": None}


def test_a_partner_cannot_skip_steps_or_withdraw_and_each_error_names_the_field(pools, outbox, keys):
    (_, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)

    def change(body=None, raw=None):
        status, answer, _ = call(service, "partner_change_status", "POST", "/", str(offer["id"]), body=body, raw=raw,
                                 key=first_key)
        return status, answer["error"]["code"], sorted(answer["error"].get("fields", {}))

    assert change({"status": "completed", "note_code": "support_given"}) == (409, "invalid_transition", ["status"])
    assert change({"status": "withdrawn", "note_code": "reassigned"}) == (422, "status_not_allowed", ["status"])
    assert change({"status": "declined"}) == (422, "note_code_required", ["note_code"])
    assert change({"status": "declined", "note_code": "she is my cousin"})[2] == ["note_code"]
    assert change({"status": "accepted", "colour": "red"}) == (422, "invalid_request", ["colour"])
    assert change({}) == (422, "invalid_request", ["status"])
    assert change(raw="[1, 2]")[:2] == (400, "invalid_json")
    assert call(service, "partner_change_status", "POST", "/", "not-a-uuid", body={"status": "accepted"},
                key=first_key)[1]["error"]["fields"] == {"referral_id": ["Not a valid UUID."]}
    assert [r["status"] for r in referrals(pools)] == ["offered"]


def test_accepting_twice_is_harmless_and_announced_once(pools, outbox, keys):
    (_, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)
    for _ in range(2):
        status, body, _ = call(service, "partner_change_status", "POST", "/", str(offer["id"]),
                               body={"status": "accepted"}, key=first_key)
        assert (status, body["status"]) == (200, "accepted")
    assert len(events(pools, "referral.status_changed")) == 1


def test_a_partner_walks_a_referral_to_completion_and_each_step_is_an_event(pools, outbox, keys):
    (_, first_key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)
    for body in ({"status": "accepted"}, {"status": "in_progress"},
                 {"status": "completed", "note_code": "support_given"}):
        assert call(service, "partner_change_status", "POST", "/", str(offer["id"]), body=body, key=first_key)[0] == 200
    assert [(e.data["previous_status"], e.data["status"], e.data["note_code"])
            for _, e in events(pools, "referral.status_changed")] == [
        ("offered", "accepted", None), ("accepted", "in_progress", None), ("in_progress", "completed", "support_given")]


def test_a_partner_that_stops_accepting_is_offered_nothing_new(pools, outbox, keys):
    (first, first_key), (second, _) = two_counsellors(pools, keys)
    service = referral_service(pools, outbox, keys)
    status, body, _ = call(service, "partner_set_capacity", "PUT", "/partner/v1/capacity", body={"accepting": False},
                           key=first_key)
    assert (status, body) == (200, {"accepting": False})
    assert call(service, "partner_set_capacity", "PUT", "/", body={"accepting": "no"}, key=first_key)[0] == 422

    service.on_case_triaged([case_triaged(keys).to_message()])
    [referral] = referrals(pools)
    assert referral["partner_id"] == second
    [partner] = rows(pools["referral"], "SELECT * FROM partners WHERE id = %(id)s", {"id": first})
    assert (partner["accepting"], partner["accepting_changed_by"]) == (False, "partner")


def test_a_rotated_key_takes_over_and_the_old_one_stops_after_its_grace_period(pools, outbox, keys):
    (first, old_key), _ = two_counsellors(pools, keys)
    now = datetime.now(timezone.utc)
    with pools["referral"].transaction() as cur:
        _, new_key, expiring = access.rotate_partner_key(cur, keys.lookup, now, first, grace_seconds=3600)
    assert expiring == [old_key.split("_")[1]]

    def works(key, at):
        with pools["referral"].transaction() as cur:
            try:
                return access.authenticate(cur, keys.lookup, f"Bearer {key}", at, ("partner",)).partner_id == first
            except access.Refused as refused:
                return refused.reason

    assert works(new_key, now) is True and works(old_key, now) is True
    assert works(old_key, now + timedelta(hours=1)) == "expired_key"
    assert works(new_key, now + timedelta(hours=1)) is True


def test_rotating_a_partner_s_key_leaves_its_counsellors_staff_keys_alone(pools, outbox, keys):
    (first, old_key), _ = two_counsellors(pools, keys)
    counsellor = key_for(pools, keys, first, role="counsellor", staff_name="amira")
    now = datetime.now(timezone.utc)
    with pools["referral"].transaction() as cur:
        _, _, expiring = access.rotate_partner_key(cur, keys.lookup, now, first)
    assert expiring == [old_key.split("_")[1]], "only the partner's own key is counted and expired"
    with pools["referral"].transaction() as cur:
        principal = access.authenticate(cur, keys.lookup, f"Bearer {counsellor}", now + timedelta(minutes=1),
                                        ("counsellor",))
    assert (principal.role, principal.partner_id) == ("counsellor", first)


def test_a_counsellor_key_for_a_partner_that_does_not_exist_is_refused_naming_the_option(pools, sanad):
    unknown = str(uuid.uuid4())
    code, out, err = sanad("referral", "staff-key", "amira", "--role", "counsellor", "--partner-id", unknown)
    assert (code, out) == (2, "")
    assert err.startswith("sanad: partner-id: ") and unknown in err
    assert rows(pools["referral"], "SELECT * FROM api_keys") == []


def test_a_staff_key_is_no_partner_key_and_a_partner_key_opens_no_admin_call(pools, outbox, keys):
    (_, partner_key), _ = two_counsellors(pools, keys)
    counsellor = key_for(pools, keys, role="counsellor", staff_name="amira")
    service = referral_service(pools, outbox, keys)

    assert call(service, "partner_list_referrals", "GET", "/", key=counsellor)[0] == 403
    assert call(service, "admin_list_partners", "GET", "/", key=partner_key)[0] == 403
    assert call(service, "admin_set_policy", "PUT", "/", "critical", body={"ack_seconds": 1, "max_reoffers": 0},
                key=counsellor)[0] == 403
    assert [a["detail"]["reason"] for a in audit(pools)] == ["wrong_role"] * 3


# The admin API -------------------------------------------------------------------------------------------

def test_refer_anyway_offers_to_a_partner_matching_passed_over_pages_and_audits_with_the_note_sealed_for_rotation(
        pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        full = add_partner(cur, "Full Centre", ["counselling"], ["dhi_qar"], accepting=False)
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    service = referral_service(pools, outbox, keys)
    event = case_triaged(keys, level="high")
    service.on_case_triaged([event.to_message()])
    assert referrals(pools) == []

    note = "Called the centre, they will take her despite being full"
    status, body, _ = call(service, "admin_refer_anyway", "POST", "/", str(event.data["case_id"]), key=supervisor,
                           body={"service": "counselling", "partner_id": str(full),
                                 "reason_code": "partner_agreed_by_phone", "note": note})
    assert status == 201
    [referral] = referrals(pools)
    assert (str(referral["id"]), referral["partner_id"], referral["offered_by"]) == (body["referral_id"], full,
                                                                                     "refer_anyway")
    reasons = [e.data["reason"] for _, e in events(pools, "referral.escalated")]
    assert reasons == ["no_match", "refer_anyway"]
    [record] = audit(pools)
    assert (record["action"], record["actor_id"], record["detail"]["reason_code"]) == (
        "referral.refer_anyway", "huda", "partner_agreed_by_phone")
    assert note not in json.dumps(record, default=str)
    assert keys.data.open(record["note_sealed"], handlers.note_context(event.data["case_id"])) == note

    rotated = dataclasses.replace(keys, data=keys.data.rotated())
    assert handlers.reseal(pools["referral"], rotated.data, batch=1) == {"audit_log": 1, "cases": 1}
    retired = rotated.data.keys[rotated.data.primary]
    only_new = dataclasses.replace(rotated.data, keys={rotated.data.primary: retired})
    [record] = audit(pools)
    assert only_new.open(record["note_sealed"], handlers.note_context(event.data["case_id"])) == note, \
        "after `sanad keys reseal` the old key can be retired"
    assert handlers.reseal(pools["referral"], rotated.data) == {"audit_log": 0, "cases": 0}


def test_refer_anyway_never_overrides_consent_and_the_refusal_is_audited(pools, outbox, keys):
    local, _ = add_partners(pools)
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    service = referral_service(pools, outbox, keys)
    event = case_triaged(keys, needs=["counselling", "shelter"], consents=["counselling"])
    service.on_case_triaged([event.to_message()])

    status, body, _ = call(service, "admin_refer_anyway", "POST", "/", str(event.data["case_id"]), key=supervisor,
                           body={"service": "shelter", "partner_id": str(local), "reason_code": "urgent_risk"})
    assert (status, body["error"]["code"], list(body["error"]["fields"])) == (422, "no_consent", ["service"])
    assert [r["service"] for r in referrals(pools)] == ["counselling"]
    assert [(a["action"], a["outcome"]) for a in audit(pools)] == [("referral.refer_anyway", "refused")]


def test_refer_anyway_offers_a_family_contact_partner_when_the_victim_asked_for_family_contact_only(
        pools, outbox, keys):
    family = ServiceTerms(service="counselling", governorates=("dhi_qar",), contacts_family=True)
    with pools["referral"].transaction() as cur:
        partner = handlers.create_partner(cur, PartnerEntry(name="Family Centre", services=(family,),
                                                            accepting=False))
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    service = referral_service(pools, outbox, keys)
    asked = case_triaged(keys, preferences={"family_contact": True, "staff_gender": None, "victim_age": None})
    not_asked = case_triaged(keys, preferences={"family_contact": False, "staff_gender": None, "victim_age": None})
    service.on_case_triaged([asked.to_message(), not_asked.to_message()])

    answers = [call(service, "admin_refer_anyway", "POST", "/", str(event.data["case_id"]), key=supervisor,
                    body={"service": "counselling", "partner_id": str(partner), "reason_code": "victim_request"})
               for event in (asked, not_asked)]
    assert [status for status, _, _ in answers] == [201, 422]
    assert answers[1][1]["error"]["code"] == "family_contact"
    assert [r["case_id"] for r in referrals(pools)] == [asked.data["case_id"]]


def test_an_admin_key_neither_reads_a_case_s_referrals_nor_refers_anyway_and_the_refusals_are_audited(
        pools, outbox, keys):
    _, national = add_partners(pools)
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    event = case_triaged(keys)
    service.on_case_triaged([event.to_message()])
    case_id = str(event.data["case_id"])

    read, _, _ = call(service, "admin_case_referrals", "GET", "/", case_id, key=admin)
    placed, _, _ = call(service, "admin_refer_anyway", "POST", "/", case_id, key=admin,
                        body={"service": "counselling", "partner_id": str(national), "reason_code": "other"})
    assert (read, placed) == (403, 403)
    assert len(referrals(pools)) == 1
    assert [(a["action"], a["outcome"], a["detail"]["reason"]) for a in audit(pools)] == [
        ("case.read", "refused", "wrong_role"), ("referral.refer_anyway", "refused", "wrong_role")]
    listed, _, _ = call(service, "admin_list_partners", "GET", "/", key=admin)
    assert listed == 200, "the directory is still an admin's to manage"


def test_refer_anyway_on_a_purged_case_is_refused_as_a_conflict_and_stores_no_note(pools, outbox, keys):
    _, national = add_partners(pools)
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    service = referral_service(pools, outbox, keys)
    event = case_triaged(keys)
    service.on_case_triaged([event.to_message()])
    with pools["referral"].transaction() as cur:
        cur.execute("INSERT INTO purged_cases (case_id, purged_at) VALUES (%(id)s, now())",
                    {"id": event.data["case_id"]})

    status, body, _ = call(service, "admin_refer_anyway", "POST", "/", str(event.data["case_id"]), key=supervisor,
                           body={"service": "counselling", "partner_id": str(national), "reason_code": "other",
                                 "note": "She called back from her aunt's phone"})
    assert (status, body["error"]["code"], list(body["error"]["fields"])) == (409, "case_purged", ["case_id"])
    assert len(referrals(pools)) == 1
    [record] = audit(pools)
    assert (record["action"], record["outcome"], record["note_sealed"]) == ("referral.refer_anyway", "refused", None)


def test_only_an_admin_changes_a_policy_and_the_new_version_is_kept(pools, outbox, keys):
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    status, body, _ = call(service, "admin_set_policy", "PUT", "/", "high", key=admin,
                           body={"ack_seconds": 900, "max_reoffers": 4})
    assert (status, body["ack_seconds"], body["max_reoffers"], body["version"]) == (200, 900, 4, 1)
    assert call(service, "admin_set_policy", "PUT", "/", "high", key=admin,
                body={"ack_seconds": 600, "max_reoffers": 4})[1]["version"] == 2
    assert call(service, "admin_set_policy", "PUT", "/", "high", key=admin,
                body={"ack_seconds": 0, "max_reoffers": 4})[1]["error"]["fields"] == {
        "ack_seconds": ["Must be greater than or equal to 1 and less than or equal to 604800."]}
    assert call(service, "admin_set_policy", "PUT", "/", "urgent", key=admin,
                body={"ack_seconds": 9, "max_reoffers": 0})[0] == 404


def test_the_admin_match_explains_who_comes_first_and_why_others_were_passed_over(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        handlers.create_partner(cur, PartnerEntry("Zainab Centre", (ServiceTerms(
            "counselling", ("dhi_qar",), staff_genders=("female",)),)))
        handlers.create_partner(cur, PartnerEntry("Ahmed Centre", (ServiceTerms(
            "counselling", ("dhi_qar",), staff_genders=("male",)),)))
        handlers.create_partner(cur, PartnerEntry("Basra Centre", (ServiceTerms(
            "counselling", ("basra",), staff_genders=("female",)),)))
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    status, body, _ = call(referral_service(pools, outbox, keys), "admin_explain_match", "GET", "/admin/v1/match",
                           key=supervisor, query="service=counselling&governorate=dhi_qar&staff_gender=female")
    assert status == 200
    assert [p["name"] for p in body["eligible"]] == ["Zainab Centre"]
    assert {p["name"]: p["reason"] for p in body["passed_over"]} == {
        "Ahmed Centre": "no_staff_gender", "Basra Centre": "outside_area"}


def test_an_admin_sets_a_service_s_hours_and_staff_and_bad_terms_are_named_field_by_field(pools, outbox, keys):
    local, _ = add_partners(pools)
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    terms = {"governorates": ["dhi_qar"], "staff_genders": ["female"], "languages": ["ar", "en"],
             "hours": [{"weekday": 6, "opens": "08:00", "closes": "14:00"}]}
    status, body, _ = call(service, "admin_set_service", "PUT", "/", str(local), "counselling", key=admin, body=terms)
    assert status == 200
    [counselling] = [s for s in body["services"] if s["service"] == "counselling"]
    assert counselling["hours"] == [{"weekday": 6, "opens": "08:00:00", "closes": "14:00:00"}]
    assert (counselling["always_open"], counselling["staff_genders"]) == (False, ["female"])

    bad = {"governorates": ["atlantis"], "hours": [{"weekday": 9, "opens": "14:00", "closes": "08:00"}],
           "colour": "red"}
    status, body, _ = call(service, "admin_set_service", "PUT", "/", str(local), "counselling", key=admin, body=bad)
    assert status == 422
    assert set(body["error"]["fields"]) == {"governorates", "hours", "colour"}


def test_hours_to_midnight_are_stored_as_24_00_and_matched_until_the_last_second(pools, outbox, keys):
    local, _ = add_partners(pools)
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    terms = {"governorates": ["dhi_qar"], "hours": [{"weekday": 6, "opens": "20:00", "closes": "24:00"}]}
    status, body, _ = call(service, "admin_set_service", "PUT", "/", str(local), "shelter", key=admin, body=terms)
    assert status == 200
    [shelter] = [s for s in body["services"] if s["service"] == "shelter"]
    assert shelter["hours"] == [{"weekday": 6, "opens": "20:00:00", "closes": "24:00:00"}]

    sunday_2359_30_in_iraq = datetime(2024, 3, 10, 20, 59, 30, tzinfo=timezone.utc)
    with pools["referral"].transaction() as cur:
        explained = handlers.explain_match(cur, "shelter", "dhi_qar", sunday_2359_30_in_iraq)
    assert [p["partner_id"] for p in explained["eligible"]] == [local]


def test_the_partner_openapi_file_is_served_and_describes_exactly_the_partner_routes(pools, outbox, keys):
    status, spec, _ = call(referral_service(pools, outbox, keys), "partner_openapi", "GET", "/partner/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    routes = set()
    for name in dir(ReferralService):
        for entrypoint in getattr(getattr(ReferralService, name), "nameko_entrypoints", ()):
            url = getattr(entrypoint, "url", "")
            if url.startswith("/partner/v1/"):
                routes.add((entrypoint.method.lower(), re.sub(r"<(\w+)>", r"{\1}", url)))
    described = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert described == routes
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert "401" in operation["responses"], f"{method} {path} says what an unauthenticated call gets"


def test_a_nul_character_in_an_admin_s_text_is_refused_naming_the_field_and_nothing_is_written(
        pools, outbox, keys):
    local, _ = add_partners(pools)
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    status, body, _ = call(service, "admin_update_partner", "PATCH", "/", str(local), key=admin,
                           body={"description": "Open\u0000late", "accepting": False})
    assert (status, list(body["error"]["fields"])) == (422, ["description"])
    [partner] = rows(pools["referral"], "SELECT accepting FROM partners WHERE id = %(id)s", {"id": local})
    assert partner["accepting"], "nothing half-written"


def test_an_admin_edits_a_partner_and_a_confidential_address_never_leaves_through_the_api(pools, outbox, keys):
    local, _ = add_partners(pools)
    admin = key_for(pools, keys, role="admin", staff_name="root")
    service = referral_service(pools, outbox, keys)
    status, body, _ = call(service, "admin_update_partner", "PATCH", "/", str(local), key=admin, body={
        "address": "Behind the old market, Nasiriyah", "confidential_address": True, "accepting": False})
    assert (status, body["address"], body["confidential_address"], body["accepting"]) == (200, None, True, False)
    listed = call(service, "admin_list_partners", "GET", "/", key=admin)[1]["partners"]
    assert "old market" not in json.dumps(listed)
    [stored] = rows(pools["referral"], "SELECT address FROM partners WHERE id = %(id)s", {"id": local})
    assert stored["address"] == "Behind the old market, Nasiriyah", "kept for the operators on the server"

    assert call(service, "admin_remove_service", "DELETE", "/", str(local), "shelter", key=admin)[0] == 204
    assert call(service, "admin_remove_service", "DELETE", "/", str(local), "shelter", key=admin)[0] == 404
    assert [s["service"] for s in call(service, "admin_get_partner", "GET", "/", str(local), key=admin)[1][
        "services"]] == ["counselling"]
    assert call(service, "admin_get_partner", "GET", "/", str(uuid.uuid4()), key=admin)[0] == 404


def test_staff_move_a_referral_for_an_in_house_counsellor_and_a_supervisor_sees_the_case_s_whole_history(
        pools, outbox, keys):
    two_counsellors(pools, keys)
    event = offer_critical_case(pools, outbox, keys)
    escalate(pools, outbox, keys, deadlines(pools)[0]["due_at"])
    _, reoffer = referrals(pools)
    counsellor = key_for(pools, keys, reoffer["partner_id"], role="counsellor", staff_name="amira")
    supervisor = key_for(pools, keys, role="supervisor", staff_name="huda")
    service = referral_service(pools, outbox, keys)

    status, body, _ = call(service, "admin_change_status", "POST", "/", str(reoffer["id"]), key=counsellor,
                           body={"status": "accepted"})
    assert (status, body["status"]) == (200, "accepted")
    assert events(pools, "referral.status_changed")[-1][1].data["changed_by"] == "staff"

    status, view, _ = call(service, "admin_case_referrals", "GET", "/", str(event.data["case_id"]), key=supervisor)
    assert status == 200 and view["reference"] == event.data["reference"]
    assert [(r["attempt"], r["status"]) for r in view["referrals"]] == [(1, "withdrawn"), (2, "accepted")]
    assert [(e["reason"], e["step"]) for e in view["escalations"]] == [("ack_timeout", 1)]
    assert call(service, "admin_case_referrals", "GET", "/", str(event.data["case_id"]), key=counsellor)[0] == 403
    assert ("case.read", "ok", "huda") in [(a["action"], a["outcome"], a["actor_id"]) for a in audit(pools)]


def test_a_counsellor_moves_only_their_own_partner_s_referrals_and_never_withdraws_one(pools, outbox, keys):
    (first, _), (second, _) = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    assert offer["partner_id"] == first
    ours = key_for(pools, keys, first, role="counsellor", staff_name="amira")
    elsewhere = key_for(pools, keys, second, role="counsellor", staff_name="zainab")
    untied = key_for(pools, keys, role="counsellor", staff_name="old-key")
    service = referral_service(pools, outbox, keys)

    def change(key, status):
        return call(service, "admin_change_status", "POST", "/", str(offer["id"]), key=key, body={"status": status})

    assert change(elsewhere, "accepted")[0] == 404, "another organisation's referral is not theirs to see"
    status, body, _ = change(untied, "accepted")
    assert (status, list(body["error"]["fields"])) == (403, ["Authorization"])
    status, body, _ = change(ours, "withdrawn")
    assert (status, list(body["error"]["fields"])) == (403, ["status"])
    assert referrals(pools)[0]["status"] == "offered"
    assert change(ours, "accepted")[0] == 200
    refused = [(a["actor_id"], a["outcome"]) for a in audit(pools) if a["action"] == "referral.status"]
    assert refused == [("zainab", "refused"), ("old-key", "refused"), ("amira", "refused"), ("amira", "ok")]


def test_malformed_partner_calls_get_a_json_error_naming_the_field_never_a_500(pools, outbox, keys):
    (_, key), _ = two_counsellors(pools, keys)
    offer_critical_case(pools, outbox, keys)
    [offer] = referrals(pools)
    service = referral_service(pools, outbox, keys)
    rid = str(offer["id"])
    status_call = ("partner_change_status", "POST", "/", rid)
    capacity_call = ("partner_set_capacity", "PUT", "/")
    list_call = ("partner_list_referrals", "GET", "/")
    cases = [
        (status_call, {"raw": ""}), (status_call, {"raw": "{"}), (status_call, {"raw": "null"}),
        (status_call, {"raw": '"accepted"'}), (status_call, {"raw": "[" * 5000 + "]" * 5000}),
        (status_call, {"raw": b"\xff\xfe{}"}), (status_call, {"body": {"status": None}}),
        (status_call, {"body": {"status": 1}}), (status_call, {"body": {"status": "accepted", "note_code": 7}}),
        (status_call, {"body": {"status": "ACCEPTED"}}), (status_call, {"body": {"status": "accepted" * 10_000}}),
        (status_call, {"body": {"status": "declined", "note_code": ""}}), (status_call, {"body": {"": ""}}),
        (capacity_call, {"body": {"accepting": 1}}), (capacity_call, {"body": {"accepting": "true"}}),
        (capacity_call, {"body": {"accepting": None}}), (capacity_call, {"body": {}}),
        (capacity_call, {"raw": "x" * 300_000}),
        (list_call, {"query": "limit=abc"}), (list_call, {"query": "limit=0"}), (list_call, {"query": "limit=-1"}),
        (list_call, {"query": "limit=99999999999999999999"}), (list_call, {"query": "status=lost"}),
        (list_call, {"query": "colour=red"}),
        (("partner_get_referral", "GET", "/", "x" * 5000), {}), (("partner_get_referral", "GET", "/", "%00"), {}),
    ]
    for (entrypoint, method, path, *args), options in cases:
        status, body, response = call(service, entrypoint, method, path, *args, key=key, **options)
        assert 400 <= status < 500, (entrypoint, options, status)
        assert response.mimetype == "application/json"
        assert body["error"]["fields"], (entrypoint, options, body)
    assert [r["status"] for r in referrals(pools)] == ["offered"]


def test_a_late_older_assessment_never_lowers_a_case_raised_to_critical_meanwhile(pools, outbox, keys):
    two_counsellors(pools, keys)
    assessed = case_triaged(keys, level="high")  # waits in the normal lane's backlog...
    raised = new_event("case.triaged", {**assessed.data, "level": "critical"}, producer="triage",
                       lane="critical", correlation_id=assessed.correlation_id)  # ...while staff raise it
    referral_service(pools, outbox, keys, CriticalReferralService).on_case_triaged(raised.to_message())
    referral_service(pools, outbox, keys).on_case_triaged([assessed.to_message()])

    [case] = rows(pools["referral"], "SELECT level, triaged_at FROM cases")
    assert (case["level"], case["triaged_at"]) == ("critical", raised.occurred_at)
    [offer] = referrals(pools)
    assert offer["level"] == "critical"
    [deadline] = deadlines(pools)
    assert (deadline["lane"], deadline["policy_level"]) == ("critical", "critical")


def test_a_case_raised_to_critical_is_chased_on_critical_terms_from_its_original_offer(pools, outbox, keys):
    two_counsellors(pools, keys)
    medium = case_triaged(keys, level="medium")
    service = referral_service(pools, outbox, keys)
    service.on_case_triaged([medium.to_message()])
    [offer] = referrals(pools)
    raised = new_event("case.triaged", {**medium.data, "level": "critical"}, producer="triage", lane="critical",
                       correlation_id=medium.correlation_id)
    referral_service(pools, outbox, keys, CriticalReferralService).on_case_triaged(raised.to_message())

    [relevelled] = referrals(pools)
    [deadline] = deadlines(pools)
    assert (relevelled["id"], relevelled["level"]) == (offer["id"], "critical"), "the same offer, not a second one"
    assert deadline["due_at"] == offer["created_at"] + timedelta(minutes=5)
    assert (deadline["lane"], deadline["policy_level"], deadline["ack_seconds"]) == ("critical", "critical", 300)
    fired = escalate(pools, outbox, keys, deadline["due_at"], lanes=("critical",))
    assert fired.escalated == [("ack_timeout", "critical")]

    lowered = new_event("case.triaged", {**medium.data, "level": "low"}, producer="triage",
                        correlation_id=medium.correlation_id)
    service.on_case_triaged([lowered.to_message()])
    assert [d["ack_seconds"] for d in deadlines(pools) if d["status"] == "pending"] == [300], \
        "a lowered risk never slows down what is running"
