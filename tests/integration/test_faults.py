"""Breaking Sanad on purpose: the broker stopped, the database restarted, each service killed in the middle
of a message, duplicated and out-of-order events, a poison message, a graceful shutdown, and all of them at
random while cases keep arriving. The six real service processes run against a RabbitMQ node and a
PostgreSQL cluster of this module's own (the machine's shared ones are never touched), and every test ends
by checking that each case a caller was told was recorded went all the way to its partners, once in effect.
"""
import json
import os
import random
import signal
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg2
import pytest
from kombu import Connection
from sanad.platform.inbox import EventQueueConsumer

from sanad.contracts import routing
from sanad.contracts.events import new_event, seal_particulars
from sanad.launcher import PORT_SPAN, PROCESSES
from sanad.platform import inbox  # noqa: F401 -- hardens nameko's consumer, as in every service
from tests.conftest import ARTIFACTS
from tests.support.faults import CASE, CONSUMERS, CRITICAL_CASE, JOURNEY, Bench, declared_queues
from tests.support.ports import free_ports
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench(keys_file):
    made = Bench(keys_file, ARTIFACTS / "logs" / "test_faults", free_ports(PORT_SPAN))
    try:
        made.start()
        yield made
    finally:
        made.close()


@pytest.fixture
def fresh(bench):
    """Each test starts with everything up, whatever the test before it broke."""
    bench.ensure_all_running()
    bench.partner.delay = 0.0
    return bench


def test_cases_keep_being_accepted_while_the_broker_is_down_and_all_go_through_when_it_returns(fresh):
    before = [fresh.submit(CASE) for _ in range(3)]
    fresh.wait_processed(before)
    pids = fresh.pids()

    fresh.rabbit.stop()
    during = []
    for _ in range(10):
        answers = []
        during.append(fresh.submit(CASE, timeout=0, answers=answers))
        assert answers[-1][0] == 201, "intake must accept a case while the broker is down"
    pending = fresh.rows("intake", "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"]
    assert pending >= len(during), "the cases' events wait in intake's outbox"
    time.sleep(3)  # the relay and every consumer try, and fail, to reconnect meanwhile
    fresh.rabbit.start()

    fresh.wait_processed(before + during, timeout=120)
    fresh.assert_once_in_effect(before + during)
    assert fresh.stack.any_exited() == {} and fresh.pids() == pids, "no service was restarted"


def test_services_reconnect_after_postgresql_restarts_mid_flow_and_nothing_acknowledged_is_lost(fresh):
    pids = fresh.pids()
    answers = []
    acknowledged = []
    stop = threading.Event()

    def keep_submitting():
        while not stop.is_set():
            acknowledged.append(fresh.submit(CASE, answers=answers))
            time.sleep(0.05)

    submitter = threading.Thread(target=keep_submitting)
    submitter.start()
    try:
        time.sleep(2)
        fresh.postgres.restart(mode="immediate")  # a crash: sessions cut, recovery from the WAL
        time.sleep(2)
        fresh.postgres.restart(mode="fast")  # an operator's restart
        time.sleep(2)
    finally:
        stop.set()
        submitter.join(timeout=120)
    assert not submitter.is_alive()

    fresh.wait_processed(acknowledged, timeout=120)
    fresh.assert_once_in_effect(acknowledged)
    refused = [a for a in answers if a[0] != 201]
    assert all(status in (None, 503) for status, _, _ in refused), \
        f"during the outage intake answers 503 or not at all, never another error: {refused[:3]}"
    assert all("Traceback" not in text for _, _, text in answers)
    # The first answer after each restart is already a success: no stale connection is handed out.
    assert [a[0] for a in answers[-5:]] == [201] * 5
    assert fresh.stack.any_exited() == {} and fresh.pids() == pids, "no service was restarted"
    print(f"{len(acknowledged)} cases acknowledged across two PostgreSQL restarts; "
          f"{len(refused)} answers refused or lost during them, each retried with its Idempotency-Key")


def test_an_acknowledgement_lost_with_the_connection_is_left_to_the_broker_to_redeliver():
    """Found by the random faults (seed 1165514783): a worker acknowledging its message as the broker
    crashed raised BrokenPipeError, and nameko killed the whole service for it."""
    class Gone:
        connection = object()

    class Message:
        channel = Gone()

        def ack(self):
            raise BrokenPipeError(32, "Broken pipe")

        def requeue(self):
            raise ConnectionResetError(104, "Connection reset by peer")

    consumer = EventQueueConsumer()
    consumer.ack_message(Message())
    consumer.requeue_message(Message())


@contextmanager
def inbox_locked(bench, schema):
    """Holds every handler of `schema` inside its transaction: recording an event as processed waits for
    this lock, so a message delivered now stays in flight, unacknowledged, until the lock goes."""
    conn = psycopg2.connect(bench.database_url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {schema}.processed_events IN EXCLUSIVE MODE")
        yield conn.rollback
    finally:
        conn.rollback()
        conn.close()


def handlers_waiting(bench):
    """How many handlers are stuck on a lock in PostgreSQL right now."""
    with psycopg2.connect(bench.database_url, connect_timeout=5) as conn, conn.cursor() as cur:
        # The statement travels as its text the first time a connection runs it, then by its prepared name.
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = 'sanad'"
                    " AND (query ILIKE '%%processed_events%%' OR strpos(query, %(batch)s) > 0"
                    " OR strpos(query, %(one)s) > 0)",
                    {"batch": inbox.RECORD_PROCESSED.name, "one": inbox.RECORD_FIRST_TIME.name})
        return cur.fetchone()[0]


def test_every_queue_has_a_known_consumer():
    assert set(declared_queues()) <= set(CONSUMERS)


@pytest.mark.parametrize("queue", JOURNEY)
def test_a_service_killed_in_the_middle_of_a_message_handles_it_once_after_restarting(fresh, queue):
    process, schema = CONSUMERS[queue]
    case = CRITICAL_CASE if process.endswith("-critical") else CASE
    with inbox_locked(fresh, schema):
        created = fresh.submit(case)
        wait_until(lambda: handlers_waiting(fresh) > 0, what=f"{process} handling the case's event")
        assert fresh.kill(process, signal.SIGKILL) == -signal.SIGKILL
    fresh.restart(process)

    fresh.wait_processed([created])
    fresh.assert_once_in_effect([created])


def test_notify_killed_while_a_webhook_is_in_flight_sends_it_again_under_the_same_webhook_id(fresh):
    fresh.partner.delay = 3.0
    created = fresh.submit(CASE)
    wait_until(lambda: fresh.partner.arrivals_for(created["reference"]), what="a webhook in flight")
    assert fresh.kill("notify", signal.SIGKILL) == -signal.SIGKILL
    fresh.partner.delay = 0.0
    fresh.restart("notify")

    # The killed attempt's lease must run out before another takes the delivery up.
    fresh.wait_processed([created], timeout=120)
    fresh.assert_once_in_effect([created])


POISON = {
    "a contract breach": (json.dumps({"id": "not-a-uuid", "type": "case.received", "version": 1, "data": {}}),
                          "application/json"),
    "not a JSON object": (json.dumps(["case.received"]), "application/json"),
    "broken JSON": ("{\"id\": ", "application/json"),
    "not UTF-8": (b"\xff\xfe{}", "application/json"),
    "a refused content type": (b"\x80\x04K\x01.", "application/x-python-serialize"),
}


@pytest.mark.parametrize("poison", list(POISON))
def test_a_poison_message_is_set_aside_with_its_reason_an_alert_rises_and_the_queue_keeps_flowing(fresh, poison):
    body, content_type = POISON[poison]
    pids = fresh.pids()
    queues = declared_queues()
    before = {queue: fresh.metric("sanad_dead_letters_total", CONSUMERS[queue][0], f'queue="{queue}"')
              for queue in queues}
    with Connection(fresh.rabbit.uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for queue in queues:
            producer.publish(body, exchange="", routing_key=queue, content_type=content_type,
                             content_encoding="binary" if isinstance(body, bytes) else "utf-8", delivery_mode=2)

    for queue in queues:
        process, schema = CONSUMERS[queue]
        wait_until(lambda: fresh.metric("sanad_dead_letters_total", process, f'queue="{queue}"') > before[queue],
                 what=f"the dead-letter alert metric of {queue} rising")
        reasons = [r["reason"] for r in fresh.rows(schema, "SELECT reason FROM dead_letters WHERE queue = %(q)s",
                                                    {"q": queue})]
        assert reasons and all(reason.strip() for reason in reasons)
    after = [fresh.submit(CASE), fresh.submit(CRITICAL_CASE)]
    fresh.wait_processed(after)
    fresh.assert_once_in_effect(after)
    assert fresh.stack.any_exited() == {} and fresh.pids() == pids


def publish(bench, bodies):
    """Publish message bodies (dicts with a type and a lane) to the exchange, as a relay would."""
    with Connection(bench.rabbit.uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for body in bodies:
            producer.publish(body, exchange=routing.EXCHANGE, routing_key=f"{body['type']}.{body['lane']}",
                             serializer="json", delivery_mode=2)


def outbox_bodies(bench, schema, case_id):
    return [row["body"] for row in bench.rows(
        schema, "SELECT body FROM outbox WHERE body->'data'->>'case_id' = %(id)s ORDER BY created_at",
        {"id": case_id})]


def test_duplicated_and_replayed_events_have_one_effect(fresh):
    created = fresh.submit(CASE)
    fresh.wait_processed([created])
    arrived = len(fresh.partner.arrivals_for(created["reference"]))
    originals = [body for schema in ("intake", "triage", "referral", "notify")
                 for body in outbox_bodies(fresh, schema, created["id"])]
    assert {b["type"] for b in originals} >= {"case.received", "case.triaged", "referral.created",
                                              "delivery.attempted"}
    # Each event again, twice, under its own id (a relay that published and crashed before marking it
    # sent), and once under a new id (an upstream handler that ran twice).
    replayed = [{**body, "id": str(uuid.uuid4())} for body in originals]
    duplicates_before = sum(fresh.metric("sanad_events_consumed_total", p, 'outcome="duplicate"')
                            for p in fresh.stack.running)
    publish(fresh, originals + originals + replayed)

    wait_until(lambda: sum(fresh.metric("sanad_events_consumed_total", p, 'outcome="duplicate"')
                         for p in fresh.stack.running) - duplicates_before >= 2 * len(originals),
             what="every duplicate recognised")
    replayed_ids = [r["id"] for r in replayed]
    handled = "SELECT 1 FROM processed_events WHERE event_id = ANY(%(ids)s::uuid[])"
    wait_until(lambda: sum(len(fresh.rows(schema, handled, {"ids": replayed_ids}))
                           for schema in ("intake", "triage", "referral", "notify")) >= len(replayed),
               what="every replayed event handled")
    time.sleep(1.5)  # a second webhook, were one scheduled, would be on its way by now
    fresh.assert_once_in_effect([created])
    assert len(fresh.partner.arrivals_for(created["reference"])) == arrived, "no webhook was sent again"


def test_events_arriving_out_of_order_never_move_a_case_backwards(fresh, keys):
    created = fresh.submit({**CASE, "needs": [], "consents": []})  # nobody to refer to: only the test's events
    wait_until(lambda: fresh.case_view(created["id"])["risk"], what="the case triaged")
    now = datetime.now(timezone.utc)
    referral_id, partner_id, delivery_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    # notify hears the referral.created below too, and reports its own attempts for the referral (to a
    # partner it does not know) under another webhook id.
    webhook_id = f"msg_test_{delivery_id.hex}"

    def triaged(level, at):
        return new_event("case.triaged", {
            "case_id": uuid.UUID(created["id"]), "reference": created["reference"], "received_at": now,
            "level": level, "score": {"low": 10, "critical": 95}[level],
            "sealed_particulars": seal_particulars("case.triaged", {"reasons": []}, keys.transport, created["id"]),
            "sealed_evidence": None, "lexicon_version": "test", "governorate": "dhi_qar", "needs": [], "consents": [],
        }, producer="triage", lane="normal", now=at).to_message()

    def attempted(attempt, outcome, at):
        return new_event("delivery.attempted", {
            "delivery_id": delivery_id, "webhook_id": webhook_id, "referral_id": referral_id,
            "case_id": uuid.UUID(created["id"]), "partner_id": partner_id, "attempt": attempt, "outcome": outcome,
            "status_code": 204 if outcome == "delivered" else 503, "latency_ms": 5.0, "attempted_at": at,
            "next_attempt_at": None if outcome == "delivered" else at + timedelta(seconds=5),
        }, producer="notify", now=at).to_message()

    referral = new_event("referral.created", {
        "referral_id": referral_id, "case_id": uuid.UUID(created["id"]), "reference": created["reference"],
        "partner_id": partner_id, "partner_name": "Test Partner", "service": "counselling", "level": "critical",
        "governorate": "dhi_qar", "created_at": now,
    }, producer="referral").to_message()
    # Newest first: the reassessment, the successful second attempt, then what came before them.
    publish(fresh, [triaged("critical", now + timedelta(hours=1)), attempted(2, "delivered", now + timedelta(seconds=6))])
    wait_until(lambda: fresh.case_view(created["id"])["risk"]["level"] == "critical", what="the reassessment shown")
    publish(fresh, [triaged("low", now - timedelta(hours=1)), attempted(1, "retrying", now), referral])

    def ours(view):
        return [d for ref in view["referrals"] for d in ref["deliveries"] if d["webhook_id"] == webhook_id]

    def settled():
        view = fresh.case_view(created["id"])
        return view if len(ours(view)) == 2 else None
    view = wait_until(settled, what="every event handled")
    assert view["risk"]["level"] == "critical", "an older assessment must not replace a newer one"
    assert view["status"] == "referred", "a late 'retrying' must not undo a delivery"
    assert [d["attempt"] for d in ours(view)] == [1, 2]


@pytest.mark.parametrize("process", ["notify", "notify-critical"])
def test_sigterm_lets_a_webhook_in_flight_finish_and_publishes_what_it_recorded(fresh, process):
    fresh.partner.delay = 2.0
    created = fresh.submit(CRITICAL_CASE if process.endswith("-critical") else CASE)
    wait_until(lambda: fresh.partner.arrivals_for(created["reference"]), what="a webhook in flight")
    assert fresh.kill(process, signal.SIGTERM) == 0

    unfinished = fresh.rows("notify", """
        SELECT count(*) AS n FROM deliveries WHERE case_id = %(id)s AND status <> 'delivered'""",
                            {"id": created["id"]})[0]["n"]
    unsent = fresh.rows("notify", """
        SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL AND body->'data'->>'case_id' = %(id)s""",
                        {"id": created["id"]})[0]["n"]
    fresh.partner.delay = 0.0
    fresh.restart(process)
    fresh.wait_processed([created])
    fresh.assert_once_in_effect([created])
    assert unfinished == 0, "the webhooks in flight finished, and were recorded, before the process exited"
    assert unsent == 0, "what the stopping service recorded was published before it exited"
    assert len(fresh.partner.arrivals_for(created["reference"])) == 2, "nothing was sent twice"


def test_sigterm_with_a_handler_waiting_on_the_database_finishes_it_or_returns_it_to_the_queue(fresh):
    with inbox_locked(fresh, "triage"):
        created = fresh.submit(CASE)
        wait_until(lambda: handlers_waiting(fresh) > 0, what="triage handling the case")
        fresh.stack.signal("triage", signal.SIGTERM)
        time.sleep(1)
    assert fresh.stack.wait("triage", timeout=30) == 0
    fresh.restart("triage")
    fresh.wait_processed([created])
    fresh.assert_once_in_effect([created])


CHAOS_CASES = 50
CHAOS_SECONDS = 40


class Chaos:
    """Faults at random moments, from a seed printed so that a failing run can be replayed
    (SANAD_FAULT_SEED=<seed>)."""

    PROCESSES = tuple(p.name for p in PROCESSES)

    def __init__(self, bench, seed):
        self.bench = bench
        self.random = random.Random(seed)
        self.survived = []

    def one(self, started):
        fault = self.random.choice(("broker crash", "broker restart", "database crash", "database restart",
                                    "SIGKILL", "SIGKILL", "SIGTERM"))
        outage = self.random.uniform(0.5, 3.0)
        target = self.random.choice(self.PROCESSES) if fault.startswith("SIG") else None
        self.survived.append(f"{time.monotonic() - started:5.1f}s {fault}{' of ' + target if target else ''}"
                             f" ({outage:.1f}s)")
        if fault.startswith("broker"):
            self.bench.rabbit.stop(kill=fault == "broker crash")
            time.sleep(outage)
            self.bench.rabbit.start()
        elif fault.startswith("database"):
            self.bench.postgres.stop("immediate" if fault == "database crash" else "fast")
            time.sleep(outage)
            self.bench.postgres.start()
        else:
            signum = signal.SIGKILL if fault == "SIGKILL" else signal.SIGTERM
            self.bench.stack.signal(target, signum)
            self.bench.stack.wait(target, timeout=60)
            time.sleep(outage)
            self.bench.restart(target, wait=False)


def test_every_case_submitted_while_faults_strike_at_random_is_processed_exactly_once(fresh):
    seed = int(os.environ.get("SANAD_FAULT_SEED") or random.randrange(2 ** 32))
    print(f"\nchaos seed {seed} (replay with SANAD_FAULT_SEED={seed})")
    chaos = Chaos(fresh, seed)
    acknowledged = []
    last_before = fresh.rows("intake", "SELECT coalesce(max(received_at), '-infinity') AS at FROM cases")[0]["at"]
    started = time.monotonic()

    def submit_all():
        for index in range(CHAOS_CASES):
            acknowledged.append(fresh.submit(CRITICAL_CASE if index % 5 == 0 else CASE, timeout=180))
            time.sleep(CHAOS_SECONDS / CHAOS_CASES)

    submitter = threading.Thread(target=submit_all)
    submitter.start()
    try:
        while submitter.is_alive() and time.monotonic() - started < CHAOS_SECONDS:
            time.sleep(chaos.random.uniform(0.5, 2.5))
            chaos.one(started)
    finally:
        submitter.join(timeout=240)
    assert not submitter.is_alive(), "intake did not acknowledge every case"
    assert fresh.stack.any_exited() == {}, "a service died on its own"
    fresh.stack.wait_healthy(timeout=90)

    fresh.wait_processed(acknowledged, timeout=240)
    fresh.assert_once_in_effect(acknowledged)
    assert len(acknowledged) == CHAOS_CASES
    recorded = fresh.rows("intake", "SELECT count(*) AS n FROM cases WHERE received_at > %(at)s",
                          {"at": last_before})[0]["n"]
    assert recorded == CHAOS_CASES, "a retried submission was recorded twice"
    print(f"{CHAOS_CASES} cases submitted, {CHAOS_CASES} fully processed once, through {len(chaos.survived)} faults:")
    print("\n".join(chaos.survived))
