"""The PostgreSQL dependency: one pool per service process, confined to the service's own schema."""
from nameko.extensions import DependencyProvider
from psycogreen.eventlet import patch_psycopg

from sanad import settings
from sanad.platform.pool import Pool

# Connections beyond max_workers, for the outbox relay and timers that run outside workers.
EXTRA_CONNECTIONS = 4


class Database(DependencyProvider):
    def __init__(self, schema):
        self.schema = schema
        self.pool = None

    def setup(self):
        # psycopg2 is C: unless it hands its waits to eventlet's hub, every query and commit stalls the
        # whole process (its other workers, its HTTP server and its outbox relay) until PostgreSQL answers.
        patch_psycopg()
        size = int(self.container.config.get("max_workers", 10)) + EXTRA_CONNECTIONS
        self.pool = Pool(settings.from_environment().database_url, size=size, schema=self.schema,
                         application_name=f"sanad {self.container.service_name}")

    def stop(self):
        self.pool.close()

    def kill(self):
        self.pool.close()

    def get_dependency(self, worker_ctx):
        return self.pool


def database_of(container):
    """The container's Database provider, for other providers that keep state in it (the outbox).

    Providers are set up in no fixed order, so callers read `.pool` when they use it, not in setup()."""
    providers = [dep for dep in container.dependencies if isinstance(dep, Database)]
    if len(providers) != 1:
        raise RuntimeError(f"{container.service_name} needs exactly one Database dependency")
    return providers[0]
