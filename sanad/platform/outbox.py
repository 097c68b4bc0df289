"""The transactional outbox and its relay.

A handler adds its events to the outbox table in the same transaction as its state change, so an event
exists if and only if the change committed. The writer keeps each event in memory too, once its
transaction's COMMIT has succeeded (a transaction that failed, or whose COMMIT went unanswered, leaves
nothing in memory). Right after the worker finishes, the relay publishes those events from memory with
publisher confirms (a batch's confirms awaited together, sanad.platform.broker.ConfirmedPublisher) and
marks them sent, those of MARK_INTERVAL together; a sweep every second publishes whatever a crash or a
broker outage left behind (anything still unsent SWEEP_GRACE seconds after its commit). A crash between
publishing and marking sent publishes an event twice, which consumers absorb (see sanad.platform.inbox).
Work a worker starts and does not wait for hands its events over as each of its transactions commits
(OutboxWriter.detached).
Publishing from memory spares the relay reading back and locking what the worker has just written: a
round trip to PostgreSQL and a row lock for every batch of events (docs/performance.md, item 29). A relay
that has fallen behind leaves what it holds older than FROM_MEMORY_WITHIN to the sweeps: the sweep of
another process reading the same table (a service's critical process) may have published such an
event already, and publishing from memory checks nothing.

The relay runs in one green thread per process, outside the workers, so a broker outage never holds a
worker (or an operator's HTTP request) hostage: events simply wait in PostgreSQL. On a graceful stop
(SIGTERM), nameko lets the last workers finish before stopping the outbox, which then gives the relay a
last pass, so a service that was told to stop does not leave its final events for the next start.

Events on the critical lane do not wait for the relay. In a busy process every database or broker wait
of a green thread hands the turn to every other ready worker, and in a surge each turn costs tens of
milliseconds: the relay, or a worker claiming its event the relay's way, made a critical case wait a
quarter of a second. So the worker that committed a critical event publishes it itself, from memory,
right after its answer or acknowledgement has gone, on a connection of its own, and waits only for the
broker's confirm; the relay marks it sent with the others. If publishing fails, the relay sends it as
any other. If marking comes later than the sweep's grace, the sweep publishes it again, which consumers
absorb.
"""
import json
import logging
import time
from dataclasses import dataclass
from functools import partial

import eventlet
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider

from sanad import settings
from sanad.contracts import routing
from sanad.platform import metrics
from sanad.platform.broker import ConfirmedPublisher, release_quietly
from sanad.platform.database import database_of
from sanad.platform.pool import PLAIN_INDEX_SCANS, Prepared
from sanad.platform.precedence import PRECEDENCE

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0
SWEEP_BATCH = 500
SWEEP_GRACE = 2.0  # seconds an event is left to the worker's or the relay's own publishing
FROM_MEMORY_WITHIN = SWEEP_GRACE / 2  # the relay publishes from memory only events younger than this
# Events published from memory are marked sent together, at most this long after: a transaction every
# turn of the relay was a commit for every few events in a flood. Well inside SWEEP_GRACE.
MARK_INTERVAL = 0.2
PURGE_INTERVAL = 3600.0  # sent events are kept 7 days; deleting them reads the whole table, so not every sweep
RETRY_PAUSE = 1.0
LAST_PASS_SECONDS = 5.0  # how long a stopping service waits for its last events to be published

INSERT_EVENT = Prepared("""
    INSERT INTO outbox (id, routing_key, body) VALUES (%(id)s, %(routing_key)s, %(body)s)
""")
CLAIM_OLDEST = """
    SELECT id, routing_key, body FROM outbox
    WHERE sent_at IS NULL
    ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
# What the sweep takes: events the after-worker paths should have sent by now. Younger ones are theirs;
# a sweep that took them would hold a fresh critical event in a batch of hundreds during a surge.
CLAIM_LEFT_BEHIND = """
    SELECT id, routing_key, body FROM outbox
    WHERE sent_at IS NULL AND created_at < now() - make_interval(secs => %(grace)s)
    ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
"""
MARK_SENT = "UPDATE outbox SET sent_at = now() WHERE id = ANY(%(ids)s::uuid[])"
# Marking events sent is the only change the relay makes, and losing it costs nothing but a duplicate:
# an event whose mark a crash of PostgreSQL lost is published again, and consumers absorb it. So the
# relay's transactions do not wait for their commit to reach the disk, which in a surge means waiting
# behind every other transaction's flush (PostgreSQL's asynchronous commit: such a crash loses at most
# the last few hundred milliseconds of them, and never leaves the database inconsistent).
MARKING_NEED_NOT_WAIT = "SET LOCAL synchronous_commit = off"
# The sweep's queries (CLAIM_LEFT_BEHIND, CLAIM_OLDEST, BACKLOG) run with PLAIN_INDEX_SCANS. Every event
# leaves an entry in outbox_unsent that is dead once the event is marked sent, until the table is
# vacuumed: a minute's worth in a surge with autovacuum on, a whole run with it off. Read by a bitmap
# scan, that cost a sweep 24 ms (1,200 table pages) in the benchmark; read by a plain index scan, 0.2 ms
# once the dead entries were marked.
BACKLOG = """
    SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_age
    FROM outbox WHERE sent_at IS NULL
"""
PURGE_SENT = "DELETE FROM outbox WHERE sent_at < now() - interval '7 days'"


@dataclass(frozen=True)
class Added:
    """An event a worker added to the outbox, kept in memory until the worker ends."""
    id: str
    routing_key: str
    body: dict
    critical: bool


class OutboxWriter:
    """What a worker sees: add events inside its own transaction, and say when its case is critical.
    `added` receives each event once its transaction has committed (`cursor` is a
    sanad.platform.pool.Transaction); `hand_over` gives committed events to the relay (for detached()).
    A writer with no relay (made in a test) keeps a detached writer's events with its own."""

    def __init__(self, added, go_first=None, hand_over=None):
        self._added = added
        self._go_first = go_first
        self._hand_over = hand_over if hand_over is not None else added.extend

    def detached(self) -> "OutboxWriter":
        """A writer for work this worker starts and does not wait for (notify's webhook attempts run in a
        pool of their own). What such work commits after its worker ended would otherwise wait for the
        sweep, seconds later: the events of each of its transactions go to the relay, or out at once
        if critical, as soon as that transaction commits."""
        return OutboxWriter(_HandedOver(self._hand_over), hand_over=self._hand_over)

    def add(self, cursor, event):
        body = event.to_message()
        cursor.later(INSERT_EVENT, {"id": str(event.id), "routing_key": event.routing_key, "body": json.dumps(body)})
        cursor.after_commit(partial(self._added.append,
                                    Added(str(event.id), event.routing_key, body, event.lane == "critical")))

    def go_first(self):
        """This worker's case is critical: until the worker ends, its critical events published, the
        process's other green threads wait before their round trips to PostgreSQL
        (sanad.platform.precedence). A worker calls it as soon as it knows, before its own round trips."""
        if self._go_first is not None:
            self._go_first()


class _HandedOver:
    """In place of a worker's list of added events: each is handed over as it comes."""

    def __init__(self, hand_over):
        self._hand_over = hand_over

    def append(self, added):
        self._hand_over([added])


class Outbox(DependencyProvider):
    def setup(self):
        self.amqp_uri = settings.from_environment().amqp_uri
        self.database = database_of(self.container)
        self.wakeups = LightQueue()
        self.added = {}
        self.holders = {}  # worker context -> its precedence, for workers whose case is critical
        self.publisher = None  # the relay's
        self.express = None  # the publisher workers publish critical events on
        self.express_lock = Semaphore()
        self.published = LightQueue()  # ids of events published from memory, for the relay to mark sent
        self.stopping = False
        self.relay_thread = None
        self.last_purge = float("-inf")

    def start(self):
        self.relay_thread = self.container.spawn_managed_thread(self._run, identifier="outbox-relay")

    def stop(self):
        self.stopping = True
        self.wakeups.put((time.monotonic(), []))
        if self.relay_thread is not None:
            with eventlet.Timeout(LAST_PASS_SECONDS, False):
                self.relay_thread.wait()
        self._close_publisher()
        self.express = release_quietly(self.express)

    def kill(self):
        self._close_publisher()
        self.express = release_quietly(self.express)

    def get_dependency(self, worker_ctx):
        def go_first():
            if worker_ctx not in self.holders:
                self.holders[worker_ctx] = PRECEDENCE.hold()

        return OutboxWriter(self.added.setdefault(worker_ctx, []), go_first, self._hand_over)

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        added = self.added.pop(worker_ctx, [])
        if added and exc_info is None:
            self._hand_over(added)

    def _hand_over(self, added):
        """Committed events: critical ones published now, by the caller; the others, and any critical one
        that could not be, to the relay."""
        critical = [event for event in added if event.critical]
        if critical and self._publish_now(critical):
            added = [event for event in added if not event.critical]
        self.wakeups.put((time.monotonic(), added))  # even empty: the relay marks what was published

    def worker_teardown(self, worker_ctx):
        """Right after worker_result, whatever became of the worker: by now its critical events have been
        published (or left to the relay), so its precedence ends here."""
        self.added.pop(worker_ctx, None)
        holder = self.holders.pop(worker_ctx, None)
        if holder is not None:
            PRECEDENCE.release(holder)

    # Critical events, published by the worker that committed them -------------------------------------

    def _publish_now(self, events) -> bool:
        """Publish committed critical events from memory, with confirms; the relay marks them sent. False
        leaves them to the relay."""
        try:
            with self.express_lock:
                if self.express is None:
                    self.express = self._connect()
                self._publish_from_memory(self.express, events)
        except Exception:  # noqa: BLE001 -- the relay still has them: they are in the table, unsent
            metrics.PUBLISH_FAILURES.inc()
            log.warning("could not publish critical events at once; the relay will", exc_info=True)
            self.express = release_quietly(self.express)
            return False
        return True

    def _publish_from_memory(self, publisher, events):
        """Publish committed events as their workers held them, in order; the relay marks them sent within
        MARK_INTERVAL. If publishing fails, they are left to the relay or the sweep."""
        self._publish(publisher, [(event.id, event.routing_key, event.body) for event in events])
        self.published.put([event.id for event in events])

    def _publish(self, publisher, messages):
        """Publish (event id, routing key, body) messages and wait for the broker's confirms."""
        publisher.publish_all(routing.EXCHANGE, messages)
        for _, _, body in messages:
            metrics.EVENTS_PUBLISHED.labels(type=body["type"]).inc()

    # The relay ---------------------------------------------------------------------------------------

    def _run(self):
        last_sweep = last_mark = 0.0
        while True:
            to_mark = self.published.qsize() > 0
            events = self._wait_for_events(
                timeout=max(0.0, last_mark + MARK_INTERVAL - time.monotonic()) if to_mark else SWEEP_INTERVAL)
            if self.stopping:
                self._last_pass()
                return
            try:
                if events:
                    self._publish_from_memory(self._publisher(), events)
                if time.monotonic() - last_mark >= MARK_INTERVAL:
                    self._mark_published()
                    last_mark = time.monotonic()
                if time.monotonic() - last_sweep >= SWEEP_INTERVAL:
                    self._sweep()
                    last_sweep = time.monotonic()
            except Exception:  # noqa: BLE001 -- the relay must outlive any outage; events wait in the table
                metrics.PUBLISH_FAILURES.inc()
                log.warning("outbox relay failed; events stay queued in PostgreSQL", exc_info=True)
                self._close_publisher()
                eventlet.sleep(RETRY_PAUSE)

    def _last_pass(self):
        try:
            self._mark_published()
            while self._relay(CLAIM_OLDEST, {"limit": SWEEP_BATCH}) == SWEEP_BATCH:
                pass
        except Exception:  # noqa: BLE001 -- whatever is left waits in the table for the next start
            metrics.PUBLISH_FAILURES.inc()
            log.warning("outbox relay could not publish everything before stopping; the rest waits in PostgreSQL",
                        exc_info=True)

    def _wait_for_events(self, timeout):
        """The events workers handed over since the last pass, but those handed over longer ago than
        FROM_MEMORY_WITHIN: those are left to the sweep, which claims what it publishes."""
        try:
            handed = [self.wakeups.get(timeout=timeout)]
        except Empty:
            return []
        while True:
            try:
                handed.append(self.wakeups.get_nowait())
            except Empty:
                break
        fresh_since = time.monotonic() - FROM_MEMORY_WITHIN
        return [event for at, events in handed if at >= fresh_since for event in events]

    def _mark_published(self):
        ids = []
        while True:
            try:
                ids.extend(self.published.get_nowait())
            except Empty:
                break
        if ids:
            with self.database.pool.transaction() as cur:
                cur.later(MARKING_NEED_NOT_WAIT)
                cur.later(MARK_SENT, {"ids": ids})

    def _sweep(self):
        while self._relay(CLAIM_LEFT_BEHIND, {"limit": SWEEP_BATCH, "grace": SWEEP_GRACE}) == SWEEP_BATCH:
            pass
        with self.database.pool.transaction() as cur:
            cur.later(PLAIN_INDEX_SCANS)
            cur.execute(BACKLOG)
            row = cur.fetchone()
            if time.monotonic() - self.last_purge >= PURGE_INTERVAL:
                cur.later(PURGE_SENT)
                self.last_purge = time.monotonic()
        metrics.OUTBOX_PENDING.set(row["pending"])
        metrics.OUTBOX_OLDEST_AGE.set(float(row["oldest_age"]))

    def _relay(self, claim_sql, params):
        """Claim unsent events from the table, publish them and mark them sent, in one transaction."""
        with self.database.pool.transaction() as cur:
            cur.later(MARKING_NEED_NOT_WAIT)
            cur.later(PLAIN_INDEX_SCANS)
            cur.execute(claim_sql, params)
            rows = cur.fetchall()
            if not rows:
                return 0
            self._publish(self._publisher(), [(str(row["id"]), row["routing_key"], row["body"]) for row in rows])
            cur.later(MARK_SENT, {"ids": [str(row["id"]) for row in rows]})
        return len(rows)

    def _publisher(self):
        if self.publisher is None:
            self.publisher = self._connect()
        return self.publisher

    def _connect(self):
        publisher = ConfirmedPublisher(self.amqp_uri)
        routing.declare_all(publisher.connection)
        return publisher

    def _close_publisher(self):
        self.publisher = release_quietly(self.publisher)
