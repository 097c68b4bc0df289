"""The six real processes log one JSON object per line, follow a case by its correlation id and
reference, and never write the caller's name, phone or words, even when a message breaks its contract
or a request carries them in its query string."""
import json
import time
import uuid
from datetime import datetime, timezone

import pytest
import requests
from kombu import Connection

from sanad import webhooks
from sanad.contracts import routing
from sanad.launcher import PROCESSES
from tests.conftest import ARTIFACTS
from tests.integration.conftest import module_name, sanad_cli
from tests.support.api_client import api_headers
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

NAME_AR = "فاطمة"
NAME_LATIN = "Fatima Kadhim"
PHONE = "07701234567"
PHONE_SPACED = "0770 123 4567"
NARRATIVE = (f"اسمي {NAME_AR} ورقمي {PHONE}. My name is {NAME_LATIN}, call me on {PHONE_SPACED}; "
             "he says he will send the photos to my brother tonight.")
SECRETS = (NAME_AR, NAME_LATIN, "Kadhim", PHONE, PHONE_SPACED, "photos to my brother", "اسمي",
           "my brother sleeps", "jasmine")
SAFE_TIMES = "after nine when my brother sleeps"
CASE = {
    "narrative": NARRATIVE,
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
    "safe_contact": {"name": NAME_LATIN, "phone": PHONE, "safe_times": SAFE_TIMES, "code_word": "jasmine"},
}
REQUIRED_KEYS = {"time", "level", "service", "logger", "message"}
SERVICE_NAMES = {p.name: p.name.replace("-", "_") for p in PROCESSES}  # as each names itself in its log


@pytest.fixture(scope="module")
def log_offsets(request):
    """Where each process's log file ends before this module's stack starts (the files are appended to)."""
    log_dir = ARTIFACTS / "logs" / module_name(request)
    return {p.name: (log_dir / f"{p.name}.log").stat().st_size if (log_dir / f"{p.name}.log").exists() else 0
            for p in PROCESSES}


def lines_since(stack, offsets, name):
    with open(stack.log_dir / f"{name}.log", "rb") as log_file:
        log_file.seek(offsets[name])
        return [line for line in log_file.read().decode("utf-8").splitlines() if line.strip()]


def wait_for(check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def test_one_case_is_logged_as_json_with_its_correlation_id_and_nothing_personal(log_offsets, stack, stack_env):
    secret = webhooks.generate_secret()
    with Receiver(secret) as partner:
        sanad_cli(stack_env, "partner", "add", "--name", "Logs Test Counselling", "--service", "counselling",
                  "--governorate", "dhi_qar", "--webhook-url", partner.url, "--secret", secret)
        response = requests.post(stack.url("intake") + "/api/cases", json=CASE, headers=api_headers(stack),
                                 timeout=30)
        assert response.status_code == 201, response.text
        created = response.json()
        assert partner.wait_for(lambda got: any(p["data"]["case_reference"] == created["reference"]
                                                for _, _, p in got))
    # Personal data where it must not go: a query string, and an event that breaks its contract.
    requests.get(f"{stack.url('intake')}/api/cases/{created['id']}?phone={PHONE}&name={NAME_LATIN}",
                 headers=api_headers(stack), timeout=10)
    with Connection(stack_env["SANAD_AMQP_URI"]) as connection:
        connection.Producer().publish(
            {"id": str(uuid.uuid4()), "type": "case.received", "version": 1,
             "occurred_at": datetime.now(timezone.utc).isoformat(), "producer": "intake",
             "correlation_id": str(uuid.uuid4()), "lane": "normal",
             "data": {"narrative": NARRATIVE, "phone": PHONE}},
            exchange=routing.EXCHANGE, routing_key="case.received.normal", serializer="json", delivery_mode=2)

    def flow_logged():
        status = [json.loads(line) for line in lines_since(stack, log_offsets, "intake-status")]
        triage = [json.loads(line) for line in lines_since(stack, log_offsets, "triage")]
        return (any(e.get("correlation_id") == created["id"] and e.get("event_type") == "delivery.attempted"
                    for e in status)
                and any(e["message"].startswith("set aside") for e in triage))

    assert wait_for(flow_logged), "the flow and the dead letter were not logged within 60 s"

    entries = {}
    for name in SERVICE_NAMES:
        lines = lines_since(stack, log_offsets, name)
        assert lines, f"{name} logged nothing"
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                pytest.fail(f"{name} wrote a line that is not JSON: {line[:200]!r}")
            assert isinstance(entry, dict) and REQUIRED_KEYS <= set(entry), f"{name}: {line[:200]}"
            assert entry["service"] == SERVICE_NAMES[name]
            for secret_text in SECRETS:
                assert secret_text not in line, f"{name} logged personal data: {line[:300]}"
        entries[name] = [json.loads(line) for line in lines]

    # One case, followed across the services by its correlation id and its reference.
    for name, event_type in (("triage", "case.received"), ("referral", "case.triaged"),
                             ("notify", "referral.created"), ("intake-status", "case.triaged")):
        handled = [e for e in entries[name] if e.get("correlation_id") == created["id"]
                   and e.get("event_type") == event_type and e["message"] == f"handled {event_type}"]
        assert handled, f"{name} did not log handling {event_type} of the case"
        assert handled[0]["case_reference"] == created["reference"]
        assert handled[0]["level"] == "INFO" and handled[0]["duration_ms"] >= 0

    access = [e for e in entries["intake"] if e["logger"] == "nameko.web.server" and "/api/cases/" in e["message"]]
    assert any("?[query]" in e["message"] for e in access), "the query string was not masked"
