"""Benchmark: how long notify's sweep takes to claim due deliveries as more of them wait.

Not a test: timings depend on the machine. Run it before and after a change to the claim:

    .venv/bin/python bench/claim_due.py [--pending 200 2000 8000] [--claims 30] [--against REV]

For each backlog size it builds a scratch database with that many pending deliveries spread over two
partners' endpoints, then times `CLAIM_DUE` as the sweep runs it (eight free slots, one endpoint with two
attempts of its own running) `claims` times, rolling each claim back so every one sees the same backlog,
and prints the median in milliseconds. `--against REV` times that commit's query too, on the same data.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sanad import settings  # noqa: E402
from sanad.platform import migrate  # noqa: E402
from sanad.platform.pool import Pool, Prepared  # noqa: E402
from services.notify import sql  # noqa: E402

INSERT_ENDPOINT = "INSERT INTO endpoints (partner_id, url) VALUES (%s, 'https://partner.example/webhooks')"
INSERT_PENDING = """
    INSERT INTO deliveries (id, webhook_id, kind, target, endpoint_id, referral_id, case_id, partner_id, lane,
                            payload, next_attempt_at, created_at)
    SELECT gen_random_uuid(), 'msg_' || n, 'referral.offered', 'partner', e.id, gen_random_uuid(), gen_random_uuid(),
           e.id, 'normal', '{}', now() - make_interval(secs => %(count)s - n), now()
    FROM generate_series(1, %(count)s) AS n
    JOIN (VALUES (0, %(first)s::uuid), (1, %(second)s::uuid)) AS e (slot, id) ON e.slot = n %% 2
"""


def claim_query_at(rev):
    """CLAIM_DUE as services/notify/sql.py defined it at commit `rev`."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:services/notify/sql.py"], check=True,
                            capture_output=True, text=True).stdout
    namespace = {}
    exec(compile(source, f"{rev}:services/notify/sql.py", "exec"), namespace)  # noqa: S102 -- our own history
    return namespace["CLAIM_DUE"]


def time_claims(pool, query, endpoints, claims):
    """The median time of `claims` claims, each in a transaction rolled back (the pool's connections are in
    autocommit), and how many deliveries the last one claimed. A Prepared query runs as the services run
    it: prepared once, then by its generic plan."""
    params = {"lane": "normal", "limit": 8, "in_flight": json.dumps({str(endpoints[0]): 2}), "per_endpoint": 4,
              "now": datetime.now(timezone.utc), "lease": 60, "pending": sql.PENDING}
    times, claimed = [], 0
    with pool.connection() as conn, conn.cursor() as cur:
        statement = query
        if isinstance(query, Prepared):
            cur.execute(query.prepare)
            statement = query.run
        for _ in range(claims):
            cur.execute("BEGIN")
            started = time.perf_counter()
            cur.execute(statement, params)
            claimed = len(cur.fetchall())
            times.append(time.perf_counter() - started)
            cur.execute("ROLLBACK")
        if isinstance(query, Prepared):
            cur.execute(f"DEALLOCATE {query.name}")
    return statistics.median(times) * 1000, claimed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, nargs="+", default=[200, 2000, 8000])
    parser.add_argument("--claims", type=int, default=30, help="timed claims per size; the median is reported")
    parser.add_argument("--against", metavar="REV", help="also time this commit's CLAIM_DUE")
    args = parser.parse_args()

    queries = {"working tree": sql.CLAIM_DUE}
    if args.against:
        queries[args.against] = claim_query_at(args.against)
    database_url = settings.from_environment().database_url.rsplit("/", 1)[0] + "/sanad_bench_claim_due"
    print(f"{'pending':>8}  " + "  ".join(f"{name:>14}" for name in queries) + "   (median ms per claim)")
    for count in args.pending:
        migrate.drop_database(database_url)
        migrate.ensure_database(database_url)
        migrate.migrate(database_url, ("notify",))
        pool = Pool(database_url, size=1, schema="notify")
        try:
            endpoints = [uuid.uuid4(), uuid.uuid4()]
            with pool.transaction() as cur:
                for endpoint in endpoints:
                    cur.execute(INSERT_ENDPOINT, (endpoint,))
                cur.execute(INSERT_PENDING, {"count": count, "first": endpoints[0], "second": endpoints[1]})
                cur.execute("ANALYZE deliveries")
            medians = [time_claims(pool, query, endpoints, args.claims) for query in queries.values()]
        finally:
            pool.close()
            migrate.drop_database(database_url)
        if len({claimed for _, claimed in medians}) != 1:
            raise SystemExit("the queries claimed different numbers of deliveries")
        print(f"{count:>8}  " + "  ".join(f"{ms:>14.3f}" for ms, _ in medians))
    return 0


if __name__ == "__main__":
    sys.exit(main())
