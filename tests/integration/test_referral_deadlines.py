"""Acknowledgement deadlines over real RabbitMQ and PostgreSQL, in the real referral and notify processes.

Triaged cases are published onto the broker as triage would publish them, so these tests hang on referral
and notify only. Deadlines are made short through the escalation policy (`sanad referral policy`), the
way an operator changes it, and the timers run at their real one-second tick: nothing is faked.
"""
import json
import time
import uuid

import pytest
import requests
from kombu import Connection, Queue

from sanad import webhooks
from sanad.contracts import routing
from sanad.launcher import Stack
from sanad.platform.pool import Pool
from tests.conftest import ARTIFACTS
from tests.integration.conftest import free_port_base, sanad_cli
from tests.service.events import case_triaged
from tests.support.rabbit import publish_events
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

SERVICES = ["referral", "referral-critical", "notify", "notify-critical"]
LOGS = ARTIFACTS / "logs" / "test_referral_deadlines"
ACK_SECONDS = 2
WATCH_QUEUE = "test.referral_watch"


@pytest.fixture(scope="module")
def services_env(stack_env):
    # Fewer workers than in production leave room on a shared PostgreSQL; the race under test is between
    # the processes' timers, each of which runs one worker at a time whatever this says.
    return {**stack_env, "SANAD_MAX_WORKERS": "4"}


@pytest.fixture(scope="module")
def services(services_env):
    """Referral and notify, both lanes, as `sanad run` starts them."""
    running = Stack(env=services_env, port_base=free_port_base(), log_dir=LOGS)
    running.start(SERVICES)
    try:
        running.wait_healthy(timeout=60)
        yield running
    finally:
        running.stop()


WATCH = Queue(WATCH_QUEUE, exchange=routing.EXCHANGE, routing_key="referral.#", durable=False)


@pytest.fixture(scope="module")
def watch(stack_env):
    """A queue of the test's own holding every referral event the services publish."""
    with Connection(stack_env["SANAD_AMQP_URI"]) as connection:
        WATCH(connection.default_channel).declare()
    return Watch(stack_env["SANAD_AMQP_URI"])


class Watch:
    def __init__(self, amqp_uri):
        self.amqp_uri = amqp_uri
        self.seen = []  # (routing key, event body)

    def drain(self, seconds):
        deadline = time.monotonic() + seconds
        with Connection(self.amqp_uri) as connection:
            queue = WATCH(connection.default_channel)
            while time.monotonic() < deadline:
                message = queue.get()
                if message is None:
                    time.sleep(0.1)
                    continue
                self.seen.append((message.delivery_info["routing_key"], message.payload))
                message.ack()

    def wait_for(self, predicate, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [(key, body) for key, body in self.seen if predicate(key, body)]
            if found:
                return found
            self.drain(0.5)
        raise AssertionError(f"no matching event within {timeout} s")

    def at_least(self, count, predicate, timeout=30, settle=2):
        """Every event matching once `count` have arrived, after `settle` more seconds for any extra."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and sum(1 for k, b in self.seen if predicate(k, b)) < count:
            self.drain(0.5)
        self.drain(settle)
        return [(key, body) for key, body in self.seen if predicate(key, body)]

    def of_type(self, event_type, case_id=None):
        self.drain(0.5)
        return [(key, body) for key, body in self.seen
                if body["type"] == event_type and (case_id is None or body["data"]["case_id"] == str(case_id))]


class Partner:
    """A partner organisation with its own webhook receiver and its API key."""

    def __init__(self, env, name, governorate):
        self.secret = webhooks.generate_secret()
        self.receiver = Receiver(self.secret).__enter__()
        added = json.loads(sanad_cli(env, "partner", "add", "--name", name, "--service", "counselling",
                                     "--governorate", governorate, "--webhook-url", self.receiver.url,
                                     "--secret", self.secret))
        self.id, self.api_key = added["partner_id"], added["api_key"]

    def offers_for(self, reference):
        return offers_in([(None, None, p) for p in self.receiver.payloads()], reference)

    def wait_for_offer(self, reference, timeout=30):
        # The receiver holds its lock while it asks the predicate: look only at what it hands over.
        return self.receiver.wait_for(lambda got: offers_in(got, reference), timeout=timeout)

    def answer(self, base_url, referral_id, status, note_code=None):
        return requests.post(f"{base_url}/partner/v1/referrals/{referral_id}/status",
                             json={"status": status, "note_code": note_code},
                             headers={"Authorization": f"Bearer {self.api_key}"}, timeout=10)


@pytest.fixture(scope="module")
def partners(stack_env, services):
    """Two partners for counselling in Dhi Qar: a local one, offered first, and a nationwide one, next."""
    local = Partner(stack_env, "Nasiriyah Counselling Centre", "dhi_qar")
    national = Partner(stack_env, "National Counselling Line", "nationwide")
    yield local, national
    for partner in (local, national):
        partner.receiver.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pager(stack_env, services):
    """The on-duty supervisors' pager: a webhook receiver registered as notify's on-call endpoint."""
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        sanad_cli(stack_env, "oncall", "add", "--url", receiver.url, "--secret", secret, "--name", "test pager")
        yield receiver


def offers_in(received, reference):
    return [payload["data"] for _, _, payload in received if payload["data"]["case_reference"] == reference]


def test_a_critical_offer_nobody_acknowledges_is_reoffered_and_the_supervisor_paged_until_acknowledged(
        stack_env, services, partners, watch, pager, keys):
    local, national = partners
    sanad_cli(stack_env, "referral", "policy", "critical", "--ack-seconds", str(ACK_SECONDS), "--max-reoffers", "1")
    event = case_triaged(keys, level="critical")
    reference = event.data["reference"]
    publish_events(stack_env["SANAD_AMQP_URI"], event)

    assert local.wait_for_offer(reference), "the local partner is offered it first"
    [first_offer] = local.offers_for(reference)
    # The local partner's server took the webhook, but nobody there answers in time.
    assert national.wait_for_offer(reference), "then, its deadline missed, the next partner"
    [reoffer] = national.offers_for(reference)
    assert reoffer["referral_id"] != first_offer["referral_id"], "a re-offer is a new referral"
    assert reoffer["risk_level"] == "critical"

    [(key, page)] = watch.wait_for(lambda key, body: body["type"] == "referral.escalated"
                                   and body["data"]["case_id"] == str(event.data["case_id"]))
    assert key == "referral.escalated.critical", "the supervisor's page travels on the critical lane"
    assert {k: page["data"][k] for k in ("referral_id", "reason", "step", "reoffered_to", "reference")} == {
        "referral_id": first_offer["referral_id"], "reason": "ack_timeout", "step": 1, "reoffered_to": national.id,
        "reference": reference}
    assert pager.wait_for(lambda got: any(p["type"] == "referral.escalated"
                                          and p["data"]["case_reference"] == reference for _, _, p in got)), \
        "the supervisors' pager gets the page, verified with the Standard Webhooks library"
    [paged] = [p["data"] for p in pager.payloads() if p["data"]["case_reference"] == reference]
    assert (paged["reason"], paged["risk_level"], paged["step"]) == ("ack_timeout", "critical", 1)
    withdrawn = [body["data"] for _, body in watch.of_type("referral.status_changed", event.data["case_id"])]
    assert [(w["referral_id"], w["status"], w["changed_by"]) for w in withdrawn] == [
        (first_offer["referral_id"], "withdrawn", "system")]

    # The withdrawn offer can no longer be accepted; the new one can, on either referral process.
    late = local.answer(services.url("referral"), first_offer["referral_id"], "accepted")
    assert late.status_code == 409 and late.json()["error"]["fields"] == {"status": [late.json()["error"]["message"]]}
    accepted = national.answer(services.url("referral-critical"), reoffer["referral_id"], "accepted")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"

    time.sleep(ACK_SECONDS + 2)  # past the re-offer's deadline, had it still been running
    pages = watch.of_type("referral.escalated", event.data["case_id"])
    assert len(pages) == 1, "no page after the acknowledgement"
    assert len([p for p in pager.payloads() if p["data"]["case_reference"] == reference]) == 1


def test_three_referral_processes_at_once_fire_each_deadline_exactly_once(stack_env, services_env, services, partners,
                                                                          watch, keys):
    local, national = partners
    extra = Stack(env=services_env, port_base=free_port_base(), log_dir=LOGS / "extra")
    extra.start(["referral"])
    try:
        extra.wait_healthy(timeout=60)
        # Long deadlines while the offers are made; then every deadline falls due at the same instant, so the
        # critical ones are raced for by three processes and the normal ones by two.
        sanad_cli(stack_env, "referral", "policy", "critical", "--ack-seconds", "3600", "--max-reoffers", "1")
        sanad_cli(stack_env, "referral", "policy", "high", "--ack-seconds", "3600", "--max-reoffers", "1")
        cases = ([case_triaged(keys, level="critical") for _ in range(25)]
                 + [case_triaged(keys, level="high") for _ in range(15)])
        case_ids = [e.data["case_id"] for e in cases]
        publish_events(stack_env["SANAD_AMQP_URI"], *cases)
        pool = Pool(stack_env["SANAD_DATABASE_URL"], size=1, schema="referral")

        def offered():
            """every case has its first offer and deadline"""
            with pool.transaction() as cur:
                cur.execute("SELECT count(*) AS n FROM ack_deadlines d JOIN referrals r ON r.id = d.referral_id "
                            "WHERE r.case_id = ANY(%(ids)s) AND d.status = 'pending'", {"ids": case_ids})
                return cur.fetchone()["n"] == len(cases)

        wait_until(offered)
        with pool.transaction() as cur:
            cur.execute("UPDATE ack_deadlines d SET due_at = now() FROM referrals r "
                        "WHERE r.id = d.referral_id AND r.case_id = ANY(%(ids)s) AND d.status = 'pending'",
                        {"ids": case_ids})

        def escalated_all():
            """each case escalated"""
            with pool.transaction() as cur:
                cur.execute("SELECT count(DISTINCT case_id) AS n FROM escalations WHERE case_id = ANY(%(ids)s)",
                            {"ids": case_ids})
                return cur.fetchone()["n"] == len(cases)

        wait_until(escalated_all, timeout=60)
        time.sleep(3)  # three more ticks of every timer: a second firing would show now
        with pool.transaction() as cur:
            cur.execute("SELECT case_id, referral_id, step, fired_by FROM escalations WHERE case_id = ANY(%(ids)s)",
                        {"ids": case_ids})
            escalations = cur.fetchall()
            cur.execute("SELECT case_id, attempt, partner_id FROM referrals WHERE case_id = ANY(%(ids)s)",
                        {"ids": case_ids})
            referrals = cur.fetchall()
            cur.execute("SELECT d.lane, extract(epoch FROM d.finished_at - d.due_at) AS late FROM ack_deadlines d "
                        "JOIN referrals r ON r.id = d.referral_id WHERE r.case_id = ANY(%(ids)s) "
                        "AND d.status = 'fired'", {"ids": case_ids})
            lateness = cur.fetchall()
        pool.close()
    finally:
        extra.stop()

    assert len(escalations) == len(cases), "one escalation per deadline"
    assert len({e["referral_id"] for e in escalations}) == len(cases)
    assert sorted((r["attempt"], str(r["partner_id"])) for r in referrals) == sorted(
        [(1, local.id)] * len(cases) + [(2, national.id)] * len(cases)), "exactly one re-offer per case"
    pages = watch.at_least(len(cases), lambda key, body: body["type"] == "referral.escalated"
                           and uuid.UUID(body["data"]["case_id"]) in case_ids)
    assert len(pages) == len(cases), "exactly one page per deadline on the broker"
    assert sorted(key for key, _ in pages) == sorted(
        ["referral.escalated.critical"] * 25 + ["referral.escalated.normal"] * 15)
    for lane in ("critical", "normal"):
        late = sorted(float(row["late"]) for row in lateness if row["lane"] == lane)
        print(f"{lane} deadlines fired after falling due: median {late[len(late) // 2]:.2f} s, max {late[-1]:.2f} s")
    print("deadlines fired by process:", {p: sum(1 for e in escalations if e["fired_by"] == p)
                                         for p in sorted({e["fired_by"] for e in escalations})})
