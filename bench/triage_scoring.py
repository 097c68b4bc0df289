"""Benchmark: notes scored per second on one core, over the evaluation set repeated.

Not a test: timings depend on the machine. Run it before and after a lexicon or matcher change:

    .venv/bin/python bench/triage_scoring.py [--repeat 20] [--runs 7] [--cold]

Each run scores the whole evaluation set `repeat` times in this one process, pinned to one core; the
figure reported is the median over `runs` runs of notes per CPU second of this process, after one warm-up
run that also compiles the lexicon. Wall-clock throughput is printed too; on an idle machine the two
agree, on a busy one only the CPU figure measures the scorer. The target is at least 2,000 notes a second.
"""
import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.triage.assessment import case_facts_from_mapping, default_assessor  # noqa: E402
from services.triage.normalise import clear_caches  # noqa: E402

EVALUATION_SET = ROOT / "tests" / "data" / "triage_eval.jsonl"
TARGET = 2000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="passes over the evaluation set per run")
    parser.add_argument("--runs", type=int, default=7, help="timed runs; the median is reported")
    parser.add_argument("--cold", action="store_true",
                        help="forget the per-word caches (keys, index) before every note: a worst case, "
                             "since real notes share most of their words and this set repeated shares all")
    args = parser.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    with EVALUATION_SET.open(encoding="utf-8") as lines:
        facts = [case_facts_from_mapping(json.loads(line)) for line in lines if line.strip()]
    notes = facts * args.repeat

    started = time.perf_counter()
    assessor = default_assessor()
    print(f"lexicon {assessor.lexicon_version} compiled in {time.perf_counter() - started:.2f} s")
    for case in facts:
        assessor.assess(case)

    def forget_words():
        clear_caches()
        assessor.lexicon.index.candidates.cache_clear()

    forget = forget_words if args.cold else (lambda: None)
    # CPU time of this process is the figure: on a shared machine, wall time also counts the time other
    # processes held the core. Wall time is printed next to it.
    cpu_rates, wall_rates = [], []
    for _ in range(args.runs):
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for case in notes:
            forget()
            assessor.assess(case)
        cpu_rates.append(len(notes) / (time.process_time() - cpu_started))
        wall_rates.append(len(notes) / (time.perf_counter() - wall_started))
    median = statistics.median(cpu_rates)
    print(f"{len(notes)} notes per run{' (cold word caches)' if args.cold else ''}, {args.runs} runs, one core: "
          f"median {median:,.0f} notes per CPU second (min {min(cpu_rates):,.0f}, max {max(cpu_rates):,.0f}); "
          f"wall clock median {statistics.median(wall_rates):,.0f} notes/s; target {TARGET:,}")
    return 0 if median >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
