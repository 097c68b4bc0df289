"""When an offer that nobody acknowledged goes to the next partner and the on-duty supervisor. Pure.

Modelled on how on-call systems escalate alerts. Each risk level has a policy: acknowledge within
`ack_seconds`, else escalate, re-offering to the next matching partner at most `max_reoffers` times.
Every escalation pages the supervisor (a referral.escalated event); once the re-offers are used up, one
last deadline pages the supervisor a final time and the chain stops, the offer left with the partner and
the case with the supervisor.

A chain starts when a need of a case is first offered and takes a snapshot of its policy, so changing the
policy later never alters escalations already running. Everything here is a function of (state, now).
"""
from dataclasses import dataclass
from datetime import timedelta

from sanad.contracts.vocabulary import ESCALATION_REASONS, RISK_LEVELS

# Reasons that end a partner's chance at the offer and so call for the next partner.
REOFFER_REASONS = frozenset({"ack_timeout", "declined", "delivery_exhausted"})

MAX_ACK_SECONDS = 7 * 24 * 3600
MAX_REOFFERS = 20


@dataclass(frozen=True)
class Policy:
    level: str
    ack_seconds: int
    max_reoffers: int
    version: int = 1

    def problems(self) -> dict:
        """Field -> messages for a policy that must not be saved."""
        problems = {}
        if self.level not in RISK_LEVELS:
            problems["level"] = [f"Must be one of: {', '.join(RISK_LEVELS)}."]
        if not 1 <= self.ack_seconds <= MAX_ACK_SECONDS:
            problems["ack_seconds"] = [f"Must be from 1 to {MAX_ACK_SECONDS}."]
        if not 0 <= self.max_reoffers <= MAX_REOFFERS:
            problems["max_reoffers"] = [f"Must be from 0 to {MAX_REOFFERS}."]
        return problems


@dataclass(frozen=True)
class Chain:
    """One need of one case being offered, partner after partner, under one policy snapshot."""
    policy: Policy
    steps_taken: int = 0


@dataclass(frozen=True)
class Decision:
    step: int                  # this escalation's number in its chain, from 1
    reoffer_to: object         # the next partner, or None
    withdraw_current: bool     # take the offer back from the partner who had it
    next_deadline_at: object   # when the offer left standing escalates again, or None: the chain ends


# The policies `sanad migrate` installs (version 1 in escalation_policies). Version 0 here stands in for a
# level whose row is missing, so a lost row can never stop a referral from being chased.
DEFAULT_POLICIES = {
    "critical": Policy("critical", ack_seconds=5 * 60, max_reoffers=3, version=0),
    "high": Policy("high", ack_seconds=30 * 60, max_reoffers=3, version=0),
    "medium": Policy("medium", ack_seconds=4 * 3600, max_reoffers=2, version=0),
    "low": Policy("low", ack_seconds=72 * 3600, max_reoffers=1, version=0),
}


def more_urgent(level, than) -> bool:
    """Whether risk `level` is more urgent than `than` (a case's level raised by staff, say)."""
    return RISK_LEVELS.index(level) > RISK_LEVELS.index(than)


def first_deadline(policy, offered_at):
    return offered_at + timedelta(seconds=policy.ack_seconds)


def may_reoffer(chain, reason) -> bool:
    """Whether this escalation may look for the next partner (ask before searching the directory)."""
    return reason in REOFFER_REASONS and chain.steps_taken < chain.policy.max_reoffers


def decide(chain, reason, now, next_partner=None) -> Decision:
    """What one escalation of `chain` for `reason` does. `next_partner` is the best partner not yet
    offered this need (None if there is none); it is used only when a re-offer is allowed."""
    if reason not in REOFFER_REASONS:
        raise ValueError(f"{reason!r} does not escalate a running offer (one of {sorted(REOFFER_REASONS)})")
    assert reason in ESCALATION_REASONS
    step = chain.steps_taken + 1
    reoffer_to = next_partner if may_reoffer(chain, reason) else None
    # A partner who never received the offer cannot act on it; one who merely did not answer keeps it
    # until someone else has it, because a late acknowledgement is better than none.
    withdraw = reason == "delivery_exhausted" or (reason == "ack_timeout" and reoffer_to is not None)
    offer_left_standing = reoffer_to is not None or (reason == "ack_timeout" and not withdraw)
    next_at = None
    if offer_left_standing and step <= chain.policy.max_reoffers:
        next_at = now + timedelta(seconds=chain.policy.ack_seconds)
    return Decision(step=step, reoffer_to=reoffer_to, withdraw_current=withdraw, next_deadline_at=next_at)


def advanced(chain, decision) -> Chain:
    """The chain after `decision`: the policy snapshot travels on unchanged."""
    return Chain(policy=chain.policy, steps_taken=decision.step)
