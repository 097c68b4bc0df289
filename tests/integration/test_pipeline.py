"""A case travels intake -> triage -> referral -> notify -> a partner's webhook, over real RabbitMQ and
PostgreSQL, through the real service processes."""
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import psycopg2
import pytest
import requests
from kombu import Connection

from sanad.contracts import routing
from sanad.contracts.events import new_event, seal_particulars
from sanad.contracts.sealing import narrative_context
from sanad.launcher import PROCESSES
from tests.integration.conftest import sanad_cli
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration

NORMAL_DELAY = 0.1  # seconds a partner takes to answer a normal webhook: keeps a backlog in place
BACKLOG = 2000

MEDIUM_CASE = {
    "narrative": "يهددني ينشر صوري اذا ما ادفع له فلوس. He wants 500 dollars.",
    "channel": "whatsapp",
    "governorate": "dhi_qar",
    "needs": ["counselling", "legal_aid"],
    "consents": ["counselling", "legal_aid"],
}
CRITICAL_CASE = {
    "narrative": "Caller says she will take all her pills tonight if the pictures are sent to her family.",
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
    "suicidal_thoughts": True,
    "deadline_hours": 6,
}
# Nothing ticked on the checklist: the danger is only in the note, which intake reads with triage's model.
NOTE_ONLY_CRITICAL_CASE = {
    "narrative": "قالت راح تنتحر الليلة اذا وصلت الصور لأهلها. She says she will end her life tonight.",
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
}


class Partner:
    """Answers normal webhooks slowly and critical ones at once, like a busy partner with a pager."""

    def __init__(self):
        self.secret = None

    def respond(self, webhook_id, payload):
        if payload["data"]["risk_level"] != "critical":
            time.sleep(NORMAL_DELAY)
        return 204


@pytest.fixture(scope="module")
def partner(stack_env):
    from sanad import webhooks
    behaviour = Partner()
    secret = webhooks.generate_secret()
    with Receiver(secret, respond=behaviour.respond) as receiver:
        for name, service in (("Dhi Qar Counselling Centre", "counselling"), ("Nasiriyah Legal Aid", "legal_aid")):
            sanad_cli(stack_env, "partner", "add", "--name", name, "--service", service,
                      "--governorate", "dhi_qar", "--webhook-url", receiver.url, "--secret", secret)
        yield receiver


_CLIENT_LOCK = threading.Lock()


def machine_client(stack):
    """The Authorization header of an API token, made once per stack as an administrator would: an
    operator account for the client, then `sanad token add` for it."""
    with _CLIENT_LOCK:
        if getattr(stack, "api_token", None) is None:
            sanad_cli(stack.env, "user", "add", "pipeline-client", "--role", "operator", "--password-stdin",
                      stdin=uuid.uuid4().hex + "\n")
            stack.api_token = sanad_cli(stack.env, "token", "add", "pipeline-client", "--label", "pipeline tests").strip()
    return {"Authorization": f"Bearer {stack.api_token}"}


def post_case(stack, case, session=requests):
    response = session.post(stack.url("intake") + "/api/cases", json=case, headers=machine_client(stack), timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def case_status(stack, case_id):
    response = requests.get(f"{stack.url('intake')}/api/cases/{case_id}", headers=machine_client(stack), timeout=10)
    assert response.status_code == 200
    return response.json()


def webhooks_for(receiver, reference):
    return [p for p in receiver.payloads() if p["data"]["case_reference"] == reference]


def test_a_case_posted_over_http_reaches_its_partners_signed_and_minimal(stack, partner):
    created = post_case(stack, MEDIUM_CASE)

    assert partner.wait_for(lambda got: len([1 for _, _, p in got
                                             if p["data"]["case_reference"] == created["reference"]]) == 2)
    payloads = webhooks_for(partner, created["reference"])
    assert {p["data"]["service"] for p in payloads} == {"counselling", "legal_aid"}
    for payload in payloads:
        assert payload["type"] == "referral.offered"
        assert payload["data"]["risk_level"] == "medium"
        assert payload["data"]["governorate"] == "dhi_qar"
        body = json.dumps(payload, ensure_ascii=False)
        assert "صوري" not in body and "500 dollars" not in body, "the narrative must never reach a partner"

    def delivered():
        """intake shows both referrals delivered"""
        status = case_status(stack, created["id"])
        return status if status["status"] == "referred" and all(
            any(d["outcome"] == "delivered" for d in r["deliveries"]) for r in status["referrals"]
        ) and len(status["referrals"]) == 2 else None

    status = wait_until(delivered)
    assert status["risk"]["level"] == "medium"
    assert status["reference"] == created["reference"]
    assert partner.rejected == 0


def test_a_critical_case_overtakes_a_backlog_of_normal_cases_by_its_checklist_or_by_its_note_alone(
        stack, partner):
    with requests.Session() as session, ThreadPoolExecutor(max_workers=8) as pool:
        backlog = list(pool.map(lambda _: post_case(stack, MEDIUM_CASE, session), range(BACKLOG)))
    backlog_refs = {c["reference"] for c in backlog}

    assessed_critical_before = assessed_by_triage_critical(stack)
    critical = [post_case(stack, CRITICAL_CASE), post_case(stack, NOTE_ONLY_CRITICAL_CASE)]
    references = {case["reference"] for case in critical}
    assert partner.wait_for(lambda got: references <= {p["data"]["case_reference"] for _, _, p in got},
                            timeout=120)
    normal_done_when_critical_arrived = sum(
        1 for p in partner.payloads() if p["data"]["case_reference"] in backlog_refs
    )
    for reference in references:
        assert webhooks_for(partner, reference)[0]["data"]["risk_level"] == "critical"
    assert assessed_by_triage_critical(stack) - assessed_critical_before == 2, \
        "both went to triage's critical process, not through the backlog's queue"
    assert normal_done_when_critical_arrived < 2 * BACKLOG, "the backlog drained before the critical cases"

    # Nothing was lost on the way: every backlog case reaches both of its partners.
    assert partner.wait_for(
        lambda got: sum(1 for _, _, p in got if p["data"]["case_reference"] in backlog_refs) >= 2 * BACKLOG,
        timeout=300,
    )
    print(f"critical cases arrived after {normal_done_when_critical_arrived} of {2 * BACKLOG} normal webhooks")


def assessed_by_triage_critical(stack):
    """Cases triage's critical process has assessed, from its /metrics."""
    return _metric(stack.url("triage-critical"), "sanad_events_consumed_total",
                   'outcome="handled",queue="triage.case_received.critical"')


def test_an_event_delivered_twice_has_one_effect(stack, stack_env, partner, keys):
    case_id = uuid.uuid4()
    reference = f"SND-TEST-{case_id.hex[:4].upper()}"
    event = new_event("case.received", {
        "case_id": case_id, "reference": reference, "received_at": datetime.now(timezone.utc),
        "channel": "phone", "governorate": "dhi_qar", "needs": ["counselling"], "consents": ["counselling"],
        "sealed_narrative": keys.transport.seal("He threatens to send my chats unless I pay.",
                                                narrative_context(case_id)),
        "sealed_particulars": seal_particulars("case.received", {"facts": {}}, keys.transport, case_id),
    }, producer="intake")
    with Connection(stack_env["SANAD_AMQP_URI"], transport_options={"confirm_publish": True}) as connection:
        producer = connection.Producer()
        for _ in range(2):
            producer.publish(event.to_message(), exchange=routing.EXCHANGE, routing_key=event.routing_key,
                             serializer="json", delivery_mode=2)

    assert partner.wait_for(lambda got: any(p["data"]["case_reference"] == reference for _, _, p in got))
    duplicates = wait_until(lambda: _metric(stack.url("triage"), "sanad_events_consumed_total",
                                            'outcome="duplicate"'), timeout=30)
    assert duplicates >= 1
    time.sleep(2)  # time enough for a second webhook, were there one
    assert len(webhooks_for(partner, reference)) == 1


def _metric(base_url, name, label_fragment):
    text = requests.get(base_url + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and label_fragment in line)


def test_the_normal_lane_runs_at_lower_cpu_priority_than_the_api_and_the_critical_lane_in_real_time_where_allowed(
        stack, database_url):
    launcher = os.getpriority(os.PRIO_PROCESS, 0)
    may_raise = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_RR, "
                                "os.sched_param(1))"]).returncode == 0
    for proc in PROCESSES:
        pid = stack.running[proc.name].pid
        policy = os.sched_getscheduler(pid) & ~os.SCHED_RESET_ON_FORK
        if proc.lane == "critical" and may_raise:
            assert policy == os.SCHED_RR, proc.name
            continue
        assert policy == os.SCHED_OTHER, proc.name
        expected = {"bulk": min(19, launcher + 10), "critical": launcher, "api": launcher}[proc.lane]
        assert os.getpriority(os.PRIO_PROCESS, pid) == expected, proc.name

    # Each critical process's backends follow it (their outbox relays have connected by now).
    critical = {"triage_critical", "referral_critical", "notify_critical"}
    backends = wait_until(lambda: (found := _backends_by_process(database_url)).keys() >= critical and found,
                          timeout=30, what="a connection from every critical process")
    for process, pids in backends.items():
        policies = {os.sched_getscheduler(pid) for pid in pids}
        realtime = may_raise and process.endswith("_critical")
        assert policies == ({os.SCHED_RR} if realtime else {os.SCHED_OTHER}), process


def _backends_by_process(database_url):
    """{service name: pids of the backends serving it}."""
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT application_name, pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name LIKE 'sanad %%'")
            found = {}
            for application_name, pid in cur.fetchall():
                found.setdefault(application_name.removeprefix("sanad "), []).append(pid)
    finally:
        conn.close()
    return found
