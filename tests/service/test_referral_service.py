"""Referral offers consented needs to matching partners, once, and says when nobody can take one."""
from nameko.testing.services import worker_factory

from sanad.contracts.events import parse
from services.referral.handlers import add_partner
from services.referral.service import CriticalReferralService, ReferralService
from tests.service.conftest import outbox_events, rows
from tests.service.events import case_triaged


def add_partners(pools):
    with pools["referral"].transaction() as cur:
        local = add_partner(cur, "Nasiriyah Women's Centre", ["counselling", "shelter"], ["dhi_qar"])
        national = add_partner(cur, "National Legal Aid", ["legal_aid", "counselling"], ["nationwide"])
    return local, national


def test_each_consented_need_goes_to_the_best_partner(pools, outbox):
    local, national = add_partners(pools)
    event = case_triaged(needs=["counselling", "legal_aid", "shelter"], consents=["counselling", "legal_aid"])
    worker_factory(ReferralService, db=pools["referral"], outbox=outbox).on_case_triaged(event.to_message())

    referrals = {r["service"]: r["partner_id"] for r in rows(pools["referral"], "SELECT * FROM referrals")}
    assert referrals == {"counselling": local, "legal_aid": national}, "no referral without consent"
    events = [parse(body) for _, body in outbox_events(pools["referral"])]
    assert [e.type for e in events] == ["referral.created", "referral.created"]


def test_a_critical_case_is_referred_on_the_critical_lane(pools, outbox):
    add_partners(pools)
    event = case_triaged(level="critical")
    worker_factory(CriticalReferralService, db=pools["referral"], outbox=outbox).on_case_triaged(event.to_message())

    [(routing_key, _)] = outbox_events(pools["referral"])
    assert routing_key == "referral.created.critical"


def test_a_need_no_partner_can_take_is_announced_for_a_supervisor(pools, outbox):
    add_partners(pools)
    event = case_triaged(needs=["content_removal"], consents=["content_removal"])
    worker_factory(ReferralService, db=pools["referral"], outbox=outbox).on_case_triaged(event.to_message())

    [(routing_key, body)] = outbox_events(pools["referral"])
    assert routing_key == "case.unmatched.normal"
    assert parse(body).data["services"] == ["content_removal"]


def test_the_same_triaged_case_twice_is_referred_once(pools, outbox):
    add_partners(pools)
    message = case_triaged().to_message()
    service = worker_factory(ReferralService, db=pools["referral"], outbox=outbox)
    service.on_case_triaged(message)
    service.on_case_triaged(message)

    assert len(rows(pools["referral"], "SELECT id FROM referrals")) == 1
