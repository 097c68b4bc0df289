"""The transactional outbox and its relay.

A handler adds its events to the outbox table in the same transaction as its state change, so an event
exists if and only if the change committed. Right after the worker finishes, the relay publishes those
events with publisher confirms and marks them sent; a sweep every second publishes whatever a crash or a
broker outage left behind. A crash between publishing and marking sent publishes an event twice, which
consumers absorb (see sanad.platform.inbox).

The relay runs in one green thread per process, outside the workers, so a broker outage never holds a
worker (or an operator's HTTP request) hostage: events simply wait in PostgreSQL. On a graceful stop
(SIGTERM), nameko lets the last workers finish before stopping the outbox, which then gives the relay a
last pass, so a service that was told to stop does not leave its final events for the next start.

Events on the critical lane do not wait for the relay. In a busy process the relay's green thread takes
its turn behind every worker (each database or broker wait hands the turn on), which cost a critical case
hundreds of milliseconds in a surge. So the worker that committed a critical event publishes it itself,
right after its answer or acknowledgement has gone, on a connection of its own, claiming and marking it
as the relay does. If that fails, the relay sends it as any other.
"""
import json
import logging
import time

import eventlet
from eventlet.queue import Empty, LightQueue
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko.extensions import DependencyProvider

from sanad import settings
from sanad.contracts import routing
from sanad.platform import metrics
from sanad.platform.broker import release_quietly
from sanad.platform.database import database_of

log = logging.getLogger(__name__)

SWEEP_INTERVAL = 1.0
SWEEP_BATCH = 500
SWEEP_GRACE = 2.0  # seconds an event is left to the worker's or the relay's own publishing
RETRY_PAUSE = 1.0
LAST_PASS_SECONDS = 5.0  # how long a stopping service waits for its last events to be published

INSERT_EVENT = """
    INSERT INTO outbox (id, routing_key, body) VALUES (%(id)s, %(routing_key)s, %(body)s)
"""
CLAIM_BY_ID = """
    SELECT id, routing_key, body FROM outbox
    WHERE id = ANY(%(ids)s::uuid[]) AND sent_at IS NULL
    ORDER BY created_at FOR UPDATE SKIP LOCKED
"""
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
BACKLOG = """
    SELECT count(*) AS pending, coalesce(extract(epoch FROM now() - min(created_at)), 0) AS oldest_age
    FROM outbox WHERE sent_at IS NULL
"""
PURGE_SENT = "DELETE FROM outbox WHERE sent_at < now() - interval '7 days'"


class OutboxWriter:
    """What a worker sees: add events inside its own transaction."""

    def __init__(self, added):
        self._added = added

    def add(self, cursor, event):
        cursor.execute(INSERT_EVENT, {
            "id": str(event.id), "routing_key": event.routing_key, "body": json.dumps(event.to_message()),
        })
        self._added.append((str(event.id), event.lane == "critical"))


class Outbox(DependencyProvider):
    def setup(self):
        self.amqp_uri = settings.from_environment().amqp_uri
        self.database = database_of(self.container)
        self.wakeups = LightQueue()
        self.added = {}
        self.connection = None
        self.express = None  # the connection workers publish critical events on
        self.express_lock = Semaphore()
        self.stopping = False
        self.relay_thread = None

    def start(self):
        self.relay_thread = self.container.spawn_managed_thread(self._run, identifier="outbox-relay")

    def stop(self):
        self.stopping = True
        self.wakeups.put([])
        if self.relay_thread is not None:
            with eventlet.Timeout(LAST_PASS_SECONDS, False):
                self.relay_thread.wait()
        self._close_connection()
        self.express = release_quietly(self.express)

    def kill(self):
        self._close_connection()
        self.express = release_quietly(self.express)

    def get_dependency(self, worker_ctx):
        return OutboxWriter(self.added.setdefault(worker_ctx, []))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        added = self.added.pop(worker_ctx, [])
        if not added or exc_info is not None:
            return
        critical = [event_id for event_id, is_critical in added if is_critical]
        if critical and self._publish_now(critical):
            added = [(event_id, is_critical) for event_id, is_critical in added if not is_critical]
        if added:
            self.wakeups.put([event_id for event_id, _ in added])

    def worker_teardown(self, worker_ctx):
        self.added.pop(worker_ctx, None)

    # Critical events, published by the worker that committed them -------------------------------------

    def _publish_now(self, ids) -> bool:
        """Publish committed critical events and mark them sent; False leaves them to the relay."""
        try:
            with self.express_lock:
                if self.express is None:
                    self.express = self._connect()
                self._relay(CLAIM_BY_ID, {"ids": ids}, self.express.Producer())
            return True
        except Exception:  # noqa: BLE001 -- the relay still has them: they are in the table, unsent
            metrics.PUBLISH_FAILURES.inc()
            log.warning("could not publish critical events at once; the relay will", exc_info=True)
            self.express = release_quietly(self.express)
            return False

    # The relay ---------------------------------------------------------------------------------------

    def _run(self):
        last_sweep = 0.0
        while True:
            ids = self._wait_for_ids(timeout=SWEEP_INTERVAL)
            if self.stopping:
                self._last_pass()
                return
            try:
                if ids:
                    self._relay(CLAIM_BY_ID, {"ids": ids})
                if time.monotonic() - last_sweep >= SWEEP_INTERVAL:
                    self._sweep()
                    last_sweep = time.monotonic()
            except Exception:  # noqa: BLE001 -- the relay must outlive any outage; events wait in the table
                metrics.PUBLISH_FAILURES.inc()
                log.warning("outbox relay failed; events stay queued in PostgreSQL", exc_info=True)
                self._close_connection()
                eventlet.sleep(RETRY_PAUSE)

    def _last_pass(self):
        try:
            while self._relay(CLAIM_OLDEST, {"limit": SWEEP_BATCH}) == SWEEP_BATCH:
                pass
        except Exception:  # noqa: BLE001 -- whatever is left waits in the table for the next start
            metrics.PUBLISH_FAILURES.inc()
            log.warning("outbox relay could not publish everything before stopping; the rest waits in PostgreSQL",
                        exc_info=True)

    def _wait_for_ids(self, timeout):
        try:
            ids = list(self.wakeups.get(timeout=timeout))
        except Empty:
            return []
        while True:
            try:
                ids.extend(self.wakeups.get_nowait())
            except Empty:
                return ids

    def _sweep(self):
        while self._relay(CLAIM_LEFT_BEHIND, {"limit": SWEEP_BATCH, "grace": SWEEP_GRACE}) == SWEEP_BATCH:
            pass
        with self.database.pool.transaction() as cur:
            cur.execute(BACKLOG)
            row = cur.fetchone()
            cur.execute(PURGE_SENT)
        metrics.OUTBOX_PENDING.set(row["pending"])
        metrics.OUTBOX_OLDEST_AGE.set(float(row["oldest_age"]))

    def _relay(self, claim_sql, params, producer=None):
        """Claim unsent events, publish them with confirms and mark them sent, in one transaction: an event
        another relay has claimed is skipped, so it is published once unless a crash intervenes."""
        with self.database.pool.transaction() as cur:
            cur.execute(claim_sql, params)
            rows = cur.fetchall()
            if not rows:
                return 0
            producer = producer or self._producer()
            for row in rows:
                producer.publish(
                    row["body"],
                    exchange=routing.EXCHANGE,
                    routing_key=row["routing_key"],
                    serializer="json",
                    delivery_mode=2,
                    message_id=str(row["id"]),
                    retry=False,
                )
                metrics.EVENTS_PUBLISHED.labels(type=row["body"]["type"]).inc()
            cur.execute(MARK_SENT, {"ids": [str(row["id"]) for row in rows]})
        return len(rows)

    def _producer(self):
        if self.connection is None:
            self.connection = self._connect()
            self.producer = self.connection.Producer()
        return self.producer

    def _connect(self):
        connection = Connection(self.amqp_uri, transport_options={"confirm_publish": True}, connect_timeout=5)
        connection.ensure_connection(max_retries=1)
        routing.declare_all(connection)
        return connection

    def _close_connection(self):
        self.connection = release_quietly(self.connection)
