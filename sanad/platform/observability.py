"""/metrics, /health and /ready for every service, inherited by each service class, with the two
dependencies that serve them: the log context (sanad.platform.logs) and a background probe.

/health says whether the process reaches PostgreSQL and RabbitMQ (the launcher and the tests wait on it).
/ready says whether it can do its work: healthy, every migration of this release applied to its schema,
and every queue it consumes declared with a consumer on it (docker-compose's health checks use it).
"""
import logging
from dataclasses import dataclass

import amqp.exceptions
import eventlet
from eventlet.semaphore import Semaphore
from kombu import Connection
from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer
from prometheus_client import REGISTRY
from prometheus_client.exposition import choose_encoder
from werkzeug.wrappers import Response

from sanad import settings
from sanad.platform import metrics
from sanad.platform.broker import release_quietly
from sanad.platform.database import database_of
from sanad.platform.heap import SettledHeap
from sanad.platform.http import http, json_response
from sanad.platform.logs import LogContext
from sanad.platform.migrate import migration_files

log = logging.getLogger(__name__)

PROBE_INTERVAL = 5.0
CONNECT_TIMEOUT = 2

COUNT_DEAD_LETTERS = "SELECT count(*) AS stored FROM dead_letters"
APPLIED_MIGRATIONS = "SELECT name FROM schema_migrations"


def broker_reachable(amqp_uri) -> bool:
    try:
        with Connection(amqp_uri, connect_timeout=CONNECT_TIMEOUT) as connection:
            connection.ensure_connection(max_retries=1)
        return True
    except Exception:  # noqa: BLE001 -- any failure means unreachable, which is what /health reports
        return False


def database_reachable(pool) -> bool:
    try:
        with pool.transaction() as cur:
            cur.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 -- as above
        return False


@dataclass(frozen=True)
class QueueState:
    name: str
    declared: bool
    ready: int
    consumers: int


class Probe(DependencyProvider):
    """Measures what no handler counts as it happens: how many messages wait in the queues this process
    consumes and how many consumers they have, how many dead letters its schema keeps, and whether
    PostgreSQL and RabbitMQ answer. It runs every PROBE_INTERVAL seconds in a thread of its own, so a
    scrape reads gauges and never waits on a broker that is down. Workers get `readiness()`."""

    def setup(self):
        self.amqp_uri = settings.from_environment().amqp_uri
        self.database = database_of(self.container)
        consumed = {ep.queue.name for ep in self.container.entrypoints if isinstance(ep, Consumer)}
        self.queues = sorted(consumed)
        self.expected_migrations = [f"{origin}/{path.name}" for origin, path in migration_files(self.database.schema)]
        self.connection = None
        self.broker_lock = Semaphore()
        self.last_up = {}

    def start(self):
        self.container.spawn_managed_thread(self._run, identifier="observability-probe")

    def stop(self):
        self._close()

    def kill(self):
        self._close()

    def get_dependency(self, worker_ctx):
        return self.readiness

    def _run(self):
        while True:
            self.measure()
            eventlet.sleep(PROBE_INTERVAL)

    def measure(self):
        try:
            with self.database.pool.transaction() as cur:
                cur.execute(COUNT_DEAD_LETTERS)
                stored = cur.fetchone()["stored"]
            metrics.DEAD_LETTERS_STORED.labels(schema=self.database.schema).set(stored)
            self._dependency("database", True)
        except Exception:  # noqa: BLE001 -- unreachable is the measurement
            self._dependency("database", False)
        self._dependency("broker", self.queue_states() is not None)

    def queue_states(self):
        """Each consumed queue's depth and consumers (also set as gauges), or None if RabbitMQ is unreachable."""
        with self.broker_lock:
            try:
                states = [self._declare_passively(name) for name in self.queues]
                if not self.queues:
                    self._connection().ensure_connection(max_retries=1)
            except Exception:  # noqa: BLE001 -- a broken connection is dropped and opened again next time
                self._close()
                return None
        for state in states:
            metrics.QUEUE_MESSAGES_READY.labels(queue=state.name).set(state.ready)
            metrics.QUEUE_CONSUMERS.labels(queue=state.name).set(state.consumers)
        return states

    def _declare_passively(self, name):
        channel = self._connection().channel()
        try:
            _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            return QueueState(name, True, ready, consumers)
        except amqp.exceptions.NotFound:  # the broker closes the channel; the connection lives on
            return QueueState(name, False, 0, 0)
        finally:
            try:
                channel.close()
            except Exception:  # noqa: BLE001 -- already closed by the broker
                pass

    def readiness(self):
        """(ready, details): every check /ready makes, measured now."""
        details = {"database": False, "migrations": False, "broker": False, "queues": {}, "problems": []}
        try:
            with self.database.pool.transaction() as cur:
                cur.execute(APPLIED_MIGRATIONS)
                applied = {row["name"] for row in cur.fetchall()}
            details["database"] = True
            missing = [name for name in self.expected_migrations if name not in applied]
            details["migrations"] = not missing
            if missing:
                details["problems"].append(f"migrations not applied: {', '.join(missing)}")
        except Exception:  # noqa: BLE001
            details["problems"].append("database unreachable")
        states = self.queue_states()
        if states is None:
            details["problems"].append("broker unreachable")
        else:
            details["broker"] = True
            for state in states:
                details["queues"][state.name] = {"declared": state.declared, "ready": state.ready,
                                                 "consumers": state.consumers}
                if not state.declared:
                    details["problems"].append(f"queue {state.name} is not declared (run `sanad migrate`)")
                elif state.consumers == 0:
                    details["problems"].append(f"queue {state.name} has no consumer")
        return not details["problems"], details

    def _dependency(self, name, up):
        metrics.DEPENDENCY_UP.labels(dependency=name).set(1 if up else 0)
        if self.last_up.get(name, True) != up:
            (log.info if up else log.warning)("%s %s", name, "reachable again" if up else "unreachable")
        self.last_up[name] = up

    def _connection(self):
        if self.connection is None:
            connection = Connection(self.amqp_uri, connect_timeout=CONNECT_TIMEOUT)
            connection.ensure_connection(max_retries=1)
            self.connection = connection
        return self.connection

    def _close(self):
        self.connection = release_quietly(self.connection)


class Observable:
    """Mixed into every service class; expects a `db` dependency."""

    log_context = LogContext()
    probe = Probe()
    heap = SettledHeap()

    @http("GET", "/metrics")
    def metrics(self, request):
        """In the format the scraper asks for (Prometheus asks for OpenMetrics first), under a Content-Type
        naming each parameter once: Prometheus 3 refuses to parse a scrape whose type it cannot read."""
        encode, content_type = choose_encoder(request.headers.get("Accept"))
        return Response(encode(REGISTRY), content_type=content_type)

    @http("GET", "/health")
    def health(self, request):
        checks = {
            "database": database_reachable(self.db),
            "broker": broker_reachable(settings.from_environment().amqp_uri),
        }
        healthy = all(checks.values())
        return json_response(200 if healthy else 503, {"status": "ok" if healthy else "unavailable", **checks})

    @http("GET", "/ready")
    def ready(self, request):
        ready, details = self.probe()
        return json_response(200 if ready else 503, {"status": "ready" if ready else "not_ready", **details})
