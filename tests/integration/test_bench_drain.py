"""`python -m bench.drain`, with a handful of events: the service alone drains what was queued while it
was stopped, and the figures come out. Timings are never asserted (docs/performance.md, item 47)."""
import psycopg2
import pytest

from bench import drain
from bench.environment import BenchEnvironment

pytestmark = pytest.mark.integration


def test_triage_alone_drains_what_was_queued_while_it_was_stopped(tmp_path, database_url, amqp_uri, keys_file):
    environment = BenchEnvironment(tmp_path, database_url=database_url, amqp_uri=amqp_uri, keys_file=keys_file)
    try:
        environment.open(only=["triage"])
        figures = drain.measure(environment, "triage", events=20, repetitions=2, log=lambda line: None)
    finally:
        environment.close()

    assert len(figures) == 2 and all(cpu_ms > 0 and rate > 0 for cpu_ms, rate in figures)
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM triage.assessments")
        assert cur.fetchone()[0] == 40, "every event was handled before its repetition ended"
