"""Notify signs each webhook as Standard Webhooks says, records every attempt, and retries on schedule."""
import uuid

from nameko.testing.services import worker_factory

from sanad import webhooks
from sanad.contracts.events import parse
from services.notify.handlers import register_endpoint
from services.notify.service import NotifyService
from tests.service.conftest import outbox_events, rows
from tests.service.events import referral_created
from tests.support.receiver import Receiver


def notify(pools, outbox, keys):
    return worker_factory(NotifyService, db=pools["notify"], outbox=outbox, keys=keys)


def register(pools, keys, url, secret):
    partner_id = uuid.uuid4()
    with pools["notify"].transaction() as cur:
        register_endpoint(cur, keys, partner_id, url, secret)
    return partner_id


def test_a_new_referral_is_delivered_signed_and_recorded(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        event = referral_created(partner_id)
        notify(pools, outbox, keys).on_referral_created(event.to_message())

        [payload] = receiver.payloads()
        assert payload["data"]["referral_id"] == str(event.data["referral_id"])
        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
    [delivery] = rows(pools["notify"], "SELECT * FROM deliveries")
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
    [attempt] = rows(pools["notify"], "SELECT * FROM delivery_attempts")
    assert (attempt["outcome"], attempt["status_code"]) == ("delivered", 204)
    [(_, body)] = outbox_events(pools["notify"])
    assert parse(body).data["outcome"] == "delivered"
    stored_secret = rows(pools["notify"], "SELECT secret_sealed FROM endpoints")[0]["secret_sealed"]
    assert secret not in stored_secret, "webhook secrets are sealed at rest"


def test_a_partner_answering_500_is_retried_later_under_the_same_webhook_id(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 503) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify(pools, outbox, keys).on_referral_created(referral_created(partner_id).to_message())

    [delivery] = rows(pools["notify"], "SELECT * FROM deliveries")
    assert delivery["status"] == "pending"
    assert delivery["next_attempt_at"] > delivery["created_at"]
    [attempt] = rows(pools["notify"], "SELECT * FROM delivery_attempts")
    assert (attempt["outcome"], attempt["status_code"]) == ("retrying", 503)


def test_a_delivery_whose_lease_ran_out_is_taken_up_by_the_sweep(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        event = referral_created(partner_id)
        service = notify(pools, outbox, keys)
        # A worker claimed the delivery and died before sending it.
        from services.notify import handlers
        with pools["notify"].transaction() as cur:
            handlers.schedule_delivery(cur, parse(event.to_message()))
        with pools["notify"].transaction() as cur:
            cur.execute("UPDATE deliveries SET attempts = 1, lease_until = now() - interval '1 second'")
        service.retry_due()

        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
    [delivery] = rows(pools["notify"], "SELECT * FROM deliveries")
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
