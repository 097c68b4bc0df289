"""bench/compare.py: each run's medians side by side, as results.json holds them."""
from bench import compare


def spread(median):
    return {"median": median, "min": median, "max": median, "runs": [median]}


def results(**throughput):
    return {
        "started_at": "2026-12-06T17:05:20+00:00",
        "config": {"backlog_cases": 10000},
        "git": {"commit": "35a35cb6dc69a810fb571eb27817f4de77a9f11d", "uncommitted_changes": False,
                "patches": ["busy_linger.patch"]},
        "summary": {
            "floor": {"throughput_per_s": spread(349.9), "latency_p99_ms": spread(10.6)},
            "critical_with_backlog": {"p50_ms": spread(15.4), "p99_ms": spread(35.9),
                                      "p99_ms_vs_floor": spread(3.38)},
            "throughput": throughput,
        },
    }


def test_a_row_holds_the_medians_with_seconds_a_case_in_milliseconds_and_the_patch_named():
    row = compare.row("AE", results(
        per_s=spread(143.8), per_s_vs_floor=spread(0.41), machine_cpu_seconds_per_case=spread(0.01211),
        services_cpu_seconds_per_case=spread(0.0073), postgres_cpu_seconds_per_case=spread(0.00196),
        broker_cpu_seconds_per_case=spread(0.0016), operators_cpu_seconds_per_case=spread(0.000327)))
    assert row == ["AE", "2026-12-06 17:05", "35a35cb + busy_linger.patch", "10,000", "350", "10.6",
                   "15.4 / 35.9 (3.38x)", "143.8 (0.41)", "12.11 / 7.30 / 1.96 / 1.60", "0.327"]


def test_a_figure_the_run_did_not_reach_is_a_dash():
    row = compare.row("cut", results(per_s=spread(None)))
    assert row[7] == "– (–)"
    assert row[8] == "– / – / – / –"


def test_the_table_keeps_the_order_it_was_given():
    table = compare.table([("b", results()), ("a", results())]).splitlines()
    assert table[0].startswith("| run | started (UTC) | commit |")
    assert [line.split(" | ")[0] for line in table[2:]] == ["| b", "| a"]
