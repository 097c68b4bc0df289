"""A RabbitMQ node of the test's own, which the test may stop, kill and start again at will.

The machine's RabbitMQ (127.0.0.1:5672) is shared with other engineers' test runs and is never touched
here. This node has its own name, ports, data and log directories, configuration (no plugins, listening on
loopback only) and Erlang cookie, all in a temporary directory removed by close(). Its data directory
survives stop() and start(), as a real broker's would, so durable queues and persistent messages come back
with it.
"""
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from kombu import Connection

from sanad.launcher import die_with_parent
from tests.support.ports import free_ports

SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"  # the real script: Debian's wrapper would su to rabbitmq


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class PrivateRabbitMQ:
    def __init__(self, start_timeout=60):
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="sanad-rabbitmq-"))
        self.node = f"sanad-fault-{secrets.token_hex(4)}@localhost"
        self.port = free_ports(2)
        dist_port = self.port + 1
        (self.dir / "rabbitmq.conf").write_text(
            f"listeners.tcp.local = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            # A laptop-sized disk must not make the node refuse publishers halfway through a test.
            "disk_free_limit.absolute = 50MB\n"
        )
        (self.dir / "enabled_plugins").write_text("[].\n")
        (self.dir / "rabbitmq-env.conf").write_text("")  # not /etc/rabbitmq's, which names the shared node
        self.env = {
            **os.environ,
            "HOME": str(self.dir),  # the Erlang cookie lives here
            "RABBITMQ_CONF_ENV_FILE": str(self.dir / "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.process = None

    @property
    def uri(self):
        return f"pyamqp://guest:guest@127.0.0.1:{self.port}/"

    def start(self):
        """Start the node and return once it accepts AMQP connections."""
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.dir / "server.log", "ab") as log:
            # If the test run is killed outright, the start script hears SIGTERM and stops the node.
            self.process = subprocess.Popen([SERVER], env=self.env, cwd=self.dir, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=die_with_parent(signal.SIGTERM))
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ exited with {self.process.returncode}; see {self.dir}/server.log")
            if port_open(self.port) and self._accepts_amqp():
                return
            time.sleep(0.2)
        raise TimeoutError(f"private RabbitMQ not up within {self.start_timeout} s")

    def _accepts_amqp(self):
        try:
            with Connection(self.uri, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
            return True
        except Exception:  # noqa: BLE001 -- still booting
            return False

    def stop(self, kill=False, timeout=30):
        """Stop the node: gracefully (SIGTERM), or as a crash would (SIGKILL). Its data stays."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL if kill else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        # The Erlang VM may outlive the start script by a moment; wait for the port to close.
        deadline = time.monotonic() + timeout
        while port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def restart(self, kill=False):
        self.stop(kill=kill)
        self.start()

    def close(self):
        try:
            self.stop()
            if self.process is not None:
                try:  # anything left in the node's process group (the VM, its port helpers)
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
