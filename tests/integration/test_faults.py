"""Breaking Sanad on purpose: the broker stopped, the database restarted, each service killed in the middle
of a message, duplicated and out-of-order events, a poison message, a graceful shutdown, and all of them at
random while cases keep arriving. The six real service processes run against a RabbitMQ node and a
PostgreSQL cluster of this module's own (the machine's shared ones are never touched), and every test ends
by checking that each case a caller was told was recorded went all the way to its partners, once in effect.
"""
import json
import signal
import threading
import time
from contextlib import contextmanager

import psycopg2
import pytest
from kombu import Connection

from tests.conftest import ARTIFACTS
from tests.support.faults import CASE, CONSUMERS, CRITICAL_CASE, Bench
from tests.support.ports import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench(keys_file):
    made = Bench(keys_file, ARTIFACTS / "logs" / "test_faults", free_ports(6))
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


@contextmanager
def inbox_locked(bench, schema):
    """Holds every handler of `schema` inside its transaction: recording an event as processed waits for
    this lock, so a message delivered now stays in flight, unacknowledged, until the lock goes."""
    conn = psycopg2.connect(bench.database_url, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f"LOCK TABLE {schema}.processed_events IN EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def handlers_waiting(bench):
    """How many handlers are stuck on a lock in PostgreSQL right now."""
    with psycopg2.connect(bench.database_url, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = 'sanad'"
                    " AND query ILIKE '%%processed_events%%'")
        return cur.fetchone()[0]


def wait_for(check, timeout=30, what="condition"):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


@pytest.mark.parametrize("queue", list(CONSUMERS))
def test_a_service_killed_in_the_middle_of_a_message_handles_it_once_after_restarting(fresh, queue):
    process, schema = CONSUMERS[queue]
    case = CRITICAL_CASE if process.endswith("-critical") else CASE
    with inbox_locked(fresh, schema):
        created = fresh.submit(case)
        wait_for(lambda: handlers_waiting(fresh) > 0, what=f"{process} handling the case's event")
        assert fresh.kill(process, signal.SIGKILL) == -signal.SIGKILL
    fresh.restart(process)

    fresh.wait_processed([created])
    fresh.assert_once_in_effect([created])


def test_notify_killed_while_a_webhook_is_in_flight_sends_it_again_under_the_same_webhook_id(fresh):
    fresh.partner.delay = 3.0
    created = fresh.submit(CASE)
    wait_for(lambda: fresh.partner.arrivals_for(created["reference"]), what="a webhook in flight")
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
    before = {queue: fresh.metric("sanad_dead_letters_total", process, f'queue="{queue}"')
              for queue, (process, _) in CONSUMERS.items()}
    with Connection(fresh.rabbit.uri, transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for queue in CONSUMERS:
            producer.publish(body, exchange="", routing_key=queue, content_type=content_type,
                             content_encoding="binary" if isinstance(body, bytes) else "utf-8", delivery_mode=2)

    for queue, (process, schema) in CONSUMERS.items():
        wait_for(lambda: fresh.metric("sanad_dead_letters_total", process, f'queue="{queue}"') > before[queue],
                 what=f"the dead-letter alert metric of {queue} rising")
        reasons = [r["reason"] for r in fresh.rows(schema, "SELECT reason FROM dead_letters WHERE queue = %(q)s",
                                                    {"q": queue})]
        assert reasons and all(reason.strip() for reason in reasons)
    after = [fresh.submit(CASE), fresh.submit(CRITICAL_CASE)]
    fresh.wait_processed(after)
    fresh.assert_once_in_effect(after)
    assert fresh.stack.any_exited() == {} and fresh.pids() == pids
