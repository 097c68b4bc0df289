"""The batch consumer (sanad.platform.inbox.BatchEventConsumer) on real RabbitMQ and PostgreSQL, in a
nameko container of the test's own: events waiting on the queue are recorded many to a commit, each
exactly once, and one event that cannot be recorded is dealt with alone while the rest are recorded."""
import sys
import uuid

import psycopg2
import psycopg2.extras
import pytest
from kombu import Connection
from nameko.containers import ServiceContainer

from sanad.contracts import routing
from sanad.contracts.events import new_event
from sanad.platform import inbox
from sanad.platform.database import Database
from sanad.platform.inbox import BATCH_SIZE, consume_batches, handle_batch
from tests.support.rabbit import publish_events
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

FAILING_REFERENCE = "SND-FAIL-0001"


class StatusRecorder:
    """Records intake's status events as intake-status does, with a handler that fails on one case."""
    name = "batch_probe"

    db = Database("intake")

    @consume_batches(routing.INTAKE_CASE_STATUS, requeue_on_error=True)
    def record(self, bodies):
        handle_batch(self.db, routing.INTAKE_CASE_STATUS.name, bodies, record)


def record(cur, event):
    """The handler (looked up at each batch, so a test can replace it)."""
    if event.data["reference"] == FAILING_REFERENCE:
        raise RuntimeError("this case cannot be recorded")


class LingeringRecorder(StatusRecorder):
    """The same, waiting LINGER for more before a batch that is not full, as intake-status does."""
    name = "batch_probe_lingering"

    @consume_batches(routing.INTAKE_CASE_STATUS, requeue_on_error=True, linger=0.5)
    def record(self, bodies):
        handle_batch(self.db, routing.INTAKE_CASE_STATUS.name, bodies, record)


class BusyRecorder(StatusRecorder):
    """The same, waiting for more only after a batch of several, as the normal lane's services do; the wait
    is long enough that a test would time out on it."""
    name = "batch_probe_busy"

    @consume_batches(routing.INTAKE_CASE_STATUS, requeue_on_error=True, linger_when_busy=60.0)
    def record(self, bodies):
        handle_batch(self.db, routing.INTAKE_CASE_STATUS.name, bodies, record)


def unmatched(reference="SND-TEST-0001"):
    return new_event("case.unmatched", {
        "case_id": uuid.uuid4(), "reference": reference, "level": "low", "governorate": "dhi_qar",
        "services": ["counselling"],
    }, producer="test", lane="normal")


def _recorder(service_class, monkeypatch, database_url, amqp_uri):
    monkeypatch.setenv("SANAD_DATABASE_URL", database_url)
    monkeypatch.setenv("SANAD_AMQP_URI", amqp_uri)
    monkeypatch.setattr(inbox, "RETRY_PAUSE", 0.01)  # a failing event is retried at once, not after seconds
    with Connection(amqp_uri) as connection:
        routing.INTAKE_CASE_STATUS(connection.default_channel).purge()
    return ServiceContainer(service_class, config={"AMQP_URI": amqp_uri, "max_workers": 2})


@pytest.fixture
def recorder(monkeypatch, database_url, amqp_uri):
    """The recorder, not started yet, so that a test can put events on the queue before it runs."""
    container = _recorder(StatusRecorder, monkeypatch, database_url, amqp_uri)
    yield container
    container.stop()


def _running(service_class, monkeypatch, database_url, amqp_uri):
    container = _recorder(service_class, monkeypatch, database_url, amqp_uri)
    container.start()
    yield container
    container.stop()


@pytest.fixture
def lingering_recorder(monkeypatch, database_url, amqp_uri):
    yield from _running(LingeringRecorder, monkeypatch, database_url, amqp_uri)


@pytest.fixture
def busy_recorder(monkeypatch, database_url, amqp_uri):
    yield from _running(BusyRecorder, monkeypatch, database_url, amqp_uri)


def processed(database_url, event_ids):
    """{event id: the id of the transaction that recorded it} for those of `event_ids` recorded."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT event_id::text, xmin::text FROM intake.processed_events WHERE event_id::text = ANY(%s)",
                    (list(event_ids),))
        return dict(cur.fetchall())


def dead_letters(database_url, event_ids):
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        # A message that breaks its contract is set aside with its body but no event id.
        cur.execute("SELECT reason FROM intake.dead_letters WHERE coalesce(event_id::text, body->>'id') = ANY(%s)",
                    (list(event_ids),))
        return cur.fetchall()


def messages_left(amqp_uri):
    """Messages on the queue; with its consumer stopped, unacknowledged ones are back among them."""
    with Connection(amqp_uri) as connection:
        return routing.INTAKE_CASE_STATUS(connection.default_channel).queue_declare(passive=True).message_count


def test_events_waiting_on_the_queue_are_recorded_many_to_a_commit_each_exactly_once(
        recorder, database_url, amqp_uri):
    events = [unmatched() for _ in range(4 * BATCH_SIZE)]
    publish_events(amqp_uri, *events, events[0])  # the first one twice, as a redelivery would
    ids = {str(event.id) for event in events}
    recorder.start()
    wait_until(lambda: len(processed(database_url, ids)) == len(ids), timeout=30, what="every event recorded")
    transactions = set(processed(database_url, ids).values())
    assert len(transactions) <= len(ids) // 5, f"{len(ids)} events took {len(transactions)} commits"
    recorder.stop()
    assert messages_left(amqp_uri) == 0, "a message was never acknowledged"


def test_a_consumer_that_lingers_records_events_trickling_in_together(lingering_recorder, database_url, amqp_uri):
    events = [unmatched() for _ in range(5)]
    for event in events:  # one at a time, as news comes in from several services
        publish_events(amqp_uri, event)
    ids = {str(event.id) for event in events}
    wait_until(lambda: len(processed(database_url, ids)) == len(ids), timeout=30, what="every event recorded")
    assert len(set(processed(database_url, ids).values())) <= 2, "recorded in one or two commits, not five"


def test_a_consumer_that_waits_when_busy_records_a_quiet_queues_events_one_at_a_time_at_once(
        busy_recorder, database_url, amqp_uri):
    events = [unmatched() for _ in range(3)]
    for event in events:
        publish_events(amqp_uri, event)
        wait_until(lambda event=event: processed(database_url, [str(event.id)]), timeout=10,
                   what="the event recorded without waiting for more")
    assert len(set(processed(database_url, {str(event.id) for event in events}).values())) == 3


@pytest.mark.parametrize("fault", ["broken_contract", "handler_fails"])
def test_one_event_that_cannot_be_recorded_is_set_aside_alone_and_the_rest_of_its_batch_is_recorded(
        recorder, database_url, amqp_uri, fault):
    good = [unmatched() for _ in range(20)]
    bad = unmatched(FAILING_REFERENCE)
    publish_events(amqp_uri, *good[:10])
    with Connection(amqp_uri, transport_options={"confirm_publish": True}) as connection:
        body = bad.to_message()
        if fault == "broken_contract":
            del body["data"]["governorate"]
        connection.Producer().publish(body, exchange=routing.EXCHANGE, routing_key=bad.routing_key,
                                      serializer="json", delivery_mode=2)
    publish_events(amqp_uri, *good[10:])
    recorder.start()
    good_ids = {str(event.id) for event in good}
    wait_until(lambda: len(processed(database_url, good_ids)) == len(good_ids), timeout=30,
               what="every good event recorded")
    [set_aside] = wait_until(lambda: dead_letters(database_url, [str(bad.id)]), timeout=30,
                             what="the bad one set aside")
    assert set_aside["reason"].startswith("contract" if fault == "broken_contract" else "handler_failed")
    assert processed(database_url, [str(bad.id)]) == {}
    recorder.stop()
    assert messages_left(amqp_uri) == 0, "a message was never acknowledged"


def test_a_batch_the_database_failed_goes_back_to_the_queue_whole_and_is_recorded_when_it_returns(
        recorder, monkeypatch, database_url, amqp_uri):
    blinks = []

    def database_blinks_once(cur, event):
        if not blinks:
            blinks.append(event.id)
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
    monkeypatch.setattr(sys.modules[__name__], "record", database_blinks_once)
    events = [unmatched() for _ in range(2 * BATCH_SIZE)]
    publish_events(amqp_uri, *events)
    ids = {str(event.id) for event in events}
    recorder.start()
    wait_until(lambda: len(processed(database_url, ids)) == len(ids), timeout=30, what="every event recorded")
    assert blinks, "the database never failed"
    transactions = set(processed(database_url, ids).values())
    assert len(transactions) <= len(ids) // 5, "the failed batch was handed over one message at a time"
    recorder.stop()
    assert messages_left(amqp_uri) == 0


class TwoBatchConsumers:
    """A batch's one acknowledgement covers every earlier message of its channel, which a second batch
    consumer on that channel may not have settled yet."""
    name = "two_batch_consumers"

    db = Database("intake")

    @consume_batches(routing.INTAKE_CASE_STATUS, requeue_on_error=True)
    def first(self, bodies):
        handle_batch(self.db, routing.INTAKE_CASE_STATUS.name, bodies, record)

    @consume_batches(routing.TRIAGE_RISK_OVERRIDDEN, requeue_on_error=True)
    def second(self, bodies):
        handle_batch(self.db, routing.TRIAGE_RISK_OVERRIDDEN.name, bodies, record)


def test_a_service_with_two_batch_consumers_is_refused_at_start(monkeypatch, database_url, amqp_uri):
    monkeypatch.setenv("SANAD_DATABASE_URL", database_url)
    monkeypatch.setenv("SANAD_AMQP_URI", amqp_uri)
    container = ServiceContainer(TwoBatchConsumers, config={"AMQP_URI": amqp_uri})
    with pytest.raises(RuntimeError, match="one batch consumer a service"):
        container.start()
    container.kill()
