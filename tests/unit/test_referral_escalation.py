"""The escalation state machine: when an unacknowledged offer goes to the next partner and the supervisor,
how often, and when the chain stops. Time is handed in; nothing sleeps."""
from datetime import timedelta

import pytest

from services.referral.escalation import Chain, Policy, advanced, decide, first_deadline, may_reoffer

CRITICAL = Policy(level="critical", ack_seconds=300, max_reoffers=2, version=4)
NEXT, AFTER_NEXT = "partner-b", "partner-c"


def test_the_first_deadline_is_the_policy_s_acknowledgement_time_after_the_offer(now):
    assert first_deadline(CRITICAL, now) == now + timedelta(minutes=5)


def test_a_missed_deadline_reoffers_withdraws_and_sets_the_next_deadline_from_now(now):
    decision = decide(Chain(CRITICAL), "ack_timeout", now, NEXT)
    assert decision.step == 1
    assert decision.reoffer_to == NEXT
    assert decision.withdraw_current
    assert decision.next_deadline_at == now + timedelta(seconds=300)


def test_with_nobody_left_to_offer_the_offer_stands_and_the_supervisor_is_paged_again_later(now):
    decision = decide(Chain(CRITICAL), "ack_timeout", now, next_partner=None)
    assert decision.reoffer_to is None
    assert not decision.withdraw_current, "a late acknowledgement beats none"
    assert decision.next_deadline_at == now + timedelta(seconds=300)


def test_a_whole_chain_reoffers_max_times_then_pages_once_more_and_stops(now):
    """Walk a critical chain with a fake clock: offer, then three missed deadlines."""
    chain, clock, partners = Chain(CRITICAL), now, iter([NEXT, AFTER_NEXT, "partner-d"])
    deadline = first_deadline(CRITICAL, clock)
    decisions = []
    while deadline is not None:
        clock = deadline
        candidate = next(partners) if may_reoffer(chain, "ack_timeout") else None
        decision = decide(chain, "ack_timeout", clock, candidate)
        decisions.append(decision)
        chain, deadline = advanced(chain, decision), decision.next_deadline_at

    assert [d.step for d in decisions] == [1, 2, 3]
    assert [d.reoffer_to for d in decisions] == [NEXT, AFTER_NEXT, None]
    assert [d.withdraw_current for d in decisions] == [True, True, False]
    assert decisions[-1].next_deadline_at is None
    assert clock == now + timedelta(minutes=15)


def test_may_reoffer_is_false_once_the_reoffers_are_used_up_so_the_directory_is_not_searched():
    assert may_reoffer(Chain(CRITICAL, steps_taken=1), "ack_timeout")
    assert not may_reoffer(Chain(CRITICAL, steps_taken=2), "ack_timeout")


def test_a_policy_allowing_no_reoffers_pages_the_supervisor_once_and_keeps_the_offer(now):
    decision = decide(Chain(Policy("low", 3600, 0)), "ack_timeout", now, NEXT)
    assert (decision.step, decision.reoffer_to, decision.withdraw_current, decision.next_deadline_at) == (
        1, None, False, None)


def test_a_decline_goes_to_the_next_partner_at_once_with_a_fresh_deadline(now):
    decision = decide(Chain(CRITICAL), "declined", now, NEXT)
    assert decision.reoffer_to == NEXT
    assert not decision.withdraw_current, "a declined offer is already closed"
    assert decision.next_deadline_at == now + timedelta(seconds=300)


def test_a_decline_with_nobody_left_leaves_nothing_standing_and_ends_the_chain(now):
    decision = decide(Chain(CRITICAL), "declined", now, None)
    assert (decision.reoffer_to, decision.next_deadline_at) == (None, None)


def test_an_undelivered_offer_is_withdrawn_even_with_nobody_to_reoffer_it_to(now):
    decision = decide(Chain(CRITICAL), "delivery_exhausted", now, None)
    assert decision.withdraw_current
    assert decision.next_deadline_at is None


def test_the_policy_snapshot_travels_with_the_chain_whatever_the_policy_is_now(now):
    chain = advanced(Chain(CRITICAL), decide(Chain(CRITICAL), "ack_timeout", now, NEXT))
    assert chain.policy is CRITICAL and chain.policy.version == 4


def test_reasons_that_do_not_escalate_a_running_offer_are_refused(now):
    for reason in ("no_match", "refer_anyway", "bogus"):
        with pytest.raises(ValueError):
            decide(Chain(CRITICAL), reason, now, NEXT)


def test_a_policy_names_each_field_it_cannot_accept():
    assert Policy("critical", 300, 3).problems() == {}
    assert set(Policy("urgent", 0, -1).problems()) == {"level", "ack_seconds", "max_reoffers"}


def test_the_built_in_policies_match_the_issue_and_each_level_has_one():
    from sanad.contracts.vocabulary import RISK_LEVELS
    from services.referral.escalation import DEFAULT_POLICIES
    assert set(DEFAULT_POLICIES) == set(RISK_LEVELS)
    assert [DEFAULT_POLICIES[level].ack_seconds for level in ("critical", "high", "medium")] == [300, 1800, 14400]
    assert all(policy.problems() == {} for policy in DEFAULT_POLICIES.values())


def test_urgency_follows_the_risk_levels_order():
    from services.referral.escalation import more_urgent
    assert more_urgent("critical", "medium") and more_urgent("high", "low")
    assert not more_urgent("medium", "critical") and not more_urgent("high", "high")
