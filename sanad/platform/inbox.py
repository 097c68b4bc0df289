"""Handling an event exactly once in effect.

The event id is recorded in the same transaction as the handler's effect, so a redelivered or duplicated
event does nothing. A message that breaks its contract (as parse reads it, or in the sealed parts its
handler opens) is set aside in dead_letters with the reason and acknowledged, so the queue keeps flowing.
Any other failure returns the message to the queue after a pause (the database may be restarting); after
MAX_ATTEMPTS failures of the same event it is set aside too, rather than blocking its queue for ever.
Callers consume with requeue_on_error=True: nameko's default acknowledges a message whose handler raised,
which loses it.

Services consume through this module's `consume`, whose queue consumer differs from nameko's in two ways:
- A message that cannot even be decoded (broken JSON, bytes that are not UTF-8, a content type the
  service refuses) never reaches a handler: kombu acknowledges it and writes its raw body into the log, so
  it is lost without a trace an operator would look at, and whatever it held is in the log. It is set
  aside in dead_letters instead, its body unlogged.
- When the broker goes away while a worker is finishing, acknowledging its message fails with a socket
  error that nameko does not expect, and the failed worker takes the whole service down. The broker
  delivers an unacknowledged message again anyway (and the event id makes that harmless), so the failure
  is logged and the service carries on, reconnecting as it does after any outage.

The queues a flood fills (the normal lane's cases into triage, referral and notify, and intake-status's
reports) are consumed through `consume_batches` instead: the same, but many events to a transaction and a
commit (BatchEventConsumer, handle_batch). In a surge, commits are what PostgreSQL spends most on and what
every other transaction queues behind. The critical lane keeps one event to a transaction, so that its
case never waits for others to be handled with it.
"""
import collections
import json
import logging
import time
from contextlib import contextmanager

import eventlet
import eventlet.event
import psycopg2.errors
from amqp.exceptions import ConnectionError as AMQPConnectionError
from nameko.exceptions import ContainerBeingKilled
from nameko.messaging import Consumer, QueueConsumer

from sanad.contracts.events import ContractError, parse
from sanad.platform import metrics
from sanad.platform.database import database_of
from sanad.platform.pool import CONNECTION_ERRORS, Prepared

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
RETRY_PAUSE = 1.0

# One event's id, sent with its handler's first statement (or its COMMIT): an event seen before fails it on
# the table's key, PROCESSED_KEY, and its transaction, the handler's work with it, is rolled back.
RECORD_FIRST_TIME = Prepared("""
    INSERT INTO processed_events (event_id, event_type) VALUES (%(id)s, %(type)s)
""")
PROCESSED_KEY = "processed_events_pkey"
RECORD_PROCESSED = Prepared("""
    INSERT INTO processed_events (event_id, event_type)
    SELECT * FROM unnest(%(ids)s::uuid[], %(types)s::text[])
    ON CONFLICT (event_id) DO NOTHING RETURNING event_id
""")
RECORD_FAILURE = """
    INSERT INTO handler_failures (event_id, attempts, last_error) VALUES (%(id)s, 1, %(error)s)
    ON CONFLICT (event_id) DO UPDATE
    SET attempts = handler_failures.attempts + 1, last_error = EXCLUDED.last_error, updated_at = now()
    RETURNING attempts
"""
INSERT_DEAD_LETTER = """
    INSERT INTO dead_letters (queue, event_id, event_type, reason, body)
    VALUES (%(queue)s, %(event_id)s, %(event_type)s, %(reason)s, %(body)s)
"""


def handle_event(pool, queue, body, handler):
    """Parse `body`, then run handler(cursor, event) once per event id. Returns the handler's result,
    or None for a duplicate or a message set aside. The event's id goes to PostgreSQL with the handler's
    first statement, not in a round trip of its own before the handler runs: on the critical lane, which
    handles one event at a time, that round trip took 0.3 to 0.5 ms of each hop's 3 to 5
    (docs/performance.md, item 44). A duplicate is then known when that statement fails, after the
    handler has begun; everything it did in the transaction is rolled back, and what it did outside
    must be undone on failure anyway (notify gives back the slots it reserved)."""
    started = time.perf_counter()
    try:
        event = parse(body)
    except ContractError as exc:
        _dead_letter(pool, queue, body, None, "contract", json.dumps(exc.errors, sort_keys=True))
        return None
    try:
        with pool.transaction() as cur:
            cur.later(RECORD_FIRST_TIME, {"id": event.id, "type": event.type})
            result = handler(cur, event)
    except CONNECTION_ERRORS:
        metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="retried").inc()
        log.warning("database unavailable while handling %s %s; returning it to the queue", event.type, event.id)
        eventlet.sleep(RETRY_PAUSE)
        raise
    except ContractError as exc:
        # What the handler read of the event breaks its contract (sealed particulars that open to something
        # else): it would every time, so it is set aside at once, as a message parse refuses is.
        _dead_letter(pool, queue, body, event, "contract", json.dumps(exc.errors, sort_keys=True))
        return None
    except Exception as exc:
        if _seen_before(exc):
            metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="duplicate").inc()
            return None
        # Only the exception's type is kept: its message may quote personal data.
        attempts = _record_failure(pool, event, type(exc).__name__)
        log.exception("handler failed on %s %s (attempt %s of %s)", event.type, event.id, attempts, MAX_ATTEMPTS)
        if attempts >= MAX_ATTEMPTS:
            _dead_letter(pool, queue, body, event, "handler_failed", type(exc).__name__)
            return None
        metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="retried").inc()
        eventlet.sleep(RETRY_PAUSE * attempts)
        raise
    metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="handled").inc()
    metrics.EVENT_HANDLING_SECONDS.labels(queue=queue).observe(time.perf_counter() - started)
    return result


def handle_batch(pool, queue, bodies, handler, prepare=None):
    """handle_event for several messages with one transaction and one commit: each event's effect is
    recorded under its own event id, so duplicates still do nothing. Events are handled in the order of
    their correlation id (the case), and those of one case in the order they came: batches handled side
    by side then take their rows' locks in one order, and cannot deadlock. The batch's event ids are
    recorded in one statement, a round trip for the batch rather than one for each event. `prepare`, if
    given, is called as prepare(cursor, events) with the events to handle (duplicates left out) before
    the first of them, to read what their handlers need in one round trip rather than one each.
    One message is handled by handle_event itself. With several, any failure raises and nothing is
    recorded. The database unavailable, the batch consumer returns every message to the queue after a
    pause; any other failure (a broken contract, the handler), it hands the messages over one at a
    time, so that only the one at fault is retried or set aside. Returns the handler's results, None
    for a duplicate."""
    metrics.EVENT_BATCH_SIZE.labels(queue=queue).observe(len(bodies))
    if len(bodies) == 1:
        return [handle_event(pool, queue, bodies[0], handler)]
    started = time.perf_counter()
    events = sorted((parse(body) for body in bodies), key=lambda event: str(event.correlation_id))
    results, outcomes = [], []
    try:
        with pool.transaction() as cur:
            firsts = _first_times(cur, events)
            if prepare is not None:
                prepare(cur, [event for event, first in zip(events, firsts) if first])
            for event, first in zip(events, firsts):
                results.append(handler(cur, event) if first else None)
                outcomes.append("handled" if first else "duplicate")
    except CONNECTION_ERRORS:
        metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="retried").inc(len(events))
        log.warning("database unavailable while handling a batch of %s events; returning them to the queue",
                    len(events))
        eventlet.sleep(RETRY_PAUSE)
        raise
    seconds = time.perf_counter() - started
    for outcome in outcomes:
        metrics.EVENTS_CONSUMED.labels(queue=queue, outcome=outcome).inc()
        if outcome == "handled":
            metrics.EVENT_HANDLING_SECONDS.labels(queue=queue).observe(seconds)
    return results


def _seen_before(exc) -> bool:
    """Whether a handler's transaction failed on RECORD_FIRST_TIME: its event was handled before."""
    return isinstance(exc, psycopg2.errors.UniqueViolation) and exc.diag.constraint_name == PROCESSED_KEY


def _first_times(cur, events) -> list[bool]:
    """Record the ids of `events` in the handlers' transaction, in one statement; for each, False if it
    was recorded before (a duplicate). An event the batch holds twice is first only where it first
    appears."""
    cur.execute(RECORD_PROCESSED, {"ids": [event.id for event in events],
                                   "types": [event.type for event in events]})
    new = {str(row["event_id"]) for row in cur.fetchall()}
    firsts = []
    for event in events:
        firsts.append(str(event.id) in new)
        new.discard(str(event.id))
    return firsts


def _record_failure(pool, event, error):
    with pool.transaction() as cur:
        cur.execute(RECORD_FAILURE, {"id": str(event.id), "error": error})
        return cur.fetchone()["attempts"]


def _dead_letter(pool, queue, body, event, reason, detail):
    with pool.transaction() as cur:
        cur.execute(INSERT_DEAD_LETTER, {
            "queue": queue,
            "event_id": str(event.id) if event else None,
            "event_type": event.type if event else None,
            "reason": f"{reason}: {detail}",
            "body": json.dumps(body) if _is_json(body) else None,
        })
    metrics.DEAD_LETTERS.labels(queue=queue, reason=reason).inc()
    metrics.EVENTS_CONSUMED.labels(queue=queue, outcome="dead_lettered").inc()
    log.error("set aside a message from %s: %s", queue, reason)


def _is_json(body):
    try:
        json.dumps(body)
        return True
    except (TypeError, ValueError):
        return False


def set_aside_undecodable(queue_consumer, message, exc):
    """Record a message kombu could not decode in dead_letters (without its body, which is not JSON and
    may hold anything) and acknowledge it. If the database is away, the message goes back to the queue
    after a pause and is set aside once it can be recorded."""
    queue = _queue_of(queue_consumer, message)
    detail = f"{type(exc).__name__} ({message.content_type or 'no content type'})"
    try:
        _dead_letter(database_of(queue_consumer.container).pool, queue, None, None, "undecodable", detail)
    except CONNECTION_ERRORS:
        log.warning("database unavailable while setting aside an undecodable message from %s", queue)
        eventlet.sleep(RETRY_PAUSE)
        message.requeue()
        return
    message.ack()


def _queue_of(queue_consumer, message):
    tag = message.delivery_info.get("consumer_tag")
    for provider, consumer in list(queue_consumer._consumers.items()):
        if tag in consumer._active_tags.values():
            return provider.queue.name
    return message.delivery_info.get("routing_key") or "unknown"


@contextmanager
def _lost_connection_tolerated():
    """A broker gone while a message is settled must not kill the service: the broker delivers the
    unsettled message again, and the handler's inbox makes that harmless."""
    try:
        yield
    except (OSError, AMQPConnectionError) as exc:
        log.warning("connection to the broker lost before a message was settled (%s); the broker will "
                    "deliver it again", type(exc).__name__)


class EventQueueConsumer(QueueConsumer):
    """nameko's queue consumer, except that an undecodable message is set aside instead of being
    acknowledged silently by kombu, and a lost connection while settling is not fatal."""

    def on_decode_error(self, message, exc):
        set_aside_undecodable(self, message, exc)

    def ack_message(self, message):
        with _lost_connection_tolerated():
            super().ack_message(message)

    def requeue_message(self, message):
        with _lost_connection_tolerated():
            super().requeue_message(message)


class EventConsumer(Consumer):
    queue_consumer = EventQueueConsumer()


consume = EventConsumer.decorator
"""Every service consumes with this (and requeue_on_error=True), in place of nameko's `consume`."""

BATCH_SIZE = 50
# How long the normal lane's batch consumers wait to fill their next batch after a batch of several events
# (a flood): fuller batches, fewer commits (docs/performance.md, item 54). See BatchEventConsumer.
BUSY_LINGER = 0.01


class BatchEventQueueConsumer(EventQueueConsumer):
    """The queue consumer of a service's batch consumer: a connection and a channel of its own, whose
    prefetch lets the broker deliver a batch's worth of messages ahead. It serves one batch consumer only,
    which settles every message delivered on the channel in the order they came, so that a batch is
    acknowledged with one frame."""

    @property
    def prefetch_count(self):
        return max(self.container.max_workers, BATCH_SIZE)

    def register_provider(self, provider):
        if self._providers - {provider}:
            raise RuntimeError(f"{self.container.service_name} has a batch consumer already: one batch "
                               f"consumer a service, since a batch's acknowledgement covers its channel's "
                               f"earlier messages")
        super().register_provider(provider)

    def ack_all(self, messages):
        """Acknowledge `messages`, in the order they were delivered, with one frame a channel: the last
        one's, `multiple`, which covers every earlier message of its channel. Only for a batch handed over
        when every earlier message of the channel was settled."""
        last_of_channel = {id(message.channel): message for message in messages}
        for message in last_of_channel.values():
            with _lost_connection_tolerated():
                if message.channel.connection:
                    message.ack(multiple=True)


class BatchEventConsumer(EventConsumer):
    """Hands its service method a list of message bodies: every message already delivered and not yet
    handled, up to BATCH_SIZE, for handle_batch to record with one commit. By default nothing waits to
    fill a batch: a message alone goes at once, and those that arrive while a batch is being handled make
    the next, so the busier a queue, the larger its batches and the cheaper each event. A consumer whose
    events may wait a little (`linger`, in seconds: intake-status, whose news trickles in from four
    services) waits that long for more before a batch that is not full. One given `linger_when_busy`
    (the normal lane's triage, referral and notify) waits that long only after a batch of several
    events, when they come faster than it handles them one by one: a flood's batches fill up and each
    event costs less, while a quiet queue's events go at once (the first after a flood waits once).
    One batch at a time, in the order the messages came: with four side by side (until item 30 in
    docs/performance.md), a flood's batches held two to three events, and the normal lane's services
    spent a sixth to a half more CPU a case. A batch that has committed is acknowledged with one frame
    (BatchEventQueueConsumer.ack_all). When a batch fails because the database is unavailable, its
    messages go back to the queue; when it fails otherwise, they are handed over again one at a time,
    and each is then acknowledged or returned to the queue on its own."""
    queue_consumer = BatchEventQueueConsumer()

    def __init__(self, queue, linger=0.0, linger_when_busy=0.0, **kwargs):
        super().__init__(queue, **kwargs)
        self.linger = linger
        self.linger_when_busy = linger_when_busy

    def setup(self):
        super().setup()
        self._waiting = collections.deque()
        self._pumping = False
        self._last_batch = 0

    def handle_message(self, body, message):
        self._waiting.append((body, message))
        if not self._pumping:
            self._pumping = True
            self.container.spawn_managed_thread(self._pump, identifier=f"{type(self).__name__}.pump")

    def _pump(self):
        try:
            while self._waiting:
                wait = wait_before_batch(self.linger, self.linger_when_busy, self._last_batch, len(self._waiting))
                if wait:
                    eventlet.sleep(wait)
                batch = [self._waiting.popleft() for _ in range(min(BATCH_SIZE, len(self._waiting)))]
                self._last_batch = len(batch)
                if not self._handle(batch) and len(batch) > 1:
                    for one in batch:
                        self._handle([one])
        finally:
            self._pumping = False

    def _handle(self, batch):
        """Run the service method on `batch` and wait for it. True when its messages are settled (each
        acknowledged, or returned to the queue); False for a batch of several that must be split."""
        finished = eventlet.event.Event()

        def settle(worker_ctx, result=None, exc_info=None):
            settled = exc_info is None or len(batch) == 1 or issubclass(exc_info[0], CONNECTION_ERRORS)
            if exc_info is None:
                self.queue_consumer.ack_all([message for _, message in batch])
            elif settled:
                for _, message in batch:
                    self.handle_message_processed(message, result, exc_info)
            finished.send(settled)
            return result, exc_info

        try:
            self.container.spawn_worker(self, ([body for body, _ in batch],), {}, handle_result=settle)
        except ContainerBeingKilled:
            for _, message in batch:
                self.queue_consumer.requeue_message(message)
            return True
        return finished.wait()


def wait_before_batch(linger, linger_when_busy, last_batch, waiting) -> float:
    """Seconds a batch consumer waits for more events before it takes the next batch, with `waiting`
    events at hand and `last_batch` events in the batch before (BatchEventConsumer)."""
    if waiting >= BATCH_SIZE:
        return 0.0
    return linger or (linger_when_busy if last_batch > 1 else 0.0)


consume_batches = BatchEventConsumer.decorator
"""In place of `consume` on the normal lane's busiest queues: the method takes a list of bodies and hands
it to handle_batch."""
