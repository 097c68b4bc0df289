"""Referral's gauges (docs/operations.md): referrals by status, and acknowledgement deadlines the timers
did not fire in time, which is what the CriticalReferralOverdue alert pages on."""
from datetime import datetime, timedelta, timezone

from nameko.testing.services import worker_factory
from prometheus_client import REGISTRY

from services.referral import handlers
from services.referral.handlers import add_partner
from services.referral.service import CriticalReferralService, ReferralService
from tests.service.conftest import rows
from tests.service.events import case_triaged


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels)


def refer(pools, outbox, keys, level):
    cls = CriticalReferralService if level == "critical" else ReferralService
    service = worker_factory(cls, db=pools["referral"], outbox=outbox, keys=keys)
    message = case_triaged(keys, level=level).to_message()
    service.on_case_triaged(message if level == "critical" else [message])  # the normal lane takes batches
    return service


def test_a_deadline_unfired_half_a_minute_after_it_fell_due_counts_as_overdue_on_its_lane(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
    service = refer(pools, outbox, keys, "critical")
    refer(pools, outbox, keys, "medium")

    service.measure()
    assert sample("sanad_referrals_overdue", lane="critical") == 0
    assert sample("sanad_referrals", status="offered", level="critical") == 1
    assert sample("sanad_referrals", status="offered", level="medium") == 1

    with pools["referral"].transaction() as cur:
        cur.execute("UPDATE ack_deadlines SET due_at = now() - interval '10 seconds' WHERE lane = 'critical'")
    service.measure()
    assert sample("sanad_referrals_overdue", lane="critical") == 0, "within the grace the timer may still fire it"

    with pools["referral"].transaction() as cur:
        cur.execute("UPDATE ack_deadlines SET due_at = now() - interval '5 minutes' WHERE lane = 'critical'")
    service.measure()
    assert sample("sanad_referrals_overdue", lane="critical") == 1
    assert sample("sanad_referrals_overdue", lane="normal") == 0


def test_a_deadline_whose_escalation_failed_counts_as_overdue_although_retried_later(pools, outbox, keys):
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
    service = refer(pools, outbox, keys, "critical")
    with pools["referral"].transaction() as cur:
        cur.execute("UPDATE ack_deadlines SET failures = 1, due_at = now() + interval '1 minute'")
    service.measure()
    assert sample("sanad_referrals_overdue", lane="critical") == 1


def test_every_escalation_series_exists_at_zero_before_the_first_escalation():
    for reason in ("ack_timeout", "declined", "delivery_exhausted", "no_match", "refer_anyway"):
        for lane in ("normal", "critical"):
            assert sample("sanad_referral_escalations_total", reason=reason, lane=lane) is not None


def fail_every_escalation(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("escalation broken")
    monkeypatch.setattr(handlers, "_fire", broken)


def fire_failing(pools, outbox, keys, lanes, times):
    """The escalation timers, `times` ticks DEADLINE_RETRY_SECONDS apart, each retry due."""
    at = datetime.now(timezone.utc) + timedelta(hours=80)
    for _ in range(times):
        handlers.escalate_due(pools["referral"], outbox, keys, lanes, now=at)
        at += timedelta(seconds=handlers.DEADLINE_RETRY_SECONDS + 1)


def test_a_critical_deadline_whose_escalation_keeps_failing_is_never_set_aside_and_stays_overdue(
        pools, outbox, keys, monkeypatch, caplog):
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
    service = refer(pools, outbox, keys, "critical")
    fail_every_escalation(monkeypatch)
    failures = handlers.DEADLINE_LOG_EVERY * 3
    fire_failing(pools, outbox, keys, ("critical",), failures)

    assert rows(pools["referral"], "SELECT status, failures FROM ack_deadlines") == [
        {"status": "pending", "failures": failures}]
    service.measure()
    assert sample("sanad_referrals_overdue", lane="critical") == 1, "CriticalReferralOverdue keeps paging"
    tracebacks = [r for r in caplog.records if r.name == handlers.log.name and r.exc_info]
    assert len(tracebacks) == handlers.DEADLINE_MAX_FAILURES + 3, "the first failures, then once a minute"


def test_a_normal_deadline_set_aside_after_failing_is_counted_until_its_offer_is_answered_or_withdrawn(
        pools, outbox, keys, monkeypatch):
    with pools["referral"].transaction() as cur:
        add_partner(cur, "Nasiriyah Women's Centre", ["counselling"], ["dhi_qar"])
    service = refer(pools, outbox, keys, "medium")
    fail_every_escalation(monkeypatch)
    fire_failing(pools, outbox, keys, ("normal",), handlers.DEADLINE_MAX_FAILURES)

    assert rows(pools["referral"], "SELECT status FROM ack_deadlines") == [{"status": "failed"}]
    service.measure()
    assert sample("sanad_referral_deadlines_failed", lane="normal") == 1
    assert sample("sanad_referral_deadlines_failed", lane="critical") == 0

    with pools["referral"].transaction() as cur:
        cur.execute("UPDATE referrals SET status = 'withdrawn'")
    service.measure()
    assert sample("sanad_referral_deadlines_failed", lane="normal") == 0
