"""Secrets never leave in the clear: the whole flow runs with debug logging, and no narrative, name, phone,
safe-contact detail, webhook secret or key appears in any log line, any metric label, or any message body
on the broker (a tap queue bound to the exchange with '#' receives a copy of every event); nor, on the
broker, her age, what she fears or what triage read in it."""
import json
import secrets
import time

import pytest
import requests
from kombu import Connection, Queue

from sanad.contracts import routing
from sanad.launcher import PORT_SPAN, PROCESSES
from tests.conftest import ARTIFACTS
from tests.support.faults import CASE, Bench
from tests.support.ports import free_ports

pytestmark = pytest.mark.integration

LOG_DIR = ARTIFACTS / "logs" / "test_privacy"


@pytest.fixture(scope="module")
def bench(keys_file):
    for old in LOG_DIR.glob("*.log"):
        old.unlink()
    made = Bench(keys_file, LOG_DIR, free_ports(PORT_SPAN), extra_env={"SANAD_LOG_LEVEL": "DEBUG"})
    try:
        made.start()
        yield made
    finally:
        made.close()


def test_no_personal_text_secret_or_key_reaches_a_log_a_metric_or_the_broker(bench, keys_file):
    marker = secrets.token_hex(6)
    phone_digits = "770" + "".join(secrets.choice("0123456789") for _ in range(7))
    personal = {
        "narrative": f"Narrative-{marker}: يهددني ينشر صوري He wants money.",
        "name": f"Zaynab-{marker}",
        "phone": phone_digits,
        "safe_times": f"after-maghrib-{marker}",
        "code_word": f"pomegranate-{marker}",
    }
    tap = Queue(f"privacy-tap-{marker}", exchange=routing.EXCHANGE, routing_key="#", durable=False,
                auto_delete=False)
    with Connection(bench.rabbit.uri) as connection:
        tap(connection.default_channel).declare()

        case = {**CASE, "narrative": personal["narrative"], "safe_contact": {
            "name": personal["name"], "phone": "0" + phone_digits, "safe_times": personal["safe_times"],
            "code_word": personal["code_word"]}, "victim_age": 16, "suicidal_thoughts": True}
        created = bench.submit(case)
        bench.wait_processed([created])
        time.sleep(1.5)  # the last status events and log lines land

        bodies = []
        with connection.SimpleQueue(tap) as queue:
            while True:
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    break
                bodies.append(message.body if isinstance(message.body, str) else message.body.decode())
                message.ack()
    keys = json.loads(keys_file.read_text())
    key_material = [raw for ring in ("data", "transport") for raw in keys[ring]["keys"].values()] + [keys["lookup"]]
    forbidden = {**personal, "webhook secret": bench.secret, "webhook secret key": bench.secret.split("_", 1)[1],
                 **{f"key {i}": raw for i, raw in enumerate(key_material)}}

    assert len(bodies) >= 5 and any(created["reference"] in body for body in bodies), "the tap saw the case's events"
    logs = {path.name: path.read_text(errors="replace") for path in LOG_DIR.glob("*.log")}
    assert len(logs) == len(PROCESSES) and all(logs.values())
    assert any('"DEBUG"' in text or " DEBUG " in text for text in logs.values()), "debug logging was on"
    metrics = {name: requests.get(bench.stack.url(name) + "/metrics", timeout=10).text for name in bench.stack.running}

    particulars = ('"victim_age"', '"suicidal_thoughts"', '"facts"', '"reasons"', '"preferences"', '"minor"')
    assert not [name for name in particulars if any(name in body for body in bodies)], "her particulars are sealed"
    for what, value in forbidden.items():
        for source, texts in (("log", logs), ("metrics", metrics), ("broker", dict(enumerate(bodies)))):
            leaked = [name for name, text in texts.items() if value in text]
            assert not leaked, f"the {what} appears in plaintext in {source} {leaked}"
