"""Intake times each case from its receipt to the first news of each stage (docs/operations.md,
sanad_case_time_to_stage_seconds): triaged, referred, first delivered webhook, first partner answer. Repeated
or later news of a stage already reached is not timed again."""
import uuid
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY

from sanad.contracts.events import new_event
from sanad.contracts.vocabulary import lane_for
from tests.service.conftest import rows
from tests.service.test_intake_service import body_of, intake, intake_status, post_case, staff, triaged

STAGES = ("triaged", "referred", "first_delivery", "acknowledged")


def timed(stage, level="high"):
    labels = {"stage": stage, "level": level}
    return (REGISTRY.get_sample_value("sanad_case_time_to_stage_seconds_count", labels) or 0,
            REGISTRY.get_sample_value("sanad_case_time_to_stage_seconds_sum", labels) or 0)


def referral_created(case_id, reference, referral_id, at, level="high"):
    return new_event("referral.created", {
        "referral_id": referral_id, "case_id": case_id, "reference": reference, "partner_id": uuid.uuid4(),
        "partner_name": "Centre", "service": "counselling", "level": level, "governorate": "dhi_qar",
        "created_at": at,
    }, producer="referral", correlation_id=case_id, lane=lane_for(level))


def delivery_attempted(case_id, referral_id, outcome, attempt, at):
    return new_event("delivery.attempted", {
        "delivery_id": uuid.uuid5(referral_id, "delivery"), "webhook_id": f"msg_{referral_id.hex}",
        "referral_id": referral_id, "case_id": case_id, "partner_id": uuid.uuid4(), "attempt": attempt,
        "outcome": outcome, "status_code": 204 if outcome == "delivered" else 503, "latency_ms": 12.0,
        "attempted_at": at, "next_attempt_at": None,
    }, producer="notify", correlation_id=case_id)


def status_changed(case_id, reference, referral_id, status, previous, at):
    return new_event("referral.status_changed", {
        "referral_id": referral_id, "case_id": case_id, "reference": reference, "partner_id": uuid.uuid4(),
        "status": status, "previous_status": previous, "note_code": None, "changed_at": at, "changed_by": "partner",
    }, producer="referral", correlation_id=case_id)


@pytest.mark.parametrize("delivered", ["one event at a time", "in one batch"])
def test_each_stage_is_timed_once_from_receipt_at_its_first_news(pools, outbox, keys, delivered):
    service = intake(pools, outbox, keys)
    created = body_of(post_case(service, staff(pools, "operator")))
    case_id, reference = uuid.UUID(created["id"]), created["reference"]
    received_at = rows(pools["intake"], "SELECT received_at FROM cases WHERE id = %(id)s", {"id": case_id})[0][
        "received_at"]
    before = {stage: timed(stage) for stage in STAGES}
    first, second = uuid.uuid4(), uuid.uuid4()

    news = [
        triaged(case_id, reference, "high", keys=keys, at=received_at + timedelta(seconds=30)),
        # re-announced: not timed again
        triaged(case_id, reference, "high", keys=keys, at=received_at + timedelta(seconds=900)),
        referral_created(case_id, reference, first, received_at + timedelta(seconds=40)),
        referral_created(case_id, reference, second, received_at + timedelta(seconds=45)),
        delivery_attempted(case_id, first, "retrying", 1, received_at + timedelta(seconds=50)),
        delivery_attempted(case_id, first, "delivered", 2, received_at + timedelta(seconds=110)),
        delivery_attempted(case_id, second, "delivered", 1, received_at + timedelta(seconds=120)),
        status_changed(case_id, reference, first, "accepted", "offered", received_at + timedelta(seconds=400)),
        status_changed(case_id, reference, second, "declined", "offered", received_at + timedelta(seconds=500)),
    ]
    if delivered == "in one batch":  # the stages are read once for the batch, then kept in memory
        intake_status(pools, keys).on_case_status([event.to_message() for event in news])
    else:
        for event in news:
            intake_status(pools, keys).on_case_status([event.to_message()])

    expected = {"triaged": 30, "referred": 40, "first_delivery": 110, "acknowledged": 400}
    for stage, seconds in expected.items():
        count, total = timed(stage)
        assert count - before[stage][0] == 1, f"{stage} timed {count - before[stage][0]} times"
        assert abs(total - before[stage][1] - seconds) < 0.001, stage
