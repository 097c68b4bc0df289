"""Fixtures shared by the tiers. The unit tier uses none of them; the service tier gets a real
PostgreSQL database of its own; the integration tier adds a RabbitMQ virtual host of its own and the
real service processes. Every name made here carries a random suffix and is dropped afterwards, so
tests can run on a machine whose PostgreSQL and RabbitMQ are shared."""
import os
import secrets
from pathlib import Path

import pytest

from sanad.crypto import Keys, write_keys
from sanad.platform.migrate import drop_database, ensure_database, migrate

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
# The tests' partners and pagers listen on loopback over plain HTTP, which only development allows; the
# tests that need production set it themselves.
os.environ.setdefault("SANAD_ENV", "development")
POSTGRES = os.environ.get("SANAD_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")


@pytest.fixture(scope="session")
def run_id():
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def make_database(run_id):
    """Makes migrated databases of this test run's own (one per name asked for); drops them at the end."""
    made = []

    def make(name):
        url = f"{POSTGRES}/sanad_test_{run_id}_{name}"
        ensure_database(url)
        migrate(url)
        made.append(url)
        return url

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture(scope="session")
def keys():
    return Keys.generate()


@pytest.fixture(scope="session")
def keys_file(tmp_path_factory, keys):
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    write_keys(path, keys)
    return path
