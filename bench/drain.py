"""`python -m bench.drain SERVICE`: one service's CPU an event, measured with nothing else running
(docs/performance.md, item 47).

In a flood, two cores are shared by eight processes, PostgreSQL, RabbitMQ and the benchmark's own clients,
and a service's CPU a case moves with the machine's load by more than most changes to the service do.
This starts SERVICE alone, on a database and a vhost of its own, and gives it --events events at once:
triage, referral and notify find their normal lane's queue filled while the process was stopped
(SIGSTOP), and drain it; intake is posted --events normal cases by eight operators (bench.client).
Notify delivers to the benchmark's receiver, which verifies every webhook. For each repetition it prints
the process's CPU milliseconds an event (from /proc/<pid>/stat, from the moment the events are released to
a second after the last is handled) and events a second, then the medians.
"""
import argparse
import os
import signal
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone

import psycopg2
from kombu import Connection, Producer

from bench import load
from bench.client import NORMAL_CASE, IntakeClient
from bench.environment import BenchEnvironment
from bench.procstat import cpu_seconds
from bench.run import exported, run_in_child, without_options
from sanad.contracts import routing
from sanad.contracts.events import new_event, seal_particulars
from sanad.contracts.sealing import narrative_context
from sanad.crypto import load_keys

SERVICES = ("intake", "triage", "referral", "notify")
# The normal lane's queue of each, and the routing key its events come with.
QUEUES = {"triage": (routing.TRIAGE_CASE_RECEIVED.name, "case.received.normal"),
          "referral": (routing.REFERRAL_CASE_TRIAGED.name, "case.triaged.normal"),
          "notify": (routing.NOTIFY_REFERRAL_CREATED.name, "referral.created.normal")}
SETTLE_SECONDS = 1.0  # after the last event: the last batch's events published, its CPU counted
OPERATORS = 8


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m bench.drain", description=__doc__.split("\n\n")[0])
    parser.add_argument("service", choices=SERVICES)
    parser.add_argument("--events", type=int, default=3000, help="events (for intake, cases) a repetition")
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--at", metavar="REV", help="measure the service of this commit (as python -m bench)")
    args = parser.parse_args(argv)
    if args.at:
        with exported(args.at) as (export, commit):
            print(f"{args.service} at {commit[:10]}")
            return run_in_child("bench.drain", without_options(argv, ("--at",)), export)

    environment = BenchEnvironment("bench/results/drain-logs")
    try:
        environment.open(only=[args.service])
        figures = measure(environment, args.service, args.events, args.repetitions)
        print(f"median: {statistics.median(f[0] for f in figures):.3f} CPU ms an event, "
              f"{statistics.median(f[1] for f in figures):.0f} events a second")
    finally:
        environment.close()
    return 0


def measure(environment, service, events, repetitions, log=print):
    """[(CPU ms an event, events a second)] of each repetition, `service` alone running in `environment`."""
    pid = environment.service_pids[service]
    repetition = _posting(environment, events) if service == "intake" else _draining(environment, service, events)
    figures = []
    for number in range(1, repetitions + 1):
        cpu_ms, rate = repetition(pid)
        figures.append((cpu_ms, rate))
        log(f"repetition {number}: {cpu_ms:.3f} CPU ms an event, {rate:.0f} events a second")
    return figures


def _posting(environment, count):
    client = IntakeClient(environment.stack.url("intake"), environment.api_token)
    load.flood(lambda i: client.post_case("normal"), 300, OPERATORS)  # warm up

    def repetition(pid):
        before, started = cpu_seconds(pid), time.monotonic()
        load.flood(lambda i: client.post_case("normal"), count, OPERATORS)
        seconds = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
        return 1000 * (cpu_seconds(pid) - before) / count, count / seconds
    return repetition


def _draining(environment, service, count):
    make = _event_maker(environment, service)
    queue, routing_key = QUEUES[service]

    def repetition(pid):
        arrived = environment.receiver.count
        bodies = [make() for _ in range(count)]
        os.kill(pid, signal.SIGSTOP)
        try:
            with Connection(environment.amqp_uri) as connection:
                producer = Producer(connection.default_channel, exchange=routing.EXCHANGE, serializer="json")
                for body in bodies:
                    producer.publish(body, routing_key=routing_key, delivery_mode=2)
            before = cpu_seconds(pid)
        finally:
            os.kill(pid, signal.SIGCONT)
        started = time.monotonic()
        with Connection(environment.amqp_uri) as connection:
            while connection.default_channel.queue_declare(queue, passive=True).message_count:
                time.sleep(0.05)
        if service == "notify":
            environment.receiver.wait_for_count(lambda n: n >= arrived + count, timeout=300)
        seconds = time.monotonic() - started
        time.sleep(SETTLE_SECONDS)
        return 1000 * (cpu_seconds(pid) - before) / count, count / seconds
    return repetition


def _event_maker(environment, service):
    """A function making one message body of what `service` consumes, as its producer would."""
    keys = load_keys(environment.keys_file)
    legal_aid = _partner_of(environment, "legal_aid") if service == "notify" else None

    def case_received():
        case_id = uuid.uuid4()
        return new_event("case.received", {
            **_case(case_id), "channel": "whatsapp",
            "sealed_narrative": keys.transport.seal(NORMAL_CASE["narrative"], narrative_context(case_id)),
            "sealed_particulars": seal_particulars("case.received", {"facts": {}}, keys.transport, case_id),
        }, producer="intake", correlation_id=case_id).to_message()

    def case_triaged():
        case_id = uuid.uuid4()
        return new_event("case.triaged", {
            **_case(case_id), "level": "high", "score": 60, "sealed_evidence": None, "lexicon_version": "bench",
            "sealed_particulars": seal_particulars("case.triaged", {"reasons": [{"code": "money_demand",
                                                                                  "source": "text"}]},
                                                   keys.transport, case_id),
        }, producer="triage", correlation_id=case_id).to_message()

    def referral_created():
        case_id = uuid.uuid4()
        return new_event("referral.created", {
            "referral_id": uuid.uuid4(), "case_id": case_id, "reference": _case(case_id)["reference"],
            "partner_id": legal_aid, "partner_name": "Bench Legal Aid", "service": "legal_aid", "level": "high",
            "governorate": "dhi_qar", "created_at": datetime.now(timezone.utc),
        }, producer="referral", correlation_id=case_id).to_message()

    return {"triage": case_received, "referral": case_triaged, "notify": referral_created}[service]


def _case(case_id):
    return {"case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-{case_id.hex[4:8].upper()}",
            "received_at": datetime.now(timezone.utc), "governorate": "dhi_qar", "needs": ["legal_aid"],
            "consents": ["legal_aid"]}


def _partner_of(environment, service):
    conn = psycopg2.connect(environment.database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT partner_id FROM referral.partner_services WHERE service = %s", (service,))
            return uuid.UUID(str(cur.fetchone()[0]))
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main())
