"""Debian's Prometheus, started on a loopback port of its own with the repository's alert rules, scrapes the
running processes; after a case flows through, the series the dashboard and the alerts rely on are
there, every rule evaluates without error, and no label carries anything about the case.

Also /ready, which docker-compose's health checks ask, and /metrics as each version of Prometheus asks
for it."""
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from prometheus_client import parser
from prometheus_client.openmetrics import parser as openmetrics_parser

from sanad import webhooks
from sanad.launcher import PROCESSES
from tests.integration.conftest import free_port_base, sanad_cli
from tests.support.faults import CONSUMERS
from tests.support.api_client import api_headers
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "deploy" / "prometheus" / "alerts.yml"
JOBS = [p.name for p in PROCESSES]
CASE = {
    "narrative": "He says he will send my photos to my family unless I pay him tonight.",
    "channel": "whatsapp",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
}
# Labels Sanad's metrics may carry: closed vocabularies only (docs/operations.md). Prometheus adds the rest.
ALLOWED_LABELS = {
    "__name__", "job", "instance", "le", "quantile",
    "queue", "outcome", "reason", "type", "schema", "dependency", "lane", "level", "service", "status",
    "changed_by", "channel", "governorate", "stage", "state", "kind", "target",
}


@pytest.fixture(scope="module")
def prometheus(stack, tmp_path_factory):
    """Prometheus scraping the stack every second, evaluating the rules every second; stopped at the end."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the prometheus binary is not on PATH. scripts/setup.sh installs it (Debian package "
                    "`prometheus`); run `scripts/setup.sh test`.")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [stack.url(name).removeprefix("http://")]}]}
            for name in JOBS
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port_base(count=1)
    url = f"http://127.0.0.1:{port}"
    with open(workdir / "prometheus.log", "wb") as log:
        server = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(url + "/-/ready"):
            if server.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError("prometheus was not ready within 30 s")
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _answers(url):
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def query(prometheus, promql):
    response = requests.get(prometheus + "/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def eventually(prometheus, promql, timeout=60):
    """The query's result once it is not empty, within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = query(prometheus, promql)
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no series for {promql} within {timeout} s")


@pytest.fixture(scope="module")
def case_through(stack, stack_env):
    """One case posted to intake and delivered to its partner's webhook."""
    secret = webhooks.generate_secret()
    with Receiver(secret) as partner:
        sanad_cli(stack_env, "partner", "add", "--name", "Prometheus Test Counselling", "--service", "counselling",
                  "--governorate", "dhi_qar", "--webhook-url", partner.url, "--secret", secret)
        response = requests.post(stack.url("intake") + "/api/cases", json=CASE, headers=api_headers(stack),
                                 timeout=30)
        assert response.status_code == 201, response.text
        created = response.json()
        assert partner.wait_for(lambda got: any(p["data"]["case_reference"] == created["reference"]
                                                for _, _, p in got))
    return created


def test_prometheus_scrapes_every_sanad_process(prometheus):
    up = eventually(prometheus, f'count(up == 1) == {len(PROCESSES)}')
    assert float(up[0]["value"][1]) == len(PROCESSES)


@pytest.mark.parametrize("promql", [
    'sanad_cases_received_total{channel="whatsapp", governorate="dhi_qar"} >= 1',
    'sum(sanad_cases_triaged_total) >= 1',
    'sanad_referrals_created_total{service="counselling", lane="normal"} >= 1',
    'sanad_webhook_deliveries_total{outcome="delivered", lane="normal"} >= 1',
    'sanad_webhook_attempts_count{lane="normal", outcome="delivered"} >= 1',
    'max(sanad_partner_endpoints{state="enabled"}) >= 1',
    'sanad_referrals{status="offered", level="medium"} >= 1',
    'sanad_case_time_to_stage_seconds_count{stage="triaged", level="medium"} >= 1',
    'sanad_case_time_to_stage_seconds_count{stage="first_delivery", level="medium"} >= 1',
    'sanad_events_consumed_total{job="triage", queue="triage.case_received", outcome="handled"} >= 1',
    'sanad_event_handling_seconds_count{job="notify", queue="notify.referral_created"} >= 1',
    'sanad_events_published_total{job="intake", type="case.received"} >= 1',
    'sanad_outbox_pending{job="referral"}',
    'sanad_outbox_oldest_age_seconds{job="notify"}',
    'sanad_queue_consumers{job="referral-critical", queue="referral.case_triaged.critical"} == 1',
    'sanad_queue_messages_ready{job="intake-status", queue="intake.case_status"}',
    'sanad_dead_letters_stored{job="triage", schema="triage"} == 0',
    f'count(sanad_dependency_up == 1) == {2 * len(PROCESSES)}',  # database and broker, each process
    'sanad_referral_escalations_total{reason="ack_timeout", lane="critical"} == 0',
    'sanad_webhook_deliveries_total{job="notify-critical", outcome="failed", lane="critical"} == 0',
    'sanad_referrals_overdue{lane="critical"} == 0',
])
def test_after_a_case_flows_through_prometheus_holds_the_series_the_dashboard_and_alerts_use(
        prometheus, case_through, promql):
    assert eventually(prometheus, promql)


def test_every_alert_rule_evaluates_without_error_and_none_fires_on_a_healthy_stack(prometheus, case_through):
    deadline = time.monotonic() + 30
    while True:
        groups = requests.get(prometheus + "/api/v1/rules", timeout=10).json()["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        if rules and all(rule.get("lastEvaluation", "").startswith("20") for rule in rules):
            break
        assert time.monotonic() < deadline, "the rules were not all evaluated within 30 s"
        time.sleep(0.5)
    expected = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    assert {rule["name"] for rule in rules} == expected
    broken = {rule["name"]: rule.get("lastError") for rule in rules if rule["health"] != "ok"}
    assert not broken, f"rules failing to evaluate: {broken}"
    assert query(prometheus, 'ALERTS{alertstate="firing"}') == []


def test_no_series_carries_the_case_or_a_label_outside_the_closed_vocabularies(prometheus, case_through):
    eventually(prometheus, 'sanad_webhook_deliveries_total{outcome="delivered"}')
    response = requests.get(prometheus + "/api/v1/series", params={"match[]": '{__name__=~"sanad_.*"}'}, timeout=10)
    series = response.json()["data"]
    assert series
    for labels in series:
        assert set(labels) <= ALLOWED_LABELS, f"unexpected label on {labels['__name__']}: {set(labels) - ALLOWED_LABELS}"
        for value in labels.values():
            assert case_through["id"] not in value and case_through["reference"] not in value


def test_every_process_is_ready_naming_the_queue_it_consumes(stack):
    for proc in PROCESSES:
        response = requests.get(stack.url(proc.name) + "/ready", timeout=10)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ready" and body["database"] and body["broker"] and body["migrations"]
        assert set(body["queues"]) == {queue for queue, (process, _) in CONSUMERS.items() if process == proc.name}
        assert all(q["declared"] and q["consumers"] >= 1 for q in body["queues"].values())


# The Accept headers Prometheus sends by default (its scrape_protocols: their order and weights changed
# between 3.x releases), and none at all (curl, a probe).
SCRAPERS = {
    "prometheus 3": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,"
                    "application/openmetrics-text;version=0.0.1;q=0.4,"
                    "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1",
    "prometheus 3, text first": "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.5,"
                                "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.4,*/*;q=0.3",
    "prometheus 2": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "no preference": None,
}


@pytest.mark.parametrize("scraper", SCRAPERS)
def test_every_process_answers_a_scrape_in_a_format_the_scraper_can_parse(stack, scraper):
    """Prometheus 3 fails a scrape whose Content-Type it cannot parse as Go's mime package does (a
    parameter named twice is an error there), unless the job names a fallback protocol."""
    for proc in PROCESSES:
        response = requests.get(stack.url(proc.name) + "/metrics", headers={"Accept": SCRAPERS[scraper] or ""},
                                timeout=10)
        assert response.status_code == 200
        media_type, params = strict_media_type(response.headers["Content-Type"])
        if media_type == "application/openmetrics-text":
            assert scraper != "no preference"
            families = list(openmetrics_parser.text_string_to_metric_families(response.text))
        else:
            assert media_type == "text/plain" and params["version"] in ("0.0.4", "1.0.0"), params
            families = list(parser.text_string_to_metric_families(response.text))
        assert params["charset"] == "utf-8"
        assert any(family.name == "sanad_dependency_up" for family in families), proc.name


def strict_media_type(value):
    """(type, {parameter: value}) as Go's mime.ParseMediaType reads it, failing where it fails."""
    media_type, *parts = [part.strip() for part in value.split(";")]
    params = {}
    for part in parts:
        name, equals, text = part.partition("=")
        assert equals and name and text, f"malformed parameter {part!r} in {value!r}"
        assert name.lower() not in params, f"parameter {name!r} named twice in {value!r}"
        params[name.lower()] = text
    return media_type.lower(), params
