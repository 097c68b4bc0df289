"""Summarise what bench/experiments/round_trips.patch logged: each service's round trips to PostgreSQL a
case, by the kind of statement that ended each round trip (docs/performance.md, item 47).

    python -m bench.stages --cases 3000 --at REV --patch bench/experiments/round_trips.patch --logs DIR
    python bench/experiments/round_trips.py DIR 3200

bench.stages posts 200 cases to warm up, then --cases: the second argument is their sum. Each process logs
its counts every 100 round trips, so the last line of each log leaves out up to 99 of them; timers that
read the database (gauges, sweeps) are counted too."""
import json
import sys
from pathlib import Path

MARK = "round trips: "


def last_counts(log):
    """The last counts a service's log holds; its lines are JSON (sanad.platform.logs)."""
    counts = {}
    for line in log.read_text(errors="replace").splitlines():
        if MARK in line:
            counts = json.loads(json.loads(line)["message"].split(MARK, 1)[1])
    return counts


def main(log_dir, cases):
    for log in sorted(Path(log_dir).glob("*.log")):
        counts = last_counts(log)
        if not counts:
            continue
        print(f"{log.stem}: {sum(counts.values()) / cases:.2f} round trips a case")
        for kind, count in sorted(counts.items(), key=lambda item: -item[1])[:5]:
            print(f"    {count / cases:.3f}  {kind}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
