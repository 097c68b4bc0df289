"""The integration tier: real RabbitMQ (a virtual host of this run's own), real PostgreSQL (a database
of this run's own), and the six service processes started exactly as `sanad run` starts them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kombu import Connection

from sanad.contracts import routing
from sanad.launcher import PORT_SPAN, Stack
from tests.conftest import ARTIFACTS
from tests.support import rabbit
from tests.support.ports import free_ports


def free_port_base(count=PORT_SPAN):
    """The first of `count` consecutive free loopback ports, by default those of a stack's processes."""
    return free_ports(count)


def module_name(request):
    return request.module.__name__.rsplit(".", 1)[-1]


@pytest.fixture(scope="module")
def amqp_uri(request, run_id):
    """A virtual host of this test module's own, with every queue declared."""
    vhost = f"sanad_test_{run_id}_{module_name(request)}"
    rabbit.create_vhost(vhost)
    uri = f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
    with Connection(uri) as connection:
        routing.declare_all(connection)
    yield uri
    rabbit.delete_vhost(vhost)


@pytest.fixture(scope="module")
def database_url(request, make_database):
    """A database of this test module's own: partners registered by one module never take another's cases."""
    return make_database(module_name(request))


@pytest.fixture(scope="module")
def stack_env(database_url, amqp_uri, keys_file):
    return {
        "SANAD_DATABASE_URL": database_url,
        "SANAD_AMQP_URI": amqp_uri,
        "SANAD_KEYS_FILE": str(keys_file),
        "SANAD_ENV": "development",
        # The test receivers listen on loopback, which notify refuses unless told otherwise.
        "SANAD_ALLOW_PRIVATE_WEBHOOKS": "1",
    }


def sanad_cli(env, *args, stdin=None):
    """Run the `sanad` console script as an operator would, with the test's settings."""
    sanad = Path(sys.executable).with_name("sanad")
    done = subprocess.run([str(sanad), *args], env={**os.environ, **env}, input=stdin, capture_output=True,
                          text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"sanad {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@pytest.fixture(scope="module")
def stack(request, stack_env):
    """Every service process, running until the module's tests are done. Logs go to test-artifacts/logs."""
    log_dir = ARTIFACTS / "logs" / module_name(request)
    running = Stack(env=stack_env, port_base=free_port_base(), log_dir=log_dir)
    running.start()
    try:
        running.wait_healthy(timeout=60)
        yield running
    finally:
        running.stop()
