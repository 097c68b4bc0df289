"""`python -m bench.stages`: which stage a flood of normal cases waits in, read from the services' own rows
(docs/performance.md, item 45).

It starts the stack as the benchmark does, on a database and a vhost of its own, warms it up, and has eight
operators post --cases normal cases as fast as intake takes them. When every webhook has arrived it reads,
for each case, when intake recorded it, triage assessed it, referral offered it and notify finished its
delivery, as each service wrote it down (one machine, one wall clock). It prints each stage's rate (cases a second between the 10th and 90th
percentile of its times) and, for each tenth of the flood in the order intake recorded the cases, how long
a case waited between one stage and the next (the median). The stage whose wait grows through the flood
is the one that falls behind; a profile cannot tell it, since every process is busy in a flood.
"""
import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

import psycopg2

from bench import load
from bench.client import IntakeClient
from bench.environment import POSTGRES, BenchEnvironment
from bench.run import exported, run_in_child, without_options
from sanad.platform.migrate import drop_database, ensure_database, migrate

STAGES = ("recorded", "assessed", "offered", "delivered")
STAGE_TIMES = """
    SELECT c.received_at AS recorded, a.assessed_at AS assessed, r.created_at AS offered, d.finished_at AS delivered
    FROM intake.cases c
    JOIN triage.assessments a ON a.case_id = c.id
    JOIN referral.referrals r ON r.case_id = c.id
    JOIN notify.deliveries d ON d.referral_id = r.id
    WHERE c.reference = ANY(%(references)s)
    ORDER BY c.received_at
"""
WARM_UP_CASES = 200
OPERATORS = 8


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=5000, help="normal cases flooded from eight operators")
    parser.add_argument("--logs", type=Path, default=Path("bench/results/stages-logs"),
                        help="where each service writes its log")
    parser.add_argument("--at", metavar="REV", help="the services of this commit (as python -m bench)")
    parser.add_argument("--patch", action="append", default=[], metavar="FILE",
                        help="with --at: apply this patch to the export first (as python -m bench)")
    args = parser.parse_args(argv)
    if args.at:
        with exported(args.at, args.patch) as (export, commit):
            print(f"services at {commit[:10]}")
            rest = without_options(argv, ("--at", "--patch", "--logs"))
            return run_in_child("bench.stages", [*rest, "--logs", str(args.logs.resolve())], export)

    database_url = f"{POSTGRES}/sanad_stages_{uuid.uuid4().hex[:8]}"
    ensure_database(database_url)
    migrate(database_url)
    environment = BenchEnvironment(args.logs, database_url=database_url)
    try:
        environment.open()
        client = IntakeClient(environment.stack.url("intake"), environment.api_token)
        _flood_and_wait(environment, client, WARM_UP_CASES)
        flooded = _flood_and_wait(environment, client, args.cases)
        _report(_stage_times(database_url, [case.reference for case in flooded]))
    finally:
        environment.close()
        drop_database(database_url)


def _flood_and_wait(environment, client, count):
    before = environment.receiver.count
    flooded = load.flood(lambda i: client.post_case("normal"), count, OPERATORS)
    if not environment.receiver.wait_for_count(lambda arrived: arrived >= before + count, timeout=900):
        raise SystemExit(f"only {environment.receiver.count - before} of {count} webhooks arrived")
    return flooded


def _stage_times(database_url, references, timeout=30):
    """(recorded, assessed, offered, delivered) in seconds of the wall clock for each case, in the order
    intake recorded them. Notify finishes a delivery just after the partner's answer, so the last ones
    are waited for a little."""
    deadline = time.monotonic() + timeout
    conn = psycopg2.connect(database_url)
    try:
        while True:
            with conn, conn.cursor() as cur:
                cur.execute(STAGE_TIMES, {"references": references})
                rows = cur.fetchall()
            if len(rows) == len(references) and all(row[-1] is not None for row in rows):
                return [tuple(moment.timestamp() for moment in row) for row in rows]
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(references) - len(rows)} cases never reached notify, or were not finished")
            time.sleep(0.2)
    finally:
        conn.close()


def _report(times):
    print(f"{len(times)} cases")
    for i, stage in enumerate(STAGES):
        moments = sorted(row[i] for row in times)
        low, high = moments[len(moments) // 10], moments[len(moments) * 9 // 10]
        print(f"  {stage:>9}: {0.8 * len(moments) / (high - low):6.1f} cases a second")
    steps = list(zip(STAGES, STAGES[1:]))
    print("\nmedian wait between stages (ms), by tenth of the flood in the order intake recorded the cases")
    print("  tenth  " + "  ".join(f"{a[:8]}→{b[:9]:<9}" for a, b in steps))
    tenth = max(1, len(times) // 10)
    for start in range(0, tenth * 10, tenth):
        chunk = times[start:start + tenth]
        waits = [statistics.median((row[j + 1] - row[j]) * 1000 for row in chunk) for j in range(len(steps))]
        print(f"  {start // tenth + 1:>5}  " + "  ".join(f"{wait:>18.0f}" for wait in waits))


if __name__ == "__main__":
    sys.exit(main())
