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
"""
import json
import logging
import time

import eventlet
from eventlet.queue import Empty, LightQueue
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
        self._added.append(str(event.id))


class Outbox(DependencyProvider):
    def setup(self):
        self.amqp_uri = settings.from_environment().amqp_uri
        self.database = database_of(self.container)
        self.wakeups = LightQueue()
        self.added = {}
        self.connection = None
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

    def kill(self):
        self._close_connection()

    def get_dependency(self, worker_ctx):
        return OutboxWriter(self.added.setdefault(worker_ctx, []))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        ids = self.added.pop(worker_ctx, [])
        if ids and exc_info is None:
            self.wakeups.put(ids)

    def worker_teardown(self, worker_ctx):
        self.added.pop(worker_ctx, None)

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
        while self._relay(CLAIM_OLDEST, {"limit": SWEEP_BATCH}) == SWEEP_BATCH:
            pass
        with self.database.pool.transaction() as cur:
            cur.execute(BACKLOG)
            row = cur.fetchone()
            cur.execute(PURGE_SENT)
        metrics.OUTBOX_PENDING.set(row["pending"])
        metrics.OUTBOX_OLDEST_AGE.set(float(row["oldest_age"]))

    def _relay(self, claim_sql, params):
        with self.database.pool.transaction() as cur:
            cur.execute(claim_sql, params)
            rows = cur.fetchall()
            if not rows:
                return 0
            producer = self._producer()
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
            connection = Connection(self.amqp_uri, transport_options={"confirm_publish": True}, connect_timeout=5)
            connection.ensure_connection(max_retries=1)
            routing.declare_all(connection)
            self.connection = connection
            self.producer = connection.Producer()
        return self.producer

    def _close_connection(self):
        self.connection = release_quietly(self.connection)
