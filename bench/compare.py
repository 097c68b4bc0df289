"""`python -m bench.compare DIR [DIR ...]`: the runs in those result directories side by side, one row each.

Each session's runs were set beside each other by hand until this existed: the same few figures read out
of several results.json files. A row holds a run's medians: when it started, the commit measured (and any
patch), the backlog, the floor's rate and p99, critical p50 and p99 behind the backlog with p99's ratio to
the floor's, throughput with its share of the floor's, and the CPU milliseconds a case of the whole
machine, the services, PostgreSQL and RabbitMQ. The last column, the benchmark's own operators' CPU a
case, is the same code in every run, so it shows how fast the machine was at the time: compare runs whose
operators cost about the same (docs/performance.md, "The machine").
"""
import argparse
import json
import sys
from pathlib import Path

COLUMNS = ("run", "started (UTC)", "commit", "backlog", "floor msg/s", "floor p99 ms",
           "critical p50 / p99 ms (x floor)", "cases/s (x floor)",
           "CPU ms a case: machine / services / PostgreSQL / RabbitMQ", "operators' CPU ms a case")


def row(name, results) -> list[str]:
    """The table's cells for one run's results.json, read as written; a figure it lacks is "–"."""
    summary = results.get("summary", {})
    floor, backlog = summary.get("floor", {}), summary.get("critical_with_backlog", {})
    throughput = summary.get("throughput", {})
    git = results.get("git", {})
    commit = (git.get("commit") or "")[:7] or "–"
    if git.get("patches"):
        commit += " + " + ", ".join(Path(patch).name for patch in git["patches"])
    if git.get("uncommitted_changes"):
        commit += " and uncommitted changes"
    cpu = " / ".join(_ms(throughput.get(key)) for key in (
        "machine_cpu_seconds_per_case", "services_cpu_seconds_per_case", "postgres_cpu_seconds_per_case",
        "broker_cpu_seconds_per_case"))
    return [
        name,
        (results.get("started_at") or "–")[:16].replace("T", " "),
        commit,
        f"{results.get('config', {}).get('backlog_cases', 0):,}",
        _number(floor.get("throughput_per_s"), 0),
        _number(floor.get("latency_p99_ms")),
        f"{_number(backlog.get('p50_ms'))} / {_number(backlog.get('p99_ms'))} "
        f"({_number(backlog.get('p99_ms_vs_floor'), 2)}x)",
        f"{_number(throughput.get('per_s'))} ({_number(throughput.get('per_s_vs_floor'), 2)})",
        cpu,
        _ms(throughput.get("operators_cpu_seconds_per_case"), 3),
    ]


def table(runs) -> str:
    """A Markdown table of (name, results) pairs, in the order given."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(row(name, results)) + " |" for name, results in runs]
    return "\n".join(lines)


def _median(figure):
    return figure.get("median") if isinstance(figure, dict) else figure


def _number(figure, digits=1):
    value = _median(figure)
    return "–" if value is None else f"{value:,.{digits}f}"


def _ms(seconds, digits=2):
    value = _median(seconds)
    return "–" if value is None else f"{value * 1000:.{digits}f}"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("directories", nargs="+", metavar="DIR", help="a result directory (bench/results/...)")
    args = parser.parse_args(argv)
    runs = []
    for directory in map(Path, args.directories):
        try:
            runs.append((directory.name, json.loads((directory / "results.json").read_text())))
        except (OSError, ValueError) as exc:
            print(f"{directory}: no readable results.json ({exc})", file=sys.stderr)
            return 1
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
