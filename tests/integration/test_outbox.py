"""The outbox's two ways out, on real RabbitMQ and PostgreSQL, in a nameko container of the test's own:
the relay, which publishes every event after its worker, and the worker itself, which publishes its
critical events at once, without waiting for the relay's turn (sanad.platform.outbox)."""
import time
import uuid

import eventlet
import psycopg2
import psycopg2.extras
import pytest
from kombu import Connection
from nameko.containers import ServiceContainer
from nameko.testing.services import dummy, entrypoint_hook

from sanad.contracts import routing
from sanad.contracts.events import new_event
from sanad.platform import outbox
from sanad.platform.database import Database
from sanad.platform.outbox import SWEEP_GRACE, SWEEP_INTERVAL, Outbox

pytestmark = pytest.mark.integration


class Announcer:
    name = "outbox_probe"

    db = Database("triage")
    outbox = Outbox()

    @dummy
    def announce(self, lane):
        event = new_event("case.unmatched", {
            "case_id": uuid.uuid4(), "reference": "SND-TEST-0001", "level": "critical" if lane == "critical" else "low",
            "governorate": "dhi_qar", "services": ["counselling"],
        }, producer="test", lane=lane)
        with self.db.transaction() as cur:
            self.outbox.add(cur, event)
        return str(event.id)

    @dummy
    def announce_after_a_failed_try(self, lane):
        """The first try's transaction fails after adding its event; the worker catches that and tries
        again, as notify does when recording an attempt meets a database that blinked."""
        failed = new_event("case.unmatched", {
            "case_id": uuid.uuid4(), "reference": "SND-TEST-0002", "level": "critical" if lane == "critical" else "low",
            "governorate": "dhi_qar", "services": ["counselling"],
        }, producer="test", lane=lane)
        try:
            with self.db.transaction() as cur:
                self.outbox.add(cur, failed)
                cur.execute("SELECT 1 / 0")
        except psycopg2.errors.DivisionByZero:
            pass
        return str(failed.id), self.announce(lane)

    @dummy
    def announce_after_returning(self, lane):
        """Starts work it does not wait for, which commits its event after this worker has ended, as
        notify's webhook attempts do."""
        event = new_event("case.unmatched", {
            "case_id": uuid.uuid4(), "reference": "SND-TEST-0003", "level": "critical" if lane == "critical" else "low",
            "governorate": "dhi_qar", "services": ["counselling"],
        }, producer="test", lane=lane)
        writer = self.outbox.detached()

        def work():
            eventlet.sleep(0.2)
            with self.db.transaction() as cur:
                writer.add(cur, event)

        eventlet.spawn_n(work)
        return str(event.id)


@pytest.fixture
def announcer(monkeypatch, database_url, amqp_uri):
    monkeypatch.setenv("SANAD_DATABASE_URL", database_url)
    monkeypatch.setenv("SANAD_AMQP_URI", amqp_uri)
    _start_empty(database_url, amqp_uri)
    container = ServiceContainer(Announcer, config={"AMQP_URI": amqp_uri, "max_workers": 2})
    container.start()
    yield container
    container.stop()


@pytest.fixture
def relay_stuck(monkeypatch):
    """The relay never runs (as when its green thread waits behind busy workers). Ask for it before the
    announcer, which starts the relay."""
    monkeypatch.setattr(Outbox, "_run", lambda self: None)


def _start_empty(database_url, amqp_uri):
    """No event left over from another test, in the outbox or on the queue."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM triage.outbox")
    with Connection(amqp_uri) as connection:
        routing.INTAKE_CASE_STATUS(connection.default_channel).purge()


def published_ids(amqp_uri):
    """Ids of the events waiting in intake's status queue (which hears every case.unmatched)."""
    ids = []
    with Connection(amqp_uri) as connection:
        queue = connection.SimpleQueue(routing.INTAKE_CASE_STATUS)
        while True:
            try:
                message = queue.get(timeout=1)
            except queue.Empty:
                return ids
            ids.append(message.payload["id"])
            message.ack()


def sent_at(database_url, event_id):
    with psycopg2.connect(database_url, options="-c search_path=triage") as conn:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT sent_at FROM outbox WHERE id = %(id)s", {"id": event_id})
            return cur.fetchone()["sent_at"]


def test_a_critical_event_is_published_by_its_worker_even_while_the_relay_is_stuck(
        relay_stuck, announcer, amqp_uri, database_url):
    with entrypoint_hook(announcer, "announce") as announce:
        critical = announce("critical")
        normal = announce("normal")

    assert published_ids(amqp_uri) == [critical]
    assert sent_at(database_url, normal) is None, "a normal event waits for the relay"


def test_a_critical_event_the_worker_cannot_publish_stays_unsent_for_the_relay_and_the_worker_succeeds(
        relay_stuck, announcer, monkeypatch, amqp_uri, database_url):
    def broker_refuses(self):
        raise ConnectionRefusedError("broker down")
    monkeypatch.setattr(Outbox, "_connect", broker_refuses)

    with entrypoint_hook(announcer, "announce") as announce:
        critical = announce("critical")

    assert published_ids(amqp_uri) == []
    assert sent_at(database_url, critical) is None


def test_every_event_is_published_once_and_marked_sent_whichever_way_it_went_out(
        announcer, amqp_uri, database_url):
    with entrypoint_hook(announcer, "announce") as announce:
        events = [announce("normal"), announce("critical"), announce("normal"), announce("critical")]

    assert sorted(published_ids(amqp_uri)) == sorted(events)
    assert all(sent_at(database_url, event) is not None for event in events)
    time.sleep(SWEEP_GRACE + 2 * SWEEP_INTERVAL)
    assert published_ids(amqp_uri) == [], "the sweep found nothing left to publish again"


@pytest.mark.parametrize("lane", ["normal", "critical"])
def test_an_event_committed_by_work_its_worker_left_running_goes_out_without_waiting_for_the_sweep(
        monkeypatch, announcer, amqp_uri, database_url, lane):
    monkeypatch.setattr(outbox, "SWEEP_GRACE", 60.0)  # the sweep would take it only after a minute
    with entrypoint_hook(announcer, "announce_after_returning") as announce:
        event = announce(lane)
    time.sleep(0.5)

    assert published_ids(amqp_uri) == [event]
    time.sleep(2 * SWEEP_INTERVAL)
    assert sent_at(database_url, event) is not None


def test_events_the_relay_held_too_long_are_left_to_the_sweep_and_published_once(
        monkeypatch, announcer, amqp_uri, database_url):
    # A relay this far behind might meet events another process's sweep has published meanwhile.
    monkeypatch.setattr(outbox, "FROM_MEMORY_WITHIN", -1.0)
    monkeypatch.setattr(outbox, "SWEEP_GRACE", 4.0)
    with entrypoint_hook(announcer, "announce") as announce:
        events = [announce("normal"), announce("normal")]

    assert published_ids(amqp_uri) == [], "nothing went from memory"
    time.sleep(outbox.SWEEP_GRACE + 2 * SWEEP_INTERVAL)
    assert sorted(published_ids(amqp_uri)) == sorted(events)
    assert all(sent_at(database_url, event) is not None for event in events)


@pytest.mark.parametrize("lane", ["normal", "critical"])
def test_an_event_whose_transaction_failed_is_never_published_though_its_worker_succeeds_on_a_second_try(
        announcer, amqp_uri, database_url, lane):
    with entrypoint_hook(announcer, "announce_after_a_failed_try") as announce:
        failed, stored = announce(lane)

    assert published_ids(amqp_uri) == [stored]
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT id::text FROM triage.outbox")
        assert cur.fetchall() == [(stored,)]


def test_the_relay_marks_events_sent_without_waiting_for_the_disk(monkeypatch, announcer, amqp_uri, database_url):
    # The mark applies only in a transaction that commits asynchronously (outbox.MARKING_NEED_NOT_WAIT).
    monkeypatch.setattr(outbox, "MARK_SENT", outbox.MARK_SENT + " AND current_setting('synchronous_commit') = 'off'")
    with entrypoint_hook(announcer, "announce") as announce:
        events = [announce("normal"), announce("critical")]

    deadline = time.monotonic() + SWEEP_GRACE + 3 * SWEEP_INTERVAL
    while time.monotonic() < deadline and not all(sent_at(database_url, event) for event in events):
        time.sleep(0.1)
    assert all(sent_at(database_url, event) is not None for event in events)
