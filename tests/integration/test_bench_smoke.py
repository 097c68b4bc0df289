"""`make bench`, with numbers small enough for every test run: each phase runs against the real stack,
the floor and the partner receiver, and the results come out complete and well formed. Timings are
never asserted here; the benchmark itself measures them (docs/performance.md)."""
import json
import urllib.parse
from datetime import datetime, timedelta

import pytest

from bench.broker_ping import measure_in_own_process
from bench.run import Config, run_benchmark
from sanad.launcher import PROCESSES
from tests.support import rabbit

pytestmark = pytest.mark.integration

LATENCY_PHASES = ("critical_alone", "critical_with_backlog", "normal_at_50pct", "normal_at_90pct")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, database_url, amqp_uri, keys_file):
    config = Config.smoke()
    out = tmp_path_factory.mktemp("bench")
    results = run_benchmark(config, out, database_url=database_url, amqp_uri=amqp_uri, keys_file=keys_file,
                            log=lambda message: None)
    return config, out, results


def is_ordered_latency(figures):
    values = [figures[k] for k in ("p50_ms", "p95_ms", "p99_ms", "max_ms")]
    return all(isinstance(v, float) and v > 0 for v in values) and values == sorted(values)


def test_every_latency_phase_yields_ordered_percentiles_over_every_case(smoke):
    config, _, results = smoke
    run = results["runs"][0]
    assert is_ordered_latency(run["floor"]["latency"])
    assert run["floor"]["latency"]["count"] == config.critical_cases
    assert run["critical_alone"]["count"] == config.critical_cases
    assert 0 < run["critical_with_backlog"]["all_critical"]["count"] == config.critical_cases
    for phase in LATENCY_PHASES:
        assert is_ordered_latency(run[phase]), phase


def test_critical_cases_were_measured_on_the_critical_lane(smoke):
    _, _, results = smoke
    run = results["runs"][0]
    for phase in ("critical_alone", "critical_with_backlog"):
        assert run[phase]["arrived_as_critical"] == run[phase]["cases"], phase
    alone = run["critical_alone"]
    assert alone["from_send"]["p50_ms"] > alone["p50_ms"], "from the request's send includes intake's answer"
    assert run["stages"]["critical_alone"]["received_to_partner"]["count"] > 0


def test_each_critical_case_is_kept_with_its_send_time_on_the_wall_clock_to_line_up_with_servers_logs(smoke):
    _, _, results = smoke
    run = results["runs"][0]
    started, finished = (datetime.fromisoformat(results[key]) for key in ("started_at", "finished_at"))
    for phase in ("critical_alone", "critical_with_backlog"):
        cases = run["critical_cases"][phase]
        assert len(cases) == run[phase]["count"], phase
        sent = [datetime.fromisoformat(case["sent_at"]) for case in cases]
        # started_at and finished_at are given to the second
        assert sent == sorted(sent) and started <= sent[0] and sent[-1] <= finished + timedelta(seconds=1), phase
        assert all(case["answer_ms"] > 0 for case in cases), phase
        assert sorted(case["latency_ms"] / 1000 for case in cases) == pytest.approx(sorted(run["samples_s"][phase]),
                                                                                 abs=1e-4), phase


def test_throughput_cpu_and_memory_are_reported_for_the_stack_and_the_floor(smoke):
    _, _, results = smoke
    summary = results["summary"]
    assert summary["throughput"]["per_s"]["median"] > 0
    assert summary["floor"]["throughput_per_s"]["median"] > 0
    assert summary["throughput"]["per_s_vs_floor"]["median"] > 0
    # Counts read from PostgreSQL's and RabbitMQ's statistics: None when a shared server refused the
    # connection or had not refreshed them yet in so short a run, never negative.
    for count in ("postgres_commits_per_case", "broker_publishes_per_case", "broker_deliveries_per_case"):
        median = summary["throughput"][count]["median"]
        assert median is None or median >= 0, count
    assert set(summary["memory_mib"]) == {p.name for p in PROCESSES}
    for name, memory in summary["memory_mib"].items():
        assert memory["rss"]["median"] > 0 and memory["peak_rss"]["median"] >= memory["rss"]["median"], name
    assert all(spread["median"] is not None for spread in summary["cpu_seconds_per_case"].values())
    assert set(summary["targets"]) and all(isinstance(met, bool) for met in summary["targets"].values())


def test_results_are_written_as_json_and_a_markdown_table(smoke):
    _, out, results = smoke
    written = json.loads((out / "results.json").read_text())
    assert written["summary"] == results["summary"]
    assert written["webhooks_rejected_by_partner"] == 0
    table = (out / "results.md").read_text()
    assert "| critical case, behind the normal backlog |" in table
    assert "| target | met |" in table


def test_broker_ping_times_each_message_and_deletes_its_queue(amqp_uri):
    latencies = measure_in_own_process(amqp_uri, seconds=0.3, interval=0.02)
    assert len(latencies) >= 5 and all(0 < latency < 5 for latency in latencies)
    vhost = urllib.parse.unquote(urllib.parse.urlparse(amqp_uri).path.lstrip("/"))
    assert not [name for name in rabbit.queue_depths(vhost) if name.startswith("bench-broker-ping-")]
