"""Notify on a real database and real HTTP: signs each webhook as Standard Webhooks says (checked by the
receiver with both reference libraries), records every attempt, retries on schedule, stops early on
answers that will not change, buries what it cannot deliver, disables what keeps failing, pages the
supervisors, rotates secrets and replays."""
import json
import subprocess
import sys
import threading
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import eventlet
import eventlet.event
import psycopg2
import psycopg2.errors
import pytest
from nameko.testing.services import worker_factory

from sanad import webhooks
from sanad.contracts.events import new_event, parse
from sanad.platform.outbox import OutboxWriter
from services.notify import handlers, policy
from services.notify.dispatch import AttemptPool
from services.notify.handlers import Dispatch, register_endpoint, register_oncall_endpoint, rotate_secret
from services.notify.policy import RetryPolicy
from services.notify.sender import Sender
from services.notify.service import CriticalNotifyService, NotifyService
from services.notify.settings import NotifySettings
from services.notify.urls import UnsafeUrl, UrlPolicy
from tests.service.conftest import outbox_events, rows
from tests.service.events import referral_created, referral_withdrawn
from tests.support.receiver import Receiver, Reply

LOOPBACK_ALLOWED = UrlPolicy(require_https=False, allow_private=True)
ROOT = Path(__file__).resolve().parents[2]


def settings(**overrides):
    return NotifySettings(**{"urls": LOOPBACK_ALLOWED, "public_url": "https://sanad.example.org",
                             "connect_timeout": 2.0, "read_timeout": 2.0, "attempt_deadline": 5.0,
                             "lease_seconds": 30.0, **overrides})


def dispatch_for(config):
    sender = Sender(config.urls, config.connect_timeout, config.read_timeout, config.attempt_deadline)
    return Dispatch(settings=config, send=sender.post, resolve=sender.resolve,
                    pool=AttemptPool(config.concurrency, config.per_endpoint))


class Notify:
    """The service under test with its real dependencies; `settle()` waits for its attempts to end."""

    def __init__(self, pools, outbox, keys, service_class=NotifyService, **overrides):
        self.dispatch = dispatch_for(settings(**overrides))
        self.service = worker_factory(service_class, db=pools["notify"], outbox=outbox, keys=keys,
                                      webhooks=self.dispatch)

    def offer(self, event):
        message = event.to_message()
        # The normal lane takes its offers in batches; the critical lane one at a time.
        self.service.on_referral_created(message if self.service.lane == "critical" else [message])
        self.settle()

    def page(self, event):
        self.service.on_referral_escalated(event.to_message())
        self.settle()

    def sweep(self):
        """A sweep, and the gauges measured after it."""
        self.service.retry_due()
        self.settle()
        self.service.measure()

    def settle(self):
        assert self.dispatch.pool.wait(timeout=30), "attempts still running after 30 s"


def register(pools, keys, url, secret):
    partner_id = uuid.uuid4()
    with pools["notify"].transaction() as cur:
        register_endpoint(cur, keys, partner_id, url, secret, url_policy=LOOPBACK_ALLOWED)
    return partner_id


def delivery_of(pools, event):
    [delivery] = rows(pools["notify"], "SELECT * FROM deliveries WHERE referral_id = %(id)s",
                      {"id": event.data["referral_id"]})
    return delivery


def claim(pools, delivery_id, config):
    """Lease a delivery as a worker does before an attempt."""
    with pools["notify"].transaction() as cur:
        return handlers.claim(cur, delivery_id, config)


def attempts_of(pools, delivery_id):
    return rows(pools["notify"], "SELECT * FROM delivery_attempts WHERE delivery_id = %(id)s ORDER BY attempt",
                {"id": delivery_id})


def events_of_type(pools, event_type):
    return [(key, parse(body)) for key, body in outbox_events(pools["notify"]) if body["type"] == event_type]


def make_due(pools):
    with pools["notify"].transaction() as cur:
        cur.execute("UPDATE deliveries SET next_attempt_at = now() - interval '1 second' WHERE status = 'pending'")


def escalated(level="critical", referral_id=None, reason="ack_timeout"):
    case_id = uuid.uuid4()
    return new_event("referral.escalated", {
        "referral_id": referral_id if referral_id is not None else uuid.uuid4(), "case_id": case_id,
        "reference": f"SND-{case_id.hex[:4].upper()}-TEST", "level": level, "service": "counselling",
        "governorate": "dhi_qar", "reason": reason, "step": 2, "reoffered_to": None,
        "escalated_at": datetime.now(timezone.utc),
    }, producer="referral", lane="critical" if level == "critical" else "normal")


# Delivering and retrying

def test_a_new_referral_is_delivered_signed_minimal_and_recorded(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        event = referral_created(partner_id)
        Notify(pools, outbox, keys).offer(event)

        [payload] = receiver.payloads()
        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
        assert receiver.rejected == 0
    referral_id = str(event.data["referral_id"])
    assert payload["type"] == "referral.offered"
    assert payload["data"] == {
        "referral_id": referral_id, "case_reference": event.data["reference"], "risk_level": "medium",
        "service": "counselling", "governorate": "dhi_qar",
        "details_url": f"https://sanad.example.org/partner/v1/referrals/{referral_id}",
    }
    delivery = delivery_of(pools, event)
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 1)
    [attempt] = attempts_of(pools, delivery["id"])
    assert (attempt["outcome"], attempt["status_code"]) == ("delivered", 204)
    [(key, announced)] = events_of_type(pools, "delivery.attempted")
    assert announced.data["outcome"] == "delivered" and key == "delivery.attempted.normal"
    stored = rows(pools["notify"], "SELECT secret_sealed FROM endpoint_secrets")[0]["secret_sealed"]
    assert secret not in stored, "webhook secrets are sealed at rest"


def test_an_attempt_hands_its_events_over_as_it_commits_them_after_its_worker_has_ended(pools, keys):
    added = []
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        Notify(pools, OutboxWriter(added), keys).offer(event)

    assert [item.body["type"] for item in added] == ["delivery.attempted"]


def test_the_same_referral_event_twice_makes_one_delivery(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys)
        notify.offer(event)
        notify.offer(event)
        assert len(receiver.webhook_ids()) == 1
    assert len(rows(pools["notify"], "SELECT id FROM deliveries")) == 1


@pytest.mark.parametrize("service_class", [NotifyService, CriticalNotifyService], ids=["normal", "critical"])
def test_another_event_for_a_referral_that_has_its_delivery_sends_nothing_again(pools, outbox, keys, service_class):
    # Not the same event redelivered (the inbox drops that) but another one offering the same referral: its
    # webhook id is taken, so its insert does nothing and claiming the id it was given finds nothing.
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        first = referral_created(register(pools, keys, receiver.url, secret))
        again = new_event("referral.created", first.data, producer="referral", lane=first.lane)
        notify = Notify(pools, outbox, keys, service_class=service_class)
        notify.offer(first)
        notify.offer(again)
        assert receiver.webhook_ids() == [f"msg_{first.data['referral_id'].hex}"]
    [delivery] = rows(pools["notify"], "SELECT id, attempts FROM deliveries")
    assert delivery["attempts"] == 1
    assert notify.dispatch.pool.in_flight() == {}, "the second offer's slot was given back"


def test_a_partner_answering_503_is_retried_later_under_the_same_webhook_id(pools, outbox, keys):
    secret = webhooks.generate_secret()
    answers = iter([503, 204])
    with Receiver(secret, respond=lambda webhook_id, payload: next(answers)) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys)
        notify.offer(event)
        delivery = delivery_of(pools, event)
        assert delivery["status"] == "pending"
        assert delivery["next_attempt_at"] > delivery["created_at"]

        notify.sweep()
        assert delivery_of(pools, event)["status"] == "pending", "the retry waits for its time"
        make_due(pools)
        notify.sweep()

        webhook_id = f"msg_{event.data['referral_id'].hex}"
        assert receiver.attempts_for(webhook_id) == [503, 204]
    assert [(a["outcome"], a["status_code"]) for a in attempts_of(pools, delivery["id"])] == [
        ("retrying", 503), ("delivered", 204)]
    assert delivery_of(pools, event)["status"] == "delivered"


def test_retry_after_on_a_429_puts_the_next_attempt_no_sooner_than_asked(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: Reply(429, retry_after="600")) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        Notify(pools, outbox, keys).offer(event)
    delivery = delivery_of(pools, event)
    [attempt] = attempts_of(pools, delivery["id"])
    assert (delivery["status"], attempt["status_code"]) == ("pending", 429)
    assert delivery["next_attempt_at"] >= attempt["attempted_at"] + timedelta(seconds=600)


@pytest.mark.parametrize("reply", [Reply(500), Reply(204, delay=3.0), Reply(drop=True)],
                         ids=["500", "timeout", "dropped-connection"])
def test_server_errors_timeouts_and_dropped_connections_are_retried(pools, outbox, keys, reply):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: reply) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        Notify(pools, outbox, keys, read_timeout=1.0, attempt_deadline=3.0).offer(event)
    delivery = delivery_of(pools, event)
    [attempt] = attempts_of(pools, delivery["id"])
    assert delivery["status"] == "pending" and attempt["outcome"] == "retrying"


def test_a_delivery_whose_lease_ran_out_is_taken_up_by_the_sweep(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        # A worker claimed the delivery and died before sending it.
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, parse(event.to_message()), "https://sanad.example.org")
        with pools["notify"].transaction() as cur:
            cur.execute("UPDATE deliveries SET attempts = 1, lease_until = now() - interval '1 second'")
        Notify(pools, outbox, keys).sweep()

        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
    delivery = delivery_of(pools, event)
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)


def test_a_late_result_from_a_worker_that_lost_its_lease_is_kept_on_record_and_changes_nothing_else(
        pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, parse(event.to_message()), "https://sanad.example.org")
        config = settings()
        [stale] = claim(pools, delivery_of(pools, event)["id"], config)
        with pools["notify"].transaction() as cur:  # the lease ran out and another worker claimed it
            cur.execute("UPDATE deliveries SET attempts = attempts + 1")

        assert handlers.attempt(pools["notify"], outbox, keys, stale, dispatch_for(config)) is None
    [attempt] = attempts_of(pools, stale["id"])
    assert (attempt["attempt"], attempt["outcome"], attempt["status_code"]) == (1, "superseded", 204)
    assert delivery_of(pools, event)["status"] == "pending", "the delivery is the new holder's to finish"
    assert outbox_events(pools["notify"]) == []


def test_results_recorded_together_commit_in_one_transaction_each_recorded_as_if_alone(pools, outbox, keys):
    secret = webhooks.generate_secret()
    config = settings()
    offers = [referral_created(register(pools, keys, "http://127.0.0.1:9/hook", secret)) for _ in range(3)]
    claimed = []
    for event in offers:
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, parse(event.to_message()), "https://sanad.example.org")
        claimed += claim(pools, delivery_of(pools, event)["id"], config)
    now = datetime.now(timezone.utc)
    delivered = handlers.Tried(policy.Result(204, None), "delivered", 3.0, "", now, None)
    retrying = handlers.Tried(policy.Result(503, None), "retrying", 5.0, "", now, now + timedelta(seconds=30))

    results = handlers.record_attempts(pools["notify"], outbox, config,
                                       list(zip(claimed, [retrying, delivered, delivered])))

    assert [result.outcome for result in results] == ["retrying", "delivered", "delivered"]
    deliveries = [delivery_of(pools, event) for event in offers]
    assert [delivery["status"] for delivery in deliveries] == ["pending", "delivered", "delivered"]
    [xmin] = {row["xmin"] for row in rows(pools["notify"], "SELECT xmin::text FROM deliveries")}
    assert [attempt["outcome"] for delivery in deliveries for attempt in attempts_of(pools, delivery["id"])] == [
        "retrying", "delivered", "delivered"]
    announced = [event.data["outcome"] for _, event in events_of_type(pools, "delivery.attempted")]
    assert sorted(announced) == ["delivered", "delivered", "retrying"]


class BlinkingPool:
    """The real pool, whose next `failures` transactions fail as if the database had just restarted."""

    def __init__(self, pool, failures):
        self.pool, self.failures = pool, failures

    def transaction(self):
        if self.failures:
            self.failures -= 1
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return self.pool.transaction()


@contextmanager
def a_claimed_offer(pools, keys, config):
    """A partner's receiver, an offer to it scheduled and its delivery claimed: (receiver, event, claimed)."""
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, parse(event.to_message()), "https://sanad.example.org")
        [claimed] = claim(pools, delivery_of(pools, event)["id"], config)
        yield receiver, event, claimed


def test_an_attempt_lets_go_of_its_endpoint_when_the_partner_has_answered_before_recording(pools, outbox, keys):
    config = settings()
    with a_claimed_offer(pools, keys, config) as (receiver, event, claimed):
        seen_then = []
        attempted = handlers.attempt(
            pools["notify"], outbox, keys, claimed, dispatch_for(config),
            request_ended=lambda: seen_then.append((len(receiver.requests), delivery_of(pools, event)["status"])))
    assert seen_then == [(1, "pending")], "once: after the partner's answer, before the result was recorded"
    assert attempted.outcome == "delivered" and delivery_of(pools, event)["status"] == "delivered"


def test_a_database_blink_after_the_send_is_retried_so_the_webhook_is_not_sent_again(pools, outbox, keys):
    config = settings()
    with a_claimed_offer(pools, keys, config) as (receiver, event, claimed):
        pauses = []
        attempted = handlers.attempt(BlinkingPool(pools["notify"], failures=2), outbox, keys, claimed,
                                     dispatch_for(config), pause=pauses.append)
        assert len(receiver.requests) == 1
    assert attempted.outcome == "delivered" and len(pauses) == 2
    assert delivery_of(pools, event)["status"] == "delivered"


def test_recording_gives_up_when_the_lease_would_run_out_and_leaves_the_delivery_to_the_next_worker(
        pools, outbox, keys):
    config = settings(lease_seconds=1.0, attempt_deadline=0.5)
    with a_claimed_offer(pools, keys, config) as (receiver, event, claimed):
        later = claimed["lease_until"] + timedelta(seconds=1)
        moments = iter([claimed["lease_until"] - timedelta(seconds=0.9)])  # time enough to send, then none
        with pytest.raises(psycopg2.OperationalError):
            handlers.attempt(BlinkingPool(pools["notify"], failures=1), outbox, keys, claimed,
                             dispatch_for(config), now=lambda: next(moments, later), pause=lambda seconds: None)
        assert len(receiver.requests) == 1
    assert delivery_of(pools, event)["status"] == "pending"


def test_an_attempt_left_with_less_of_its_lease_than_a_request_may_take_is_not_sent(pools, outbox, keys):
    # It waited for its endpoint's requests: sending now could outlast the lease, and another worker might
    # send the same webhook meanwhile.
    config = settings(lease_seconds=60.0, attempt_deadline=23.0)
    with a_claimed_offer(pools, keys, config) as (receiver, event, claimed):
        ended = []
        attempted = handlers.attempt(pools["notify"], outbox, keys, claimed, dispatch_for(config),
                                     request_ended=lambda: ended.append(True),
                                     now=lambda: claimed["lease_until"] - timedelta(seconds=22))
        assert attempted is None and receiver.requests == [] and ended == []
    delivery = delivery_of(pools, event)
    assert delivery["status"] == "pending" and delivery["lease_until"] == claimed["lease_until"], "left to the sweep"


# Stopping early, dead letters, exhaustion

def test_a_404_stops_at_once_buries_the_delivery_and_announces_it_exhausted(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 404) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        event = referral_created(partner_id, level="critical")
        Notify(pools, outbox, keys, service_class=CriticalNotifyService).offer(event)
    delivery = delivery_of(pools, event)
    assert (delivery["status"], delivery["attempts"], delivery["lane"]) == ("failed", 1, "critical")
    [dead] = rows(pools["notify"], "SELECT * FROM dead_deliveries")
    assert (dead["delivery_id"], dead["last_error"], dead["replayed_at"]) == (delivery["id"], "status 404", None)
    [(key, exhausted)] = events_of_type(pools, "notification.exhausted")
    assert key == "notification.exhausted.critical", "referral-critical must hear of it on the critical lane"
    assert exhausted.data["referral_id"] == event.data["referral_id"]
    assert exhausted.data["partner_id"] == partner_id
    assert (exhausted.data["attempts"], exhausted.data["last_status_code"]) == (1, 404)


def test_a_tls_failure_stops_at_once(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:  # plain HTTP: a TLS handshake with it fails
        event = referral_created(register(pools, keys, receiver.url.replace("http://", "https://"), secret))
        Notify(pools, outbox, keys).offer(event)
    delivery = delivery_of(pools, event)
    [attempt] = attempts_of(pools, delivery["id"])
    assert (delivery["status"], attempt["error"]) == ("failed", "tls_error")
    assert len(events_of_type(pools, "notification.exhausted")) == 1


def test_after_the_last_retry_the_delivery_is_dead_and_announced_exhausted_once(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 503) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys, retry=RetryPolicy(delays=(0, 0)))
        notify.offer(event)
        notify.sweep()
        notify.sweep()
        notify.sweep()  # nothing left to try
        assert receiver.attempts_for(f"msg_{event.data['referral_id'].hex}") == [503, 503, 503]
    assert [a["outcome"] for a in attempts_of(pools, delivery_of(pools, event)["id"])] == [
        "retrying", "retrying", "failed"]
    assert delivery_of(pools, event)["status"] == "failed"
    [(_, exhausted)] = events_of_type(pools, "notification.exhausted")
    assert (exhausted.data["attempts"], exhausted.data["last_status_code"]) == (3, 503)
    assert len(rows(pools["notify"], "SELECT * FROM dead_deliveries")) == 1


def test_an_endpoint_whose_deliveries_keep_failing_is_disabled_and_the_supervisors_alerted(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 404) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys, disable_after=2)
        first, second, third = (referral_created(partner_id) for _ in range(3))
        notify.offer(first)
        assert rows(pools["notify"], "SELECT enabled FROM endpoints")[0]["enabled"]
        notify.offer(second)
        [endpoint] = rows(pools["notify"], "SELECT * FROM endpoints")
        assert not endpoint["enabled"] and "2 deliveries in a row" in endpoint["disabled_reason"]
        [alert] = rows(pools["notify"], "SELECT * FROM alerts")
        assert (alert["kind"], alert["endpoint_id"]) == ("endpoint_disabled", partner_id)

        notify.offer(third)
        assert len(receiver.requests) == 2, "a disabled endpoint is not contacted"
    [attempt] = attempts_of(pools, delivery_of(pools, third)["id"])
    assert (attempt["outcome"], attempt["error"]) == ("failed", "endpoint_disabled")
    assert len(events_of_type(pools, "notification.exhausted")) == 3, "referral re-offers all three"
    assert len(rows(pools["notify"], "SELECT * FROM alerts")) == 1


def test_an_endpoint_that_answers_410_gone_is_disabled_at_once_and_the_supervisors_alerted(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 410) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys, disable_after=3)
        first, second = referral_created(partner_id), referral_created(partner_id)
        notify.offer(first)
        [endpoint] = rows(pools["notify"], "SELECT * FROM endpoints")
        assert not endpoint["enabled"] and "410 Gone" in endpoint["disabled_reason"]
        [alert] = rows(pools["notify"], "SELECT * FROM alerts")
        assert (alert["kind"], alert["endpoint_id"]) == ("endpoint_disabled", partner_id)
        notify.offer(second)
        assert len(receiver.requests) == 1, "an endpoint that said it is gone is not contacted again"
    [attempt] = attempts_of(pools, delivery_of(pools, first)["id"])
    assert (attempt["outcome"], attempt["status_code"]) == ("failed", 410)
    assert len(events_of_type(pools, "notification.exhausted")) == 2, "referral re-offers both"


def test_a_delivered_webhook_resets_the_count_of_failures_in_a_row(pools, outbox, keys):
    secret = webhooks.generate_secret()
    answers = iter([404, 204, 404])
    with Receiver(secret, respond=lambda webhook_id, payload: next(answers)) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys, disable_after=2)
        for _ in range(3):
            notify.offer(referral_created(partner_id))
    [endpoint] = rows(pools["notify"], "SELECT * FROM endpoints")
    assert endpoint["enabled"] and endpoint["consecutive_exhausted"] == 1


def test_an_endpoint_whose_last_three_attempts_failed_counts_as_failing_until_one_succeeds(pools, outbox, keys):
    from prometheus_client import REGISTRY
    secret = webhooks.generate_secret()
    answers = iter([503, 503, 503, 204])
    with Receiver(secret, respond=lambda webhook_id, payload: next(answers)) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys, retry=RetryPolicy(delays=(60, 60, 60)))
        notify.offer(referral_created(partner_id))
        make_due(pools)
        notify.sweep()
        assert handlers.endpoint_states(pools["notify"]) == {"enabled": 1, "disabled": 0, "failing": 0}
        make_due(pools)
        notify.sweep()
        assert handlers.endpoint_states(pools["notify"]) == {"enabled": 1, "disabled": 0, "failing": 1}
        notify.sweep()  # nothing due: the sweep only reads the gauges
        assert REGISTRY.get_sample_value("sanad_partner_endpoints", {"state": "failing"}) == 1
        make_due(pools)
        notify.sweep()
        assert len(receiver.received) == 1
    assert handlers.endpoint_states(pools["notify"])["failing"] == 0


def test_sanad_s_connections_never_compile_queries_just_in_time(pools):
    """Planned without statistics, the endpoint gauge's query once cost more than jit_above_cost and was
    compiled at every reading (82 ms each, every 5 s). Sanad's connections turn JIT off."""
    for pool in pools.values():
        with pool.transaction() as cur:
            cur.execute("SHOW jit")
            assert cur.fetchone()["jit"] == "off"
        with pool.transaction() as cur:
            cur.execute("SHOW search_path")
            assert cur.fetchone()["search_path"].endswith(",public"), "the service's schema is still first"


# Outgoing URLs

def test_a_private_address_is_refused_before_sending_when_not_allowed(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        Notify(pools, outbox, keys, urls=UrlPolicy(require_https=False, allow_private=False)).offer(event)
        assert receiver.requests == []
    [attempt] = attempts_of(pools, delivery_of(pools, event)["id"])
    assert (attempt["outcome"], attempt["error"]) == ("failed", "url_refused")


def test_a_name_resolving_to_a_private_address_is_refused_by_the_sender_itself(keys):
    sender = Sender(UrlPolicy(require_https=False, allow_private=False), 2.0, 2.0, 5.0)
    with Receiver(webhooks.generate_secret()) as receiver:
        result, _, _ = sender.post(receiver.url.replace("127.0.0.1", "localhost"), b"{}", {})
        assert receiver.requests == []
    assert result.error == "url_refused"


@pytest.mark.parametrize("url,policy", [
    ("http://partner.example.org/hook", UrlPolicy(require_https=True, allow_private=False)),
    ("https://127.0.0.1/hook", UrlPolicy(require_https=True, allow_private=False)),
    ("https://169.254.169.254/latest/meta-data", UrlPolicy(require_https=True, allow_private=False)),
    ("https://localhost/hook", UrlPolicy(require_https=False, allow_private=False)),
], ids=["http-outside-development", "loopback", "cloud-metadata", "name-of-loopback"])
def test_registration_refuses_urls_notify_would_never_send_to(pools, keys, url, policy):
    with pytest.raises(UnsafeUrl), pools["notify"].transaction() as cur:
        register_endpoint(cur, keys, uuid.uuid4(), url, webhooks.generate_secret(), url_policy=policy)
    assert rows(pools["notify"], "SELECT * FROM endpoints") == []


# Secret rotation

def test_during_rotation_partners_verify_with_either_secret_and_after_it_only_the_new_one(pools, outbox, keys):
    old, new = webhooks.generate_secret(), webhooks.generate_secret()
    with Receiver(old) as receiver:
        partner_id = register(pools, keys, receiver.url, old)
        with pools["notify"].transaction() as cur:
            rotate_secret(cur, keys, partner_id, new, overlap=timedelta(hours=24))
        notify = Notify(pools, outbox, keys)
        notify.offer(referral_created(partner_id))  # verified with the old secret
        receiver.use_secret(new)
        notify.offer(referral_created(partner_id))  # and with the new one
        assert (len(receiver.received), receiver.rejected) == (2, 0)

        with pools["notify"].transaction() as cur:  # the overlap has ended
            cur.execute("UPDATE endpoint_secrets SET expires_at = now() - interval '1 second' "
                        "WHERE expires_at IS NOT NULL")
        receiver.use_secret(old)
        notify.offer(referral_created(partner_id))
        assert receiver.rejected == 1, "the old secret no longer signs"
        receiver.use_secret(new)
        notify.offer(referral_created(partner_id))
        assert len(receiver.received) == 3


def test_rotating_the_secret_of_an_unknown_endpoint_is_refused(pools, keys):
    with pytest.raises(LookupError), pools["notify"].transaction() as cur:
        rotate_secret(cur, keys, uuid.uuid4(), webhooks.generate_secret(), overlap=timedelta(hours=1))


def test_reseal_moves_webhook_secrets_onto_a_new_key_and_webhooks_still_verify(pools, outbox, keys):
    from sanad.crypto import Keys
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        rotated = Keys(data=keys.data.rotated(), transport=keys.transport, lookup=keys.lookup)
        assert handlers.reseal(pools["notify"], rotated.data, batch=1) == {"endpoint_secrets": 1}
        assert handlers.reseal(pools["notify"], rotated.data) == {"endpoint_secrets": 0}
        [stored] = [row["secret_sealed"] for row in rows(pools["notify"], "SELECT secret_sealed FROM endpoint_secrets")]
        assert not rotated.data.needs_reseal(stored), "the secret is sealed under the new primary key"
        Notify(pools, outbox, rotated).offer(referral_created(partner_id))
        assert len(receiver.received) == 1 and receiver.rejected == 0


# Concurrency

@contextmanager
def partner_holding_answers(pools, outbox, keys, **notify_settings):
    """A registered partner that holds every webhook unanswered until `release` is set, and the notify
    under test: (receiver, partner id, notify, release). Leaving the block lets every answer go and waits
    for notify's attempts to end, before the partner goes away."""
    release = threading.Event()
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: Reply(204, hold=release)) as partner:
        notify = Notify(pools, outbox, keys, **notify_settings)
        try:
            yield partner, register(pools, keys, partner.url, secret), notify, release
        finally:
            release.set()
            notify.settle()


def test_a_new_webhook_is_recorded_and_leased_in_one_transaction_then_sent_at_once(pools, outbox, keys):
    with partner_holding_answers(pools, outbox, keys) as (partner, partner_id, notify, _):
        event = referral_created(partner_id)
        notify.service.on_referral_created([event.to_message()])
        assert partner.wait_until(lambda r: r.holding == 1, timeout=10), "the webhook went out at once"
        [both] = rows(pools["notify"], """
            SELECT d.xmin::text = p.xmin::text AS same, d.attempts, d.lease_until IS NOT NULL AS leased
            FROM deliveries d, processed_events p WHERE d.referral_id = %(referral)s AND p.event_id = %(event)s
        """, {"referral": event.data["referral_id"], "event": str(event.id)})
        assert both == {"same": True, "attempts": 1, "leased": True}, "leased by the transaction that recorded it"
    assert delivery_of(pools, event)["status"] == "delivered"


def test_a_webhook_the_pool_has_no_room_for_is_left_unleased_for_the_sweep(pools, outbox, keys):
    with partner_holding_answers(pools, outbox, keys, concurrency=4, per_endpoint=1) as (
            partner, partner_id, notify, release):
        waiting = referral_created(partner_id)
        notify.service.on_referral_created([referral_created(partner_id).to_message()])
        notify.service.on_referral_created([waiting.to_message()])
        assert partner.wait_until(lambda r: r.holding == 1, timeout=10)
        delivery = delivery_of(pools, waiting)
        assert (delivery["attempts"], delivery["lease_until"]) == (0, None)
        assert notify.dispatch.pool.in_flight() == {str(partner_id): 1}, "no slot kept for it"
        release.set()
        notify.settle()
        notify.sweep()
    assert delivery_of(pools, waiting)["status"] == "delivered"


def test_offers_waiting_together_are_recorded_in_one_transaction_and_as_many_sent_at_once_as_there_is_room(
        pools, outbox, keys):
    with partner_holding_answers(pools, outbox, keys, concurrency=4, per_endpoint=2) as (
            partner, partner_id, notify, release):
        offers = [referral_created(partner_id) for _ in range(5)]
        notify.service.on_referral_created([offer.to_message() for offer in offers])
        assert partner.wait_until(lambda r: r.holding == 2, timeout=10), "the endpoint's two slots went at once"
        recorded = rows(pools["notify"], "SELECT xmin::text AS tx, lease_until FROM deliveries")
        assert len(recorded) == 5 and len({d["tx"] for d in recorded}) == 1, "one transaction, one commit"
        assert sum(d["lease_until"] is not None for d in recorded) == 2, "the rest left unleased for the sweep"
        release.set()
        notify.settle()
        for _ in range(3):
            notify.sweep()
    assert [delivery_of(pools, offer)["status"] for offer in offers] == ["delivered"] * 5
    assert len(partner.received) == 5


def test_a_slow_partner_does_not_hold_up_webhooks_to_others(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with partner_holding_answers(pools, outbox, keys, concurrency=6, per_endpoint=2, read_timeout=20.0,
                                 attempt_deadline=25.0, lease_seconds=60.0) as (slow, slow_partner, notify, release), \
            Receiver(secret) as quick:
        quick_partner = register(pools, keys, quick.url, secret)
        for _ in range(7):
            notify.service.on_referral_created([referral_created(slow_partner).to_message()])
        notify.service.retry_due()
        assert slow.wait_until(lambda r: r.holding == 2, timeout=10)
        notify.service.on_referral_created([referral_created(quick_partner).to_message()])
        assert quick.wait_for(lambda got: len(got) == 1, timeout=10), "held up behind the slow partner"
        assert slow.holding == 2, "no more than its share of the requests went to the slow partner"
        assert notify.dispatch.pool.in_flight()[str(slow_partner)] == 4, "two sending, two claimed to follow"
        release.set()
        notify.settle()
        for _ in range(3):
            notify.sweep()
        assert len(slow.received) == 7


def test_one_sweep_works_through_a_backlog_larger_than_an_endpoints_share_of_the_pool(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        with pools["notify"].transaction() as cur:
            for _ in range(6):
                handlers.schedule_offer(cur, parse(referral_created(partner_id).to_message()), "https://x.example")
        Notify(pools, outbox, keys, concurrency=4, per_endpoint=1).sweep()
        assert len(receiver.received) == 6, "the sweep claimed again as the endpoint's one slot came free"



def test_a_sweep_that_finds_more_attempts_running_than_the_pool_holds_waits_for_room(pools, outbox, keys):
    # Offers take slots while a sweep is claiming, so the sweep's next turn can find the pool over-full.
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, parse(referral_created(partner_id).to_message()), "https://x.example")
        notify = Notify(pools, outbox, keys, concurrency=2, per_endpoint=2)
        pool, answered, elsewhere = notify.dispatch.pool, eventlet.event.Event(), uuid.uuid4()
        for _ in range(3):
            eventlet.spawn(pool.run, elsewhere, lambda request_ended: answered.wait())
        eventlet.sleep(0)
        assert pool.free() == -1
        eventlet.spawn_after(0.2, answered.send)
        notify.sweep()
        assert len(receiver.received) == 1, "the sweep spun without yielding, so no attempt could end"

CLAIMER = """
import json, sys
from services.notify import handlers
from services.notify.settings import NotifySettings
from sanad.platform.pool import Pool
pool = Pool(sys.argv[1], size=1, schema="notify")
settings = NotifySettings(per_endpoint=1000, lease_seconds=600)
with pool.transaction() as cur:  # connected before the start, so neither begins a connection behind
    cur.execute("SELECT 1")
print("ready", flush=True)
sys.stdin.readline()  # both claimers start together, once both are ready
claimed = []
while True:
    rows = handlers.claim_due(pool, "normal", 3, {}, settings)
    claimed += [str(row["id"]) for row in rows]
    if not rows:
        with pool.transaction() as cur:
            cur.execute("SELECT count(*) AS left FROM deliveries WHERE lease_until IS NULL")
            if cur.fetchone()["left"] == 0:
                break
print(json.dumps(claimed))
"""


def test_two_claimers_racing_on_the_real_database_never_claim_the_same_delivery(pools, database_url):
    partner_id = uuid.uuid4()
    with pools["notify"].transaction() as cur:
        for _ in range(300):
            handlers.schedule_offer(cur, parse(referral_created(partner_id).to_message()), "https://x.example")
    claimers = [subprocess.Popen([sys.executable, "-c", CLAIMER, database_url], cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True) for _ in range(2)]
    for claimer in claimers:  # a claimer still starting up when the other began found nothing left
        assert claimer.stdout.readline().strip() == "ready"
    for claimer in claimers:
        claimer.stdin.write("go\n")
        claimer.stdin.flush()
    claimed = [json.loads(claimer.communicate(timeout=120)[0]) for claimer in claimers]
    assert all(claimer.returncode == 0 for claimer in claimers)
    assert set(claimed[0]).isdisjoint(claimed[1])
    assert len(claimed[0]) + len(claimed[1]) == 300
    assert claimed[0] and claimed[1], "both claimers took part"
    assert rows(pools["notify"], "SELECT max(attempts) AS most FROM deliveries")[0]["most"] == 1


# The supervisors' pager

def test_an_escalation_pages_every_oncall_endpoint_minimally_on_its_lane(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as first, Receiver(secret) as second:
        with pools["notify"].transaction() as cur:
            for receiver in (first, second):
                register_oncall_endpoint(cur, keys, receiver.url, secret, url_policy=LOOPBACK_ALLOWED)
        event = escalated(level="critical")
        notify = Notify(pools, outbox, keys, service_class=CriticalNotifyService)
        notify.page(event)
        notify.page(event)  # redelivered by the broker: no second page
        [page] = first.payloads()
        assert second.payloads() == [page]
        assert first.webhook_ids() != second.webhook_ids()
    assert page == {"type": "referral.escalated", "timestamp": page["timestamp"], "data": {
        "case_reference": event.data["reference"], "risk_level": "critical", "service": "counselling",
        "governorate": "dhi_qar", "reason": "ack_timeout", "step": 2}}
    assert {row["lane"] for row in rows(pools["notify"], "SELECT lane FROM deliveries")} == {"critical"}
    assert events_of_type(pools, "delivery.attempted") == []


def test_an_escalation_for_a_referral_already_offered_still_pages(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret) as partner, Receiver(secret) as pager:
        offer = referral_created(register(pools, keys, partner.url, secret))
        with pools["notify"].transaction() as cur:
            register_oncall_endpoint(cur, keys, pager.url, secret, url_policy=LOOPBACK_ALLOWED)
        notify = Notify(pools, outbox, keys)
        notify.offer(offer)
        notify.page(escalated(level="high", referral_id=offer.data["referral_id"]))
        assert len(partner.received) == 1 and len(pager.received) == 1


def test_an_escalation_with_no_oncall_endpoint_raises_an_alert(pools, outbox, keys):
    event = escalated(level="high", reason="no_match")
    Notify(pools, outbox, keys).page(event)
    [alert] = rows(pools["notify"], "SELECT * FROM alerts")
    assert (alert["kind"], alert["case_reference"]) == ("no_pager_endpoint", event.data["reference"])


def test_a_page_that_cannot_be_delivered_raises_an_alert_and_the_pager_stays_enabled(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 401) as pager:
        with pools["notify"].transaction() as cur:
            pager_id = register_oncall_endpoint(cur, keys, pager.url, secret, url_policy=LOOPBACK_ALLOWED)
        Notify(pools, outbox, keys, disable_after=1).page(escalated())
    [alert] = rows(pools["notify"], "SELECT * FROM alerts")
    assert (alert["kind"], alert["endpoint_id"]) == ("pager_exhausted", pager_id)
    assert rows(pools["notify"], "SELECT enabled FROM oncall_endpoints")[0]["enabled"]
    assert events_of_type(pools, "notification.exhausted") == []


# Replay

def test_replay_resends_dead_deliveries_under_their_own_webhook_id(pools, outbox, keys):
    secret = webhooks.generate_secret()
    answers = iter([404, 204])
    with Receiver(secret, respond=lambda webhook_id, payload: next(answers)) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys)
        notify.offer(event)
        assert delivery_of(pools, event)["status"] == "failed"

        with pools["notify"].transaction() as cur:
            replayed, skipped = handlers.replay(cur, dead=True)
        assert [row["webhook_id"] for row in replayed] == [f"msg_{event.data['referral_id'].hex}"] and not skipped
        notify.sweep()
        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
    delivery = delivery_of(pools, event)
    assert (delivery["status"], delivery["attempts"], delivery["round_start"]) == ("delivered", 2, 1)
    assert rows(pools["notify"], "SELECT replayed_at FROM dead_deliveries")[0]["replayed_at"] is not None
    with pools["notify"].transaction() as cur:
        assert handlers.replay(cur, dead=True) == ([], [])


def test_replay_by_id_leaves_a_delivery_still_being_tried_alone_and_names_unknown_ones(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 503) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        Notify(pools, outbox, keys).offer(event)
    webhook_id = f"msg_{event.data['referral_id'].hex}"
    with pools["notify"].transaction() as cur:
        replayed, skipped = handlers.replay(cur, chosen=[webhook_id, "msg_unknown"])
    assert replayed == []
    assert sorted(row["why"] for row in skipped) == ["no such delivery", "still being tried"]


# A referral withdrawn

@pytest.mark.parametrize("service_class", [NotifyService, CriticalNotifyService], ids=["normal", "critical"])
def test_an_offer_withdrawn_while_retried_is_cancelled_once_and_never_replayed(
        pools, outbox, keys, service_class):
    secret = webhooks.generate_secret()
    level = "critical" if service_class is CriticalNotifyService else "medium"
    with Receiver(secret, respond=lambda webhook_id, payload: 503) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret), level=level)
        notify = Notify(pools, outbox, keys, service_class)
        notify.offer(event)
        assert delivery_of(pools, event)["status"] == "pending", "503: retried later"

        withdrawn = referral_withdrawn(event).to_message()
        notify.service.on_referral_status_changed(withdrawn)
        notify.service.on_referral_status_changed(withdrawn)  # delivered twice: nothing more happens
        assert delivery_of(pools, event)["status"] == "cancelled"
        make_due(pools)
        notify.sweep()
        assert len(receiver.requests) == 1, "the withdrawn offer is not tried again"
    with pools["notify"].transaction() as cur:
        replayed, skipped = handlers.replay(cur, chosen=[f"msg_{event.data['referral_id'].hex}"])
    assert replayed == [] and [row["why"] for row in skipped] == [handlers.WITHDRAWN]


def test_other_status_changes_leave_the_offer_alone(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 503) as receiver:
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys)
        notify.offer(event)
    accepted = new_event("referral.status_changed", {**referral_withdrawn(event).data, "status": "accepted",
                                                     "note_code": None, "changed_by": "partner"},
                         producer="referral", correlation_id=event.correlation_id, lane=event.lane)
    notify.service.on_referral_status_changed(accepted.to_message())
    assert delivery_of(pools, event)["status"] == "pending"


def test_a_withdrawal_handled_before_its_offer_means_the_offer_is_never_made_but_its_pages_go(pools, outbox, keys):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 204) as receiver:
        with pools["notify"].transaction() as cur:
            register_oncall_endpoint(cur, keys, receiver.url, secret, url_policy=LOOPBACK_ALLOWED)
        event = referral_created(register(pools, keys, receiver.url, secret))
        notify = Notify(pools, outbox, keys)
        notify.service.on_referral_status_changed(referral_withdrawn(event).to_message())
        notify.offer(event)
        notify.page(escalated(level="medium", referral_id=event.data["referral_id"]))
        assert len(receiver.webhook_ids()) == 1
    [page] = rows(pools["notify"], "SELECT * FROM deliveries")
    assert (page["kind"], page["status"]) == ("referral.escalated", "delivered")


PUBLIC_URL = "https://sanad.example.org"


def test_an_offer_being_made_holds_its_referral_s_withdrawal_back_until_it_commits(pools, keys):
    event = referral_created(register(pools, keys, "http://127.0.0.1:9/hook", webhooks.generate_secret()))
    withdrawn = referral_withdrawn(event)
    with pools["notify"].transaction() as offering:
        handlers.schedule_offer(offering, event, PUBLIC_URL)
        offering.execute("SELECT 1")  # the offer is written; its transaction is still open
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            with pools["notify"].transaction() as cur:
                cur.execute("SET LOCAL lock_timeout = '200ms'")
                handlers.referral_status_changed(cur, withdrawn)
    with pools["notify"].transaction() as cur:
        handlers.referral_status_changed(cur, withdrawn)
    assert delivery_of(pools, event)["status"] == "cancelled", "once it has, the withdrawal sees the offer"


def test_a_withdrawal_being_recorded_holds_an_offer_of_its_referral_back_which_then_is_never_made(pools, keys):
    event = referral_created(register(pools, keys, "http://127.0.0.1:9/hook", webhooks.generate_secret()))
    other = referral_created(event.data["partner_id"])
    with pools["notify"].transaction() as withdrawing:
        handlers.referral_status_changed(withdrawing, referral_withdrawn(event))
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            with pools["notify"].transaction() as cur:
                cur.execute("SET LOCAL lock_timeout = '200ms'")
                handlers.schedule_offer(cur, event, PUBLIC_URL)
        with pools["notify"].transaction() as cur:
            handlers.schedule_offer(cur, other, PUBLIC_URL)  # another referral's offer does not wait
    with pools["notify"].transaction() as cur:
        handlers.schedule_offer(cur, event, PUBLIC_URL)
    assert [row["referral_id"] for row in rows(pools["notify"], "SELECT * FROM deliveries")] == \
        [other.data["referral_id"]], "once it has, the offer sees the withdrawal"


def test_replay_of_the_dead_passes_over_offers_of_withdrawn_referrals(pools, outbox, keys, sanad):
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=lambda webhook_id, payload: 404) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys)
        gone, kept = referral_created(partner_id), referral_created(partner_id)
        notify.offer(gone)
        notify.offer(kept)
        notify.service.on_referral_status_changed(referral_withdrawn(gone, "delivery_exhausted").to_message())
        assert "[referral withdrawn: not replayed]" in sanad("webhooks", "dead")[1]

        code, out, err = sanad("webhooks", "replay", "--dead")
        assert code == 0
        assert f"msg_{kept.data['referral_id'].hex}" in out and f"msg_{gone.data['referral_id'].hex}" not in out
        assert f"msg_{gone.data['referral_id'].hex}: {handlers.WITHDRAWN}" in err
    assert (delivery_of(pools, gone)["status"], delivery_of(pools, kept)["status"]) == ("failed", "pending")


# The operators' commands (sanad webhooks / oncall / alerts), run in-process against this database

def test_rotate_secret_from_the_command_line_signs_with_both_secrets_until_the_overlap_ends(
        pools, outbox, keys, sanad):
    old = webhooks.generate_secret()
    with Receiver(old) as receiver:
        partner_id = register(pools, keys, receiver.url, old)
        code, out, err = sanad("webhooks", "rotate-secret", "--endpoint", str(partner_id), "--overlap-hours", "48")
        assert code == 0
        rotated = json.loads(out)
        new = rotated["webhook_secret"]
        assert new.startswith("whsec_") and new != old and "safe channel" in err
        until = datetime.fromisoformat(rotated["previous_secrets_sign_until"])
        assert timedelta(hours=47) < until - datetime.now(timezone.utc) <= timedelta(hours=48)

        notify = Notify(pools, outbox, keys)
        notify.offer(referral_created(partner_id))
        receiver.use_secret(new)
        notify.offer(referral_created(partner_id))
        assert (len(receiver.received), receiver.rejected) == (2, 0)
    code, out, _ = sanad("webhooks", "list")
    assert code == 0 and f"{partner_id}" in out and "2 active secrets" in out


def test_rotating_an_unknown_endpoint_from_the_command_line_says_so(sanad):
    code, _, err = sanad("webhooks", "rotate-secret", "--endpoint", str(uuid.uuid4()))
    assert code == 2 and "no webhook endpoint" in err


def test_oncall_add_refuses_an_unsafe_url_and_registers_a_good_one(sanad, monkeypatch):
    monkeypatch.setenv("SANAD_ENV", "production")
    monkeypatch.setenv("SANAD_ALLOW_PRIVATE_WEBHOOKS", "0")
    code, _, err = sanad("oncall", "add", "--url", "https://169.254.169.254/latest")
    assert code == 1 and "private" in err
    code, _, err = sanad("oncall", "add", "--url", "http://pager.example.org/hook")
    assert code == 1 and "https" in err
    code, out, _ = sanad("oncall", "add", "--url", "https://93.184.215.14/pager", "--name", "supervisors")
    assert code == 0 and json.loads(out)["webhook_secret"].startswith("whsec_")
    code, out, _ = sanad("oncall", "list")
    assert "https://93.184.215.14/pager" in out


def test_alerts_are_listed_and_acknowledged_from_the_command_line_and_counted_in_a_metric(
        pools, outbox, keys, sanad):
    from prometheus_client import REGISTRY
    event = escalated(level="critical", reason="no_match")
    notify = Notify(pools, outbox, keys, service_class=CriticalNotifyService)
    notify.page(event)
    notify.sweep()
    assert REGISTRY.get_sample_value("sanad_notify_open_alerts", {"kind": "no_pager_endpoint"}) == 1

    code, out, _ = sanad("alerts")
    assert code == 0 and "no_pager_endpoint" in out and event.data["reference"] in out
    alert_id = out.split()[0].lstrip("#")
    assert sanad("alerts", "ack", alert_id, "--by", "supervisor on duty")[0] == 0
    assert sanad("alerts", "ack", alert_id, "--by", "someone else")[0] == 2, "an alert is acknowledged once"
    code, out, err = sanad("alerts")
    assert out == "" and "no open alerts" in err
    assert "acknowledged by supervisor on duty" in sanad("alerts", "list", "--all")[1]
    notify.sweep()
    assert REGISTRY.get_sample_value("sanad_notify_open_alerts", {"kind": "no_pager_endpoint"}) == 0


def test_a_disabled_endpoint_is_enabled_again_and_its_dead_deliveries_replayed_from_the_command_line(
        pools, outbox, keys, sanad):
    secret = webhooks.generate_secret()
    accepting = threading.Event()
    with Receiver(secret, respond=lambda webhook_id, payload: 204 if accepting.is_set() else 410) as receiver:
        partner_id = register(pools, keys, receiver.url, secret)
        notify = Notify(pools, outbox, keys, disable_after=1)
        event = referral_created(partner_id)
        notify.offer(event)
        assert "DISABLED" in sanad("webhooks", "list")[1]
        assert f"msg_{event.data['referral_id'].hex}" in sanad("webhooks", "dead")[1]
        code, _, err = sanad("webhooks", "replay", "--dead")
        assert code == 0 and "0 replayed" in err, "nothing is sent to a disabled endpoint"

        accepting.set()
        assert sanad("webhooks", "enable", "--endpoint", str(partner_id))[0] == 0
        code, out, _ = sanad("webhooks", "replay", "--dead")
        assert code == 0 and f"msg_{event.data['referral_id'].hex}" in out
        notify.sweep()
        assert receiver.webhook_ids() == [f"msg_{event.data['referral_id'].hex}"]
    assert sanad("webhooks", "replay")[0] == 2, "replay says which deliveries"
    assert sanad("webhooks", "disable", "--endpoint", str(partner_id), "--reason", "partner asked")[0] == 0
    assert "partner asked" in sanad("webhooks", "list")[1]
