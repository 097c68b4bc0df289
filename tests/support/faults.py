"""A test bench for breaking Sanad on purpose: the six real service processes on a RabbitMQ node and a
PostgreSQL cluster of the bench's own (tests.support.private_rabbitmq, private_postgres), which the tests
stop, crash and restart; two partners whose webhooks a loopback receiver verifies; and the checks that say
whether every case a caller was told was recorded went all the way through, exactly once in effect.
"""
import threading
import time
import uuid

import requests
from kombu import Connection

from sanad import webhooks
from sanad.contracts import routing
from sanad.launcher import Stack
from sanad.platform.migrate import SCHEMAS, ensure_database, migrate
from sanad.platform.pool import Pool
from tests.support import operator
from tests.support.private_postgres import PrivatePostgres
from tests.support.private_rabbitmq import PrivateRabbitMQ
from tests.support.receiver import Receiver

PARTNERS = (("Dhi Qar Counselling Centre", "counselling"), ("Nasiriyah Legal Aid", "legal_aid"))
SERVICES = tuple(service for _, service in PARTNERS)

CASE = {
    "narrative": "يهددني ينشر صوري اذا ما ادفع له فلوس. He wants 500 dollars by Friday.",
    "channel": "whatsapp",
    "governorate": "dhi_qar",
    "needs": list(SERVICES),
    "consents": list(SERVICES),
}
CRITICAL_CASE = {
    "narrative": "Caller says she will take all her pills tonight if the pictures are sent to her family.",
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": list(SERVICES),
    "consents": list(SERVICES),
    "suicidal_thoughts": True,
    "deadline_hours": 6,
}

# Which process consumes each queue, and the schema it keeps its state in. A queue added to the routing
# without an entry here fails test_every_queue_has_a_known_consumer, so the fault tests keep covering all.
CONSUMERS = {
    "triage.case_received": ("triage", "triage"),
    "triage.case_received.critical": ("triage-critical", "triage"),
    "triage.risk_overridden": ("triage", "triage"),
    "referral.case_triaged": ("referral", "referral"),
    "referral.notification_exhausted": ("referral", "referral"),
    "referral.case_triaged.critical": ("referral-critical", "referral"),
    "referral.notification_exhausted.critical": ("referral-critical", "referral"),
    "notify.referral_created": ("notify", "notify"),
    "notify.referral_escalated": ("notify", "notify"),
    "notify.referral_created.critical": ("notify-critical", "notify"),
    "notify.referral_escalated.critical": ("notify-critical", "notify"),
    "notify.referral_status_changed": ("notify", "notify"),
    "notify.referral_status_changed.critical": ("notify-critical", "notify"),
    "intake.case_status": ("intake-status", "intake"),
}
# The queues every case's journey passes through, with the process that takes it from each.
JOURNEY = ("triage.case_received", "triage.case_received.critical", "referral.case_triaged",
           "referral.case_triaged.critical", "notify.referral_created", "notify.referral_created.critical",
           "intake.case_status")


def declared_queues():
    return [queue.name for queue in routing.ALL_QUEUES]


class SlowPartner:
    """Answers every webhook with 204; holds the answer for `delay` seconds while `holding` is set, and
    records which webhooks have started arriving, so a test can act while one is in flight."""

    def __init__(self):
        self.delay = 0.0
        self.arrived = []
        self.lock = threading.Lock()

    def respond(self, webhook_id, payload):
        with self.lock:
            self.arrived.append((webhook_id, payload["data"]["case_reference"]))
            delay = self.delay
        if delay:
            time.sleep(delay)
        return 204

    def arrivals_for(self, reference):
        with self.lock:
            return [w for w, ref in self.arrived if ref == reference]


class Bench:
    def __init__(self, keys_file, log_dir, port_base, extra_env=None):
        self.rabbit = PrivateRabbitMQ()
        self.postgres = PrivatePostgres()
        self.partner = SlowPartner()
        self.secret = webhooks.generate_secret()
        self.receiver = Receiver(self.secret, respond=self.partner.respond)
        self.keys_file = keys_file
        self.log_dir = log_dir
        self.port_base = port_base
        self.stack = None
        self.extra_env = extra_env or {}
        self.pools = {}
        self.acknowledged = []  # every case intake answered 201 (or 200, replayed) for

    # Setting up and tearing down ----------------------------------------------------------------------

    def start(self):
        self.rabbit.start()
        self.postgres.start()
        self.database_url = f"{self.postgres.url}/sanad"
        ensure_database(self.database_url)
        migrate(self.database_url)
        with Connection(self.rabbit.uri, connect_timeout=5) as connection:
            routing.declare_all(connection)
        self.env = {
            "SANAD_DATABASE_URL": self.database_url,
            "SANAD_AMQP_URI": self.rabbit.uri,
            "SANAD_KEYS_FILE": str(self.keys_file),
            "SANAD_ENV": "development",
            "SANAD_ALLOW_PRIVATE_WEBHOOKS": "1",  # the partners' receiver listens on loopback
            # An attempt cut short by a crash is taken up again when its lease runs out: shorter leases
            # (and so shorter attempts) keep these tests quick.
            "SANAD_WEBHOOK_TIMEOUT": "5",
            "SANAD_WEBHOOK_LEASE_SECONDS": "15",
            **self.extra_env,
        }
        self.receiver.__enter__()
        for name, service in PARTNERS:
            self.cli("partner", "add", "--name", name, "--service", service, "--governorate", "dhi_qar",
                     "--webhook-url", self.receiver.url, "--secret", self.secret)
        self.auth = operator.machine_client(self.env, "fault-bench")
        self.pools = {schema: Pool(self.database_url, size=2, schema=schema) for schema in SCHEMAS}
        self.stack = Stack(env=self.env, port_base=self.port_base, log_dir=self.log_dir)
        self.stack.start()
        self.stack.wait_healthy(timeout=90)

    def close(self):
        try:
            if self.stack:
                self.stack.stop()
        finally:
            for pool in self.pools.values():
                pool.close()
            self.receiver.__exit__(None, None, None)
            self.rabbit.close()
            self.postgres.close()

    def cli(self, *args, stdin=None):
        return operator.cli(self.env, *args, stdin=stdin)

    def pids(self):
        return {name: child.pid for name, child in self.stack.running.items()}

    def ensure_all_running(self, timeout=90):
        """Bring back whatever a test left stopped: the broker, the database, any service process."""
        if not self.postgres.running():
            self.postgres.start()
        if self.rabbit.process is None or self.rabbit.process.poll() is not None:
            self.rabbit.start()
        for name in self.stack.any_exited():
            self.stack.restart(name)
        self.stack.wait_healthy(timeout=timeout)

    # Faults --------------------------------------------------------------------------------------------

    def kill(self, name, signum):
        """Signal a service process and wait for it to exit; returns its exit code."""
        self.stack.signal(name, signum)
        return self.stack.wait(name, timeout=60)

    def restart(self, name, wait=True):
        self.stack.restart(name)
        if wait:
            self.stack.wait_healthy(timeout=90, names=[name])

    # Talking to intake ---------------------------------------------------------------------------------

    def submit(self, case, timeout=90, answers=None):
        """POST a case as a careful client would: on any failure, again with the same Idempotency-Key,
        until intake acknowledges it. Returns the acknowledged case; `answers` collects every answer."""
        key = str(uuid.uuid4())
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = requests.post(self.stack.url("intake") + "/api/cases", json=case, timeout=15,
                                         headers={"Idempotency-Key": key, **self.auth})
                if answers is not None:
                    answers.append((response.status_code, response.headers.get("Content-Type"), response.text))
                if response.status_code in (200, 201):
                    created = response.json()
                    self.acknowledged.append(created)
                    return created
            except requests.RequestException as exc:
                if answers is not None:
                    answers.append((None, None, type(exc).__name__))
            if time.monotonic() > deadline:
                raise AssertionError(f"intake did not acknowledge a case within {timeout} s")
            time.sleep(0.2)

    def case_view(self, case_id):
        response = requests.get(f"{self.stack.url('intake')}/api/cases/{case_id}", headers=self.auth, timeout=10)
        response.raise_for_status()
        return response.json()

    # Checks --------------------------------------------------------------------------------------------

    def rows(self, schema, query, params=None):
        with self.pools[schema].transaction() as cur:
            cur.execute(query, params or {})
            return cur.fetchall()

    def webhook_ids_by_referral(self):
        """{referral id: set of webhook-ids the partner verified and accepted for it}"""
        found = {}
        with self.receiver.lock:
            received = list(self.receiver.received)
        for _, webhook_id, payload in received:
            found.setdefault(payload["data"]["referral_id"], set()).add(webhook_id)
        return found

    def unfinished(self, cases):
        """The references of `cases` not yet fully processed: triaged, referred to both partners, each
        referral's webhook verified by the partner, and intake showing both delivered."""
        ids = [c["id"] for c in cases]
        referrals = self.rows("referral", "SELECT id, case_id FROM referrals WHERE case_id = ANY(%(ids)s::uuid[])",
                              {"ids": ids})
        per_case = {}
        for row in referrals:
            per_case.setdefault(str(row["case_id"]), []).append(str(row["id"]))
        received = self.webhook_ids_by_referral()
        shown = self.rows("intake", """
            SELECT c.id, count(DISTINCT d.referral_id) AS delivered FROM cases c
            LEFT JOIN case_deliveries d ON d.case_id = c.id AND d.outcome = 'delivered'
            WHERE c.id = ANY(%(ids)s::uuid[]) GROUP BY c.id""", {"ids": ids})
        delivered_shown = {str(r["id"]): r["delivered"] for r in shown}
        return [c["reference"] for c in cases
                if len(per_case.get(c["id"], ())) != len(SERVICES)
                or not all(received.get(r) for r in per_case[c["id"]])
                or delivered_shown.get(c["id"], 0) != len(SERVICES)]

    def wait_processed(self, cases, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            left = self.unfinished(cases)
            if not left:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(left)} of {len(cases)} cases not fully processed within {timeout} s: "
                                     f"{left[:10]}")
            time.sleep(0.25)

    def assert_once_in_effect(self, cases):
        """Every case has exactly one assessment, one referral per service, one delivery per referral, and
        the partner saw exactly one webhook-id per referral, the one notify derives from the referral."""
        ids = [c["id"] for c in cases]
        params = {"ids": ids}
        in_intake = self.rows("intake", "SELECT count(*) AS n FROM cases WHERE id = ANY(%(ids)s::uuid[])", params)
        assert in_intake[0]["n"] == len(cases)
        assessments = self.rows("triage", """
            SELECT case_id, count(*) AS n FROM assessments WHERE case_id = ANY(%(ids)s::uuid[]) GROUP BY case_id""",
                                params)
        assert len(assessments) == len(cases) and all(r["n"] == 1 for r in assessments)
        referrals = self.rows("referral", "SELECT id, case_id, service FROM referrals WHERE case_id = ANY(%(ids)s::uuid[])",
                              params)
        assert len(referrals) == len(cases) * len(SERVICES), "a case was referred more or fewer times than it needs"
        deliveries = self.rows("notify", """
            SELECT referral_id, webhook_id, status FROM deliveries WHERE case_id = ANY(%(ids)s::uuid[])""", params)
        assert sorted(str(d["referral_id"]) for d in deliveries) == sorted(str(r["id"]) for r in referrals)
        assert all(d["status"] == "delivered" for d in deliveries)
        received = self.webhook_ids_by_referral()
        for delivery in deliveries:
            assert received[str(delivery["referral_id"])] == {delivery["webhook_id"]}, \
                "a referral reached its partner under more than one webhook-id"
        shown = self.rows("intake", """
            SELECT case_id, count(*) AS n FROM case_referrals WHERE case_id = ANY(%(ids)s::uuid[]) GROUP BY case_id""",
                          params)
        assert all(r["n"] == len(SERVICES) for r in shown) and len(shown) == len(cases)

    def metric(self, name, process, label_fragment=""):
        text = requests.get(self.stack.url(process) + "/metrics", timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and line[len(name):len(name) + 1] in ("{", " ")
                   and label_fragment in line)
