"""Everything the benchmark runs against: a database and a RabbitMQ virtual host of its own on the
local servers, a key file, the partner receiver, the partner directory pointing at it, and the
service processes started by sanad.launcher.Stack exactly as `sanad run` starts them."""
import os
import random
import secrets
import socket
import uuid
import subprocess
import sys
import tempfile
import urllib.parse
from pathlib import Path

import psycopg2
import requests
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from sanad import webhooks
from sanad.contracts import routing
from sanad.crypto import Keys, write_keys
from sanad.launcher import PROCESSES, Stack
from sanad.platform.migrate import drop_database, ensure_database, migrate
from bench.floor import connect
from bench.receiver import PartnerReceiver

POSTGRES = os.environ.get("SANAD_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
RABBIT_MANAGEMENT = os.environ.get("SANAD_BENCH_RABBIT_MANAGEMENT", "http://127.0.0.1:15672/api")
RABBIT_AUTH = ("guest", "guest")
PARTNERS = (
    ("Bench Counselling Centre", "counselling"),  # takes the critical cases
    ("Bench Legal Aid", "legal_aid"),  # takes the normal cases
)


class Rabbit:
    """The few calls of RabbitMQ's management API the benchmark needs."""

    @staticmethod
    def _vhost_path(name):
        return urllib.parse.quote(name, safe="")

    def create_vhost(self, name):
        path = self._vhost_path(name)
        requests.put(f"{RABBIT_MANAGEMENT}/vhosts/{path}", auth=RABBIT_AUTH, timeout=10).raise_for_status()
        requests.put(f"{RABBIT_MANAGEMENT}/permissions/{path}/guest", auth=RABBIT_AUTH, timeout=10,
                     json={"configure": ".*", "write": ".*", "read": ".*"}).raise_for_status()

    def delete_vhost(self, name):
        requests.delete(f"{RABBIT_MANAGEMENT}/vhosts/{self._vhost_path(name)}", auth=RABBIT_AUTH, timeout=30)

    def message_stats(self, vhost):
        """Messages published into and delivered out of the vhost since it was made (refreshed every few s)."""
        response = requests.get(f"{RABBIT_MANAGEMENT}/vhosts/{self._vhost_path(vhost)}", auth=RABBIT_AUTH,
                                timeout=10)
        response.raise_for_status()
        return response.json().get("message_stats", {})

    def queue_depths(self, vhost):
        """{queue: messages ready + unacknowledged}; the management API refreshes these every few seconds."""
        response = requests.get(f"{RABBIT_MANAGEMENT}/queues/{self._vhost_path(vhost)}", auth=RABBIT_AUTH,
                                timeout=10)
        response.raise_for_status()
        return {q["name"]: q.get("messages", 0) for q in response.json()}


def free_port_base(count=None, attempts=50):
    count = count or max(p.port_offset for p in PROCESSES) + 1
    for _ in range(attempts):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no free range of ports")


def sanad_cli(env, *args, stdin=None):
    sanad = Path(sys.executable).with_name("sanad")
    done = subprocess.run([str(sanad), *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60, input=stdin)
    if done.returncode != 0:
        raise RuntimeError(f"sanad {args[0]} {args[1]} failed: {done.stderr.strip()}")
    return done.stdout


class BenchEnvironment:
    """Makes (or is handed) a database, a vhost and a key file; registers the partners; starts the
    receiver and the stack. Whatever it made itself, it drops in close()."""

    def __init__(self, log_dir, database_url=None, amqp_uri=None, keys_file=None, extra_env=None):
        self.log_dir = Path(log_dir)
        self.rabbit = Rabbit()
        self.run_id = secrets.token_hex(4)
        self._made_database = database_url is None
        self._made_vhost = amqp_uri is None
        self.database_url = database_url or f"{POSTGRES}/sanad_bench_{self.run_id}"
        self.vhost = f"sanad_bench_{self.run_id}" if amqp_uri is None else urllib.parse.unquote(
            urllib.parse.urlparse(amqp_uri).path.lstrip("/"))
        self.amqp_uri = amqp_uri or f"pyamqp://guest:guest@127.0.0.1:5672/{self.vhost}"
        self._tmp = None
        if keys_file is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sanad-bench-")
            keys_file = Path(self._tmp.name) / "keys.json"
            write_keys(keys_file, Keys.generate())
        self.keys_file = Path(keys_file)
        self.extra_env = dict(extra_env or {})
        self.receiver = None
        self.stack = None
        self.api_token = None

    @property
    def env(self):
        return {
            "SANAD_DATABASE_URL": self.database_url,
            "SANAD_AMQP_URI": self.amqp_uri,
            "SANAD_KEYS_FILE": str(self.keys_file),
            "SANAD_ENV": "development",
            "SANAD_LOG_LEVEL": "WARNING",  # a log line per case would measure the disk, not the pipeline
            # The stand-in partner listens on loopback, which notify refuses unless told otherwise.
            "SANAD_ALLOW_PRIVATE_WEBHOOKS": "1",
            **self.extra_env,
        }

    def open(self, only=None):
        """Make what is missing and start the stack, or only the processes named in `only`."""
        if self._made_database:
            ensure_database(self.database_url)
            migrate(self.database_url)
        if self._made_vhost:
            self.rabbit.create_vhost(self.vhost)
        with Connection(self.amqp_uri) as connection:
            routing.declare_all(connection)
        secret = webhooks.generate_secret()
        self.receiver = PartnerReceiver(secret)
        for name, service in PARTNERS:
            sanad_cli(self.env, "partner", "add", "--name", name, "--service", service, "--governorate", "dhi_qar",
                      "--webhook-url", self.receiver.url, "--secret", secret)
        self.api_token = self._make_api_token()
        self.stack = Stack(env=self.env, port_base=free_port_base(), log_dir=self.log_dir)
        self.stack.start(only)
        self.stack.wait_healthy(timeout=90)
        return self

    def _make_api_token(self):
        """An operator account and an API token acting as it, made as an administrator would, when this
        version of Sanad has API tokens (earlier ones took cases without authentication)."""
        if "token" not in sanad_cli(self.env, "--help"):
            return None
        sanad_cli(self.env, "user", "add", "bench-operator", "--role", "operator", "--password-stdin",
                  stdin=uuid.uuid4().hex + "\n")
        return sanad_cli(self.env, "token", "add", "bench-operator", "--label", "benchmark").strip()

    @property
    def service_pids(self):
        return {name: child.pid for name, child in self.stack.running.items()}

    def queue_depths(self):
        return self.rabbit.queue_depths(self.vhost)

    def cases_shown_delivered(self, case_ids):
        """How many of `case_ids` intake's case views show with a delivered webhook (what operators see,
        read from intake's own table)."""
        conn = connect(self.database_url)
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT count(DISTINCT case_id) FROM intake.case_deliveries "
                            "WHERE outcome = 'delivered' AND case_id = ANY(%s::uuid[])", (list(case_ids),))
                return cur.fetchone()[0]
        finally:
            conn.close()

    def counters(self, since=None):
        """Commits in the benchmark's database and messages through its vhost so far (or since `since`)."""
        try:
            conn = connect(self.database_url)
            try:
                with conn, conn.cursor() as cur:
                    cur.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
                    commits = cur.fetchone()[0]
            finally:
                conn.close()
        except psycopg2.OperationalError:  # a shared server out of connections: this count is lost, not the run
            commits = None
        try:
            stats = self.rabbit.message_stats(self.vhost)
        except requests.RequestException:
            stats = {}
        now = {"postgres_commits": commits, "broker_publishes": stats.get("publish"),
               "broker_deliveries": stats.get("deliver_get")}
        if since is None:
            return now
        return {k: None if v is None or since[k] is None else v - since[k] for k, v in now.items()}

    def precedence_waits(self):
        """How often intake's requests have waited for a critical one to go first, by how each wait ended
        (sanad.platform.precedence), from intake's /metrics; None for a commit without that metric, or
        an intake that did not answer."""
        try:
            text = requests.get(self.stack.url("intake") + "/metrics", timeout=5).text
        except requests.RequestException:
            return None
        for family in text_string_to_metric_families(text):
            if family.name == "sanad_precedence_waits":
                waits = {"cleared": 0.0, "limit": 0.0}
                for sample in family.samples:
                    if sample.name == "sanad_precedence_waits_total":
                        waits[sample.labels["outcome"]] += sample.value
                return waits
        return None

    def close(self):
        if self.stack is not None:
            self.stack.stop()
        if self.receiver is not None:
            self.receiver.close()
        if self._made_vhost:
            self.rabbit.delete_vhost(self.vhost)
        if self._made_database:
            drop_database(self.database_url)
        if self._tmp is not None:
            self._tmp.cleanup()
