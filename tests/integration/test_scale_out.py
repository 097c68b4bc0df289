"""Running more than one of each process (docs/operations.md, Scale out): two of every service share one
database and one broker as competing consumers, and every case reaches its partner exactly once; and the
queues declared as quorum queues (SANAD_QUEUE_TYPE=quorum, for a RabbitMQ cluster) on a fresh virtual host
carry a case end to end."""
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import requests

from sanad import webhooks
from sanad.contracts import routing
from sanad.launcher import Stack
from tests.conftest import ARTIFACTS
from tests.integration.conftest import free_port_base, sanad_cli
from tests.support import rabbit
from tests.support.api_client import api_headers
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

CASES = 30
CASE = {
    "narrative": "He threatens to post my pictures unless I send more money.",
    "channel": "web",
    "governorate": "dhi_qar",
    "needs": ["legal_aid"],
    "consents": ["legal_aid"],
}


@pytest.fixture(scope="module")
def partner(stack_env):
    secret = webhooks.generate_secret()
    with Receiver(secret) as receiver:
        sanad_cli(stack_env, "partner", "add", "--name", "Scale-out Legal Aid", "--service", "legal_aid",
                  "--governorate", "dhi_qar", "--webhook-url", receiver.url, "--secret", secret)
        yield receiver


def start_stack(env, log_name):
    running = Stack(env=env, port_base=free_port_base(), log_dir=ARTIFACTS / "logs" / log_name)
    running.start()
    try:
        running.wait_healthy(timeout=60)
    except BaseException:
        running.stop()
        raise
    return running


@pytest.fixture(scope="module")
def second_stack(stack, stack_env):
    """Another process of every service, on other ports, with the same database, broker and keys."""
    running = start_stack(stack_env, "test_scale_out_second")
    yield running
    running.stop()


def post_case(stack, client_stack):
    response = requests.post(stack.url("intake") + "/api/cases", json=CASE, headers=api_headers(client_stack),
                             timeout=30)
    assert response.status_code == 201, response.text
    return response.json()["reference"]


def handled(stack, process, queue):
    text = requests.get(stack.url(process) + "/metrics", timeout=10).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("sanad_events_consumed_total{") and f'queue="{queue}"' in line
               and 'outcome="handled"' in line)


def test_two_of_every_process_share_the_work_and_each_case_reaches_its_partner_once(stack, second_stack, partner):
    stacks = (stack, second_stack)
    references = {post_case(stacks[i % 2], stack) for i in range(CASES)}

    assert partner.wait_for(lambda got: references <= {p["data"]["case_reference"] for _, _, p in got}, timeout=120)
    ours = [(webhook_id, payload) for _, webhook_id, payload in partner.received
            if payload["data"]["case_reference"] in references]
    assert len(ours) == CASES, "a case reached its partner more than once, or not at all"
    assert len({webhook_id for webhook_id, _ in ours}) == CASES
    for process, queue in (("triage", routing.TRIAGE_CASE_RECEIVED.name),
                           ("referral", routing.REFERRAL_CASE_TRIAGED.name),
                           ("notify", routing.NOTIFY_REFERRAL_CREATED.name)):
        counts = [handled(s, process, queue) for s in stacks]
        assert sum(counts) >= CASES and all(count > 0 for count in counts), \
            f"{process}: events handled per process {counts}; both should have had a share"


@pytest.fixture(scope="module")
def quorum_vhost(run_id):
    name = f"sanad_test_{run_id}_quorum"
    rabbit.create_vhost(name)
    yield name
    rabbit.delete_vhost(name)


def test_quorum_queues_declared_on_a_fresh_vhost_carry_a_case_end_to_end(stack, stack_env, partner, quorum_vhost):
    env = {**stack_env, "SANAD_AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{quorum_vhost}",
           "SANAD_QUEUE_TYPE": "quorum"}
    sanad = Path(sys.executable).with_name("sanad")
    done = subprocess.run([str(sanad), "migrate"], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr

    response = requests.get(f"{rabbit.MANAGEMENT_URL}/queues/{urllib.parse.quote(quorum_vhost, safe='')}",
                            auth=rabbit.AUTH, timeout=10)
    response.raise_for_status()
    types = {q["name"]: q.get("type") for q in response.json()}
    assert set(types) == {q.name for q in routing.ALL_QUEUES}
    assert set(types.values()) == {"quorum"}, types

    running = start_stack(env, "test_scale_out_quorum")
    try:
        reference = post_case(running, stack)
        assert partner.wait_for(lambda got: any(p["data"]["case_reference"] == reference for _, _, p in got),
                                timeout=60)
    finally:
        running.stop()
