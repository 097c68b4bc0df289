"""Webhooks partners can trust, end to end: the real notify processes (normal and critical lanes) on real
RabbitMQ and PostgreSQL, events published to the broker as referral publishes them, and a real HTTP
receiver that verifies every webhook with both the standardwebhooks and the svix libraries and fails on
purpose. The retry schedule, timeouts and lease are shortened through the environment, not by sleeping.
"""
import json
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import pytest
import requests
from kombu import Connection, Queue

from sanad import webhooks
from sanad.contracts import routing
from sanad.contracts.events import new_event
from sanad.launcher import Stack
from sanad.platform.pool import Pool
from services.notify.handlers import register_endpoint
from services.notify.urls import UrlPolicy
from tests.conftest import ARTIFACTS
from tests.integration.conftest import free_port_base, sanad_cli
from tests.support.rabbit import publish_events
from tests.support.receiver import Receiver, Reply

pytestmark = pytest.mark.integration

FAST = {
    "SANAD_WEBHOOK_RETRY_DELAYS": "0.3,0.5,0.5,0.5,0.5",
    "SANAD_WEBHOOK_TIMEOUT": "1",         # an attempt ends within 3 s...
    "SANAD_WEBHOOK_LEASE_SECONDS": "8",   # ...so a dead worker's lease runs out after 8
    "SANAD_WEBHOOK_CONCURRENCY": "6",
    "SANAD_WEBHOOK_PER_ENDPOINT": "2",
    "SANAD_WEBHOOK_DISABLE_AFTER": "1000",
}
LOOPBACK = UrlPolicy(require_https=False, allow_private=True)


@pytest.fixture(scope="module")
def env(stack_env):
    return {**stack_env, **FAST}


@pytest.fixture(scope="module")
def notify(request, env):
    """The two notify processes, as `sanad run` starts them, with the short schedule."""
    running = Stack(env=env, port_base=free_port_base(), log_dir=ARTIFACTS / "logs" / "test_notify_delivery")
    running.start(["notify", "notify-critical"])
    try:
        running.wait_healthy(timeout=60)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def db(database_url):
    pool = Pool(database_url, size=2, schema="notify")
    yield pool
    pool.close()


class Partner:
    """A partner's endpoint: a receiver registered with notify under a fresh partner id."""

    def __init__(self, db, keys, respond=None):
        self.secret = webhooks.generate_secret()
        self.receiver = Receiver(self.secret, respond=respond).__enter__()
        self.id = uuid.uuid4()
        with db.transaction() as cur:
            register_endpoint(cur, keys, self.id, self.receiver.url, self.secret, url_policy=LOOPBACK)

    def close(self):
        self.receiver.__exit__(None, None, None)


@pytest.fixture
def partners(db, keys):
    made = []

    def make(respond=None):
        made.append(Partner(db, keys, respond))
        return made[-1]

    yield make
    for partner in made:
        partner.close()


def referral_created(partner_id, level="medium"):
    referral_id, case_id = uuid.uuid4(), uuid.uuid4()
    return new_event("referral.created", {
        "referral_id": referral_id, "case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-NTFY",
        "partner_id": partner_id, "partner_name": "Centre", "service": "counselling", "level": level,
        "governorate": "dhi_qar", "created_at": datetime.now(timezone.utc),
    }, producer="referral", lane="critical" if level == "critical" else "normal")


def webhook_id(event):
    return f"msg_{event.data['referral_id'].hex}"


def rows(db, query, params=None):
    with db.transaction() as cur:
        cur.execute(query, params or {})
        return cur.fetchall()


def assert_delivered_once_each(receiver, ids):
    counts = Counter(receiver.webhook_ids())
    wrong = {wid: counts[wid] for wid in set(ids) | set(counts) if counts[wid] != 1 or wid not in ids}
    assert not wrong, f"webhooks not delivered exactly once: {wrong}"


class Script:
    """Fails each webhook on purpose a few times, in one of five ways, then accepts it."""
    FAILURES = (
        [Reply(504, delay=2.0)],                   # slower than notify's timeout, then an error
        [Reply(500), Reply(503)],                  # server errors
        [Reply(429, retry_after="2")],             # rate limited, asked to wait 2 s
        [Reply(drop=True)],                        # the connection dropped without an answer
        [],                                        # fine at once
    )

    def __init__(self, ids):
        self.plan = {wid: list(self.FAILURES[n % len(self.FAILURES)]) for n, wid in enumerate(ids)}
        self.lock = threading.Lock()

    def respond(self, wid, payload):
        with self.lock:
            pending = self.plan.get(wid, [])
            return pending.pop(0) if pending else 204


def test_a_partner_failing_on_purpose_then_recovering_gets_every_webhook_verified_exactly_once(
        notify, env, db, partners):
    partner = partners()
    events = [referral_created(partner.id) for _ in range(10)] + \
        [referral_created(partner.id, level="critical") for _ in range(5)]
    ids = [webhook_id(e) for e in events]
    partner.receiver.respond = Script(ids).respond

    publish_events(env["SANAD_AMQP_URI"], *events)

    expected = {wid: [reply.status if not reply.drop else "dropped" for reply in Script.FAILURES[n % 5]] + [204]
                for n, wid in enumerate(ids)}
    assert partner.receiver.wait_for(lambda got: len(got) >= len(ids), timeout=90), "not every webhook arrived"
    # The late answers (sent after notify gave up waiting) are recorded when the receiver sends them.
    partner.receiver.wait_until(lambda r: all(r.attempts_for(wid) == expected[wid] for wid in ids), timeout=10)
    time.sleep(1)  # time enough for a duplicate, were one coming
    assert_delivered_once_each(partner.receiver, ids)
    assert partner.receiver.rejected == 0, "every request verified with both libraries"
    for wid in ids:
        answers = partner.receiver.attempts_for(wid)
        assert answers == expected[wid], f"{wid} was answered {answers}"
    statuses = rows(db, "SELECT status, lane FROM deliveries WHERE webhook_id = ANY(%(ids)s)", {"ids": ids})
    assert [r["status"] for r in statuses] == ["delivered"] * len(ids)
    assert Counter(r["lane"] for r in statuses) == {"normal": 10, "critical": 5}

    rate_limited = [wid for n, wid in enumerate(ids) if n % 5 == 2]
    for wid in rate_limited:
        first, second = rows(db, """
            SELECT a.attempted_at FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
            WHERE d.webhook_id = %(id)s ORDER BY a.attempt""", {"id": wid})
        gap = (second["attempted_at"] - first["attempted_at"]).total_seconds()
        assert gap >= 2, f"Retry-After: 2 was not honoured ({gap:.2f} s between attempts)"


def test_critical_webhooks_are_not_queued_behind_retries_of_a_failing_partner(notify, env, db, partners):
    hanging = threading.Event()

    def failing_partner(wid, payload):
        """Normal webhooks: hang, then fail; critical ones: answered at once."""
        if payload["data"]["risk_level"] == "critical":
            return 204
        return Reply(503, hold=hanging)

    partner = partners(failing_partner)
    other = partners()
    try:
        normal = [referral_created(partner.id) for _ in range(8)]
        publish_events(env["SANAD_AMQP_URI"], *normal)
        assert partner.receiver.wait_until(lambda r: r.holding == 2, timeout=30)

        critical = referral_created(partner.id, level="critical")
        elsewhere = referral_created(other.id)
        publish_events(env["SANAD_AMQP_URI"], critical, elsewhere)
        assert partner.receiver.wait_for(lambda got: any(w == webhook_id(critical) for _, w, _ in got), timeout=30)
        assert other.receiver.wait_for(lambda got: len(got) == 1, timeout=30), \
            "a partner that hangs held up webhooks to another partner"
        assert partner.receiver.holding == 2, "the failing partner's webhooks were still hanging meanwhile"
        assert not any(w in {webhook_id(e) for e in normal} for w in partner.receiver.webhook_ids())
    finally:
        hanging.set()


def test_a_notify_process_killed_mid_delivery_and_restarted_still_delivers_it_once(notify, env, db, partners):
    held = threading.Event()
    first_request = []

    def respond(wid, payload):
        if not first_request:
            first_request.append(wid)
            return Reply(503, hold=held)  # the answer never reaches the killed process
        return 204

    partner = partners(respond)
    event = referral_created(partner.id)
    try:
        publish_events(env["SANAD_AMQP_URI"], event)
        assert partner.receiver.wait_until(lambda r: r.holding == 1, timeout=30)
        notify.signal("notify", signal.SIGKILL)
        assert notify.wait("notify") == -signal.SIGKILL
    finally:
        held.set()
    notify.restart("notify")
    notify.wait_healthy(timeout=60, names=["notify"])

    assert partner.receiver.wait_for(lambda got: len(got) == 1, timeout=60)
    time.sleep(1)
    assert partner.receiver.webhook_ids() == [webhook_id(event)], "delivered once, under the same webhook-id"
    [delivery] = rows(db, "SELECT * FROM deliveries WHERE webhook_id = %(id)s", {"id": webhook_id(event)})
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 2)
    attempts = rows(db, "SELECT attempt, outcome FROM delivery_attempts WHERE delivery_id = %(id)s",
                    {"id": delivery["id"]})
    assert [(a["attempt"], a["outcome"]) for a in attempts] == [(2, "delivered")], \
        "the killed attempt left no record; the one after its lease ran out delivered"


def test_two_notify_processes_never_send_the_same_attempt_twice(notify, env, db, partners):
    first_answers = {}
    lock = threading.Lock()

    def fail_once(wid, payload):
        with lock:
            if wid not in first_answers:
                first_answers[wid] = 503
                return 503
        return 204

    partner = partners(fail_once)
    second = Stack(env=env, port_base=free_port_base(), log_dir=ARTIFACTS / "logs" / "test_notify_delivery_second")
    second.start(["notify"])
    try:
        second.wait_healthy(timeout=60)
        events = [referral_created(partner.id) for _ in range(40)]
        publish_events(env["SANAD_AMQP_URI"], *events)
        ids = [webhook_id(e) for e in events]
        assert partner.receiver.wait_for(lambda got: len(got) >= len(ids), timeout=90)
        time.sleep(2)  # time enough for a second send of any attempt, were there one
    finally:
        second.stop()
    assert_delivered_once_each(partner.receiver, ids)
    for wid in ids:
        assert partner.receiver.attempts_for(wid) == [503, 204], f"{wid}: {partner.receiver.attempts_for(wid)}"
    recorded = rows(db, """
        SELECT d.webhook_id, array_agg(a.attempt ORDER BY a.attempt) AS attempts
        FROM deliveries d JOIN delivery_attempts a ON a.delivery_id = d.id
        WHERE d.webhook_id = ANY(%(ids)s) GROUP BY d.webhook_id""", {"ids": ids})
    assert sorted(r["attempts"] for r in recorded) == [[1, 2]] * len(ids), "each attempt recorded once"


def test_a_dead_delivery_is_announced_counted_and_replayed_by_the_cli_under_its_webhook_id(
        notify, env, db, partners):
    accepting = threading.Event()
    partner = partners(lambda wid, payload: 204 if accepting.is_set() else 404)
    event = referral_created(partner.id)
    exhausted = Queue(f"test.exhausted.{uuid.uuid4().hex[:8]}", exchange=routing.EXCHANGE,
                      routing_key="notification.exhausted.*", auto_delete=True)
    with Connection(env["SANAD_AMQP_URI"]) as connection:
        with connection.SimpleQueue(exhausted) as announced:
            publish_events(env["SANAD_AMQP_URI"], event)
            message = announced.get(timeout=30)
            body = message.payload
            message.ack()
    assert body["type"] == "notification.exhausted"
    assert body["data"]["webhook_id"] == webhook_id(event) and body["data"]["last_status_code"] == 404
    assert webhook_id(event) in sanad_cli(env, "webhooks", "dead")
    metrics = requests.get(notify.url("notify") + "/metrics", timeout=10).text
    assert 'sanad_webhook_exhausted_total{lane="normal",target="partner"}' in metrics

    accepting.set()
    output = sanad_cli(env, "webhooks", "replay", "--webhook-id", webhook_id(event))
    assert webhook_id(event) in output
    assert partner.receiver.wait_for(lambda got: len(got) == 1, timeout=30)
    assert partner.receiver.webhook_ids() == [webhook_id(event)]
    assert partner.receiver.attempts_for(webhook_id(event)) == [404, 204]
    assert webhook_id(event) not in sanad_cli(env, "webhooks", "dead")


def test_an_escalation_pages_the_oncall_endpoint_registered_with_the_cli(notify, env):
    secret = webhooks.generate_secret()
    with Receiver(secret) as pager:
        sanad_cli(env, "oncall", "add", "--url", pager.url, "--secret", secret, "--name", "supervisors")
        case_id = uuid.uuid4()
        escalation = new_event("referral.escalated", {
            "referral_id": None, "case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-PAGE",
            "level": "critical", "service": "shelter", "governorate": "dhi_qar", "reason": "no_match",
            "step": 1, "reoffered_to": None, "escalated_at": datetime.now(timezone.utc),
        }, producer="referral", lane="critical")
        publish_events(env["SANAD_AMQP_URI"], escalation)
        assert pager.wait_for(lambda got: len(got) == 1, timeout=30)
        [page] = pager.payloads()
    assert page["type"] == "referral.escalated"
    assert page["data"] == {"case_reference": escalation.data["reference"], "risk_level": "critical",
                            "service": "shelter", "governorate": "dhi_qar", "reason": "no_match", "step": 1}
    assert json.dumps(page).count(str(case_id)) == 0
