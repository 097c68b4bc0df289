"""The service tier: each service class driven through nameko's worker_factory, with its real
PostgreSQL dependency (a database of this run's own, emptied before each test) and the real outbox
writer. No broker: events that would be published are read back from the outbox table."""
import json

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from sanad.platform.migrate import SCHEMAS
from sanad.platform.outbox import OutboxWriter
from sanad.platform.pool import Pool

TABLES = """
    SELECT format('%%I.%%I', table_schema, table_name) AS name FROM information_schema.tables
    WHERE table_schema = ANY(%(schemas)s) AND table_name <> 'schema_migrations'
"""


@pytest.fixture(scope="session")
def database_url(make_database):
    return make_database("service")


@pytest.fixture(scope="session")
def pools(database_url):
    made = {schema: Pool(database_url, size=4, schema=schema) for schema in SCHEMAS}
    yield made
    for pool in made.values():
        pool.close()


@pytest.fixture(autouse=True)
def empty_tables(pools):
    with pools["intake"].transaction() as cur:
        cur.execute(TABLES, {"schemas": list(SCHEMAS)})
        names = [row["name"] for row in cur.fetchall()]
        cur.execute(f"TRUNCATE {', '.join(names)} CASCADE")


@pytest.fixture
def sanad(monkeypatch, database_url, keys_file, capsys):
    """Runs `sanad ARGS...` as an operator would, in-process against this database; returns (exit code,
    stdout, stderr)."""
    from sanad import cli
    monkeypatch.setenv("SANAD_DATABASE_URL", database_url)
    monkeypatch.setenv("SANAD_KEYS_FILE", str(keys_file))
    monkeypatch.setenv("SANAD_ALLOW_PRIVATE_WEBHOOKS", "1")

    def run(*args):
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err
    return run


@pytest.fixture
def outbox():
    return OutboxWriter([])


def outbox_events(pool):
    """The events a service has put in its outbox, oldest first, as published message bodies."""
    with pool.transaction() as cur:
        cur.execute("SELECT routing_key, body FROM outbox ORDER BY created_at")
        return [(row["routing_key"], row["body"]) for row in cur.fetchall()]


def rows(pool, query, params=None):
    with pool.transaction() as cur:
        cur.execute(query, params or {})
        return cur.fetchall()


def json_request(method, path, body=None, headers=None, content_type="application/json", raw=None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    builder = EnvironBuilder(method=method, path=path, data=data, headers=headers or {}, content_type=content_type)
    return Request(builder.get_environ())
