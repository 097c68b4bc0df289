"""/metrics and /health for every service, inherited by each service class."""
import logging

from kombu import Connection
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.wrappers import Response

from sanad import settings
from sanad.platform.http import http, json_response

log = logging.getLogger(__name__)


def broker_reachable(amqp_uri) -> bool:
    try:
        with Connection(amqp_uri, connect_timeout=2) as connection:
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


class Observable:
    """Mixed into every service class; expects a `db` dependency."""

    @http("GET", "/metrics")
    def metrics(self, request):
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @http("GET", "/health")
    def health(self, request):
        checks = {
            "database": database_reachable(self.db),
            "broker": broker_reachable(settings.from_environment().amqp_uri),
        }
        healthy = all(checks.values())
        return json_response(200 if healthy else 503, {"status": "ok" if healthy else "unavailable", **checks})
