"""`python -m bench.timeline`: where a critical case's time goes from referral's offer to notify's
request, read from the services' own rows, alone or behind a flood, and what PostgreSQL's backends are
doing meanwhile (docs/performance-runs.md, "Inside the last stage").

It starts the stack as the benchmark does, on a database and a vhost of its own; with --flood N, eight
operators post N normal cases as fast as intake takes them; 5 s in, the critical cases go at 10 a second.
Then, for each critical referral, on PostgreSQL's clock (which the services' timestamps share):
- offered: referral's handler began (the referral's created_at);
- notify began: notify's transaction for the `referral.created` event began (processed_events);
- delivery recorded: notify recorded the webhook's delivery in that transaction;
- request: notify's HTTP request began (the first attempt's record less its latency).

--sample-waits counts, every 5 ms, the state and wait event of every backend of the run's database,
by the lane of the process it serves. --renice-backends gives each backend the CPU priority of its
lane (critical -5, intake 0, normal lane 10), as an experiment; --realtime-backends puts the critical
lane's backends under the real-time round-robin policy (SCHED_RR), so that they preempt everything else
the moment they wake, another. --broker-ping measures, while the critical cases are sent, what one
crossing of RabbitMQ costs a persistent message with no service in it (bench.broker_ping).
--statement-log FILE has PostgreSQL log every statement's duration for the run's database and summarises
what FILE (the server's log) gained.
"""
import argparse
import collections
import os
import re
import statistics
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import psycopg2.extras

from bench.broker_ping import measure_in_own_process
from bench.client import IntakeClient
from bench.environment import POSTGRES, BenchEnvironment
from bench.stats import summary_ms
from sanad.platform.migrate import drop_database, ensure_database, migrate

STEPS = (("offered", "notify_began"), ("notify_began", "delivery_recorded"),
         ("delivery_recorded", "request"), ("offered", "request"))
TIMELINE = """
    SELECT r.created_at AS offered, np.processed_at AS notify_began, d.created_at AS delivery_recorded,
           a.attempted_at - make_interval(secs => a.latency_ms / 1000.0) AS request
    FROM referral.referrals r
    JOIN referral.outbox o ON o.routing_key LIKE 'referral.created.%%'
                          AND (o.body -> 'data' ->> 'referral_id')::uuid = r.id
    JOIN notify.processed_events np ON np.event_id = o.id
    JOIN notify.deliveries d ON d.referral_id = r.id
    JOIN notify.delivery_attempts a ON a.delivery_id = d.id AND a.attempt = 1
    WHERE r.level = 'critical'
"""
BACKENDS = """
    SELECT pid, application_name, state, coalesce(wait_event_type || ':' || wait_event, 'running') AS waiting
    FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""
LANE_NICE = {"critical": -5, "intake": 0, "normal": 10}


def lane_of(application_name):
    if application_name.endswith("_critical"):
        return "critical"
    return "intake" if application_name == "sanad intake" else "normal"


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.timeline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--critical", type=int, default=100, help="critical cases, at 10 a second")
    parser.add_argument("--flood", type=int, default=0, help="normal cases flooded from eight operators")
    parser.add_argument("--sample-waits", action="store_true")
    parser.add_argument("--renice-backends", action="store_true")
    parser.add_argument("--realtime-backends", action="store_true")
    parser.add_argument("--broker-ping", action="store_true")
    parser.add_argument("--statement-log", type=Path)
    args = parser.parse_args(argv)

    database_url = f"{POSTGRES}/sanad_timeline_{uuid.uuid4().hex[:8]}"
    ensure_database(database_url)
    migrate(database_url)
    log_offset = None
    if args.statement_log:
        log_offset = args.statement_log.stat().st_size
        with _autocommit(database_url) as cur:
            cur.execute(f"ALTER DATABASE {database_url.rsplit('/', 1)[1]} SET log_min_duration_statement = 0")
    environment = BenchEnvironment("bench/results/timeline-logs", database_url=database_url)
    try:
        environment.open()
        samples = collections.Counter()
        watchers = []
        if args.sample_waits:
            watchers.append(lambda rows: samples.update((lane_of(r["application_name"]), r["state"], r["waiting"])
                                                        for r in rows))
        if args.renice_backends:
            watchers.append(_renice)
        if args.realtime_backends:
            watchers.append(_realtime_critical_backends)
        if watchers:
            threading.Thread(target=_watch, args=(database_url, watchers), daemon=True).start()
        pings = []
        _send(environment, args.critical, args.flood, pings if args.broker_ping else None)
        _report_timeline(database_url)
        if args.broker_ping:
            print("\nbroker crossings while the critical cases were sent (ms):", summary_ms(pings))
        if samples:
            print("\nbackends sampled every 5 ms: lane, state, waiting for (count)")
            for (lane, state, waiting), count in samples.most_common(25):
                print(f"  {lane:9} {state:20} {waiting:28} {count}")
        if args.statement_log:
            _report_statements(args.statement_log, log_offset)
    finally:
        environment.close()
        drop_database(database_url)


def _send(environment, critical, flood, pings=None, operators=8):
    """Posts the flood and the critical cases; with `pings` (a list), fills it with the broker's crossing
    times measured meanwhile."""
    intake = environment.stack.url("intake")

    def operator(count):
        client = IntakeClient(intake, environment.api_token)
        for _ in range(count):
            client.post_case("normal")

    flooders = [threading.Thread(target=operator, args=(flood // operators,), daemon=True)
                for _ in range(operators if flood else 0)]
    for thread in flooders:
        thread.start()
    time.sleep(5 if flood else 0)
    pinger = None
    if pings is not None:
        pinger = threading.Thread(target=lambda: pings.extend(
            measure_in_own_process(environment.amqp_uri, seconds=critical * 0.1)), daemon=True)
        pinger.start()
    client = IntakeClient(intake, environment.api_token)
    for _ in range(critical):
        client.post_case("critical")
        time.sleep(0.1)
    if pinger is not None:
        pinger.join()
    for thread in flooders:
        thread.join()
    expected = critical + flood // operators * operators
    if not environment.receiver.wait_for_count(lambda count: count >= expected, timeout=600):
        raise SystemExit(f"only {environment.receiver.count} of {expected} webhooks arrived")
    time.sleep(2)  # notify records the attempt after the partner's answer


def _report_timeline(database_url):
    with psycopg2.connect(database_url) as conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(TIMELINE)
        rows = cur.fetchall()
    print(f"{len(rows)} critical referrals (ms)")
    for start, end in STEPS:
        spans = sorted((row[end] - row[start]).total_seconds() * 1000 for row in rows)
        print(f"  {start:>17} -> {end:<17} p50 {statistics.median(spans):7.2f}"
              f"  p90 {spans[int(len(spans) * 0.9)]:7.2f}")


def _watch(database_url, watchers):
    """Runs until the run's database is dropped; its own queries stay out of the statement log."""
    try:
        with _autocommit(database_url) as cur:
            cur.execute("SET log_min_duration_statement = -1")
            while True:
                cur.execute(BACKENDS)
                rows = cur.fetchall()
                for watcher in watchers:
                    watcher(rows)
                time.sleep(0.005)
    except psycopg2.OperationalError:
        return


_reniced = {}


def _renice(rows):
    for row in rows:
        nice = LANE_NICE[lane_of(row["application_name"])]
        if _reniced.get(row["pid"]) != nice:
            try:
                os.setpriority(os.PRIO_PROCESS, row["pid"], nice)
                _reniced[row["pid"]] = nice
            except OSError:
                pass


_realtime_pids = set()


def _realtime_critical_backends(rows):
    for row in rows:
        if lane_of(row["application_name"]) == "critical" and row["pid"] not in _realtime_pids:
            os.sched_setscheduler(row["pid"], os.SCHED_RR, os.sched_param(1))
            _realtime_pids.add(row["pid"])


def _report_statements(path, offset):
    """Durations by the statement's first three words, from what the server's log gained in the run."""
    entry = re.compile(r".* LOG:  duration: ([\d.]+) ms  statement: ?(.*)")
    entries = []  # [duration, statement]; a statement that starts on the next line is filled in from it
    with open(path, errors="replace") as log:
        log.seek(offset)
        for line in log:
            match = entry.match(line)
            if match:
                entries.append([float(match.group(1)), match.group(2).strip()])
            elif entries and not entries[-1][1] and line.startswith("\t"):
                entries[-1][1] = line.strip()
    by_statement = collections.defaultdict(list)
    for duration, text in entries:
        by_statement[" ".join(text.split()[:3])[:40]].append(duration)
    print("\nstatements by total time (ms): count, p50, p90, p99, total s")
    for text, values in sorted(by_statement.items(), key=lambda kv: -sum(kv[1]))[:15]:
        values.sort()
        print(f"  {text:40} {len(values):7} {statistics.median(values):7.3f} {values[int(len(values) * .9)]:7.3f}"
              f" {values[int(len(values) * .99)]:7.3f} {sum(values) / 1000:7.1f}")


@contextmanager
def _autocommit(database_url):
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        yield conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    finally:
        conn.close()


if __name__ == "__main__":
    main()
