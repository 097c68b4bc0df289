"""A critical case first among a process's workers (sanad.platform.precedence), on real PostgreSQL and
RabbitMQ in a nameko container of the test's own: once a worker says its case is critical, the round
trips to PostgreSQL of every other green thread wait until it has ended and published its event, and
never longer than the limit; meanwhile the process and the case's backend run in real time, where this
machine lets them."""
import os
import uuid

import eventlet
import eventlet.event
import pytest
from nameko.containers import ServiceContainer
from nameko.testing.services import dummy, entrypoint_hook
from prometheus_client import REGISTRY

from sanad.contracts.events import new_event
from sanad.platform.database import Database, database_of
from sanad.platform.outbox import Outbox
from sanad.platform.precedence import PRECEDENCE

pytestmark = pytest.mark.integration

LONG = 30.0  # a limit no test reaches unless it is broken


class Worker:
    name = "precedence_probe"

    db = Database("triage")
    outbox = Outbox()
    done = []  # what the critical worker and each request of the flood finished, in order

    @dummy
    def critical(self, began, go_on):
        """A critical case's worker: it says so before its first round trip, then waits for the test
        between two of them."""
        self.outbox.go_first()
        with self.db.transaction() as cur:
            cur.execute("SELECT 1")
            began.send(cur.connection.info.backend_pid)
            go_on.wait()
            self.outbox.add(cur, new_event("case.unmatched", {
                "case_id": uuid.uuid4(), "reference": "SND-TEST-0002", "level": "critical",
                "governorate": "dhi_qar", "services": ["counselling"],
            }, producer="test", lane="critical"))
        self.done.append("critical")


@pytest.fixture
def worker(monkeypatch, database_url, amqp_uri):
    monkeypatch.setenv("SANAD_DATABASE_URL", database_url)
    monkeypatch.setenv("SANAD_AMQP_URI", amqp_uri)
    Worker.done = []
    container = ServiceContainer(Worker, config={"AMQP_URI": amqp_uri, "max_workers": 6})
    container.start()
    yield container
    container.stop()


def flood(container, count):
    """Requests of a flood on the worker's pool, each in a green thread of its own."""
    pool = database_of(container).pool

    def request(number):
        with pool.transaction() as cur:
            cur.execute("SELECT 1")
        Worker.done.append(f"normal {number}")

    return [eventlet.spawn(request, number) for number in range(count)]


def cleared_waits():
    return REGISTRY.get_sample_value("sanad_precedence_waits_total", {"outcome": "cleared"}) or 0


def test_other_requests_wait_for_a_critical_case_to_end_before_their_round_trips(monkeypatch, worker):
    monkeypatch.setattr(PRECEDENCE, "max_wait", LONG)
    began, go_on = eventlet.event.Event(), eventlet.event.Event()
    waited_before = cleared_waits()
    with entrypoint_hook(worker, "critical") as critical:
        critical_worker = eventlet.spawn(critical, began, go_on)
        began.wait()
        requests = flood(worker, 3)
        eventlet.sleep(0.3)
        assert Worker.done == [], "a normal request's round trip went ahead of the critical case"

        go_on.send()
        critical_worker.wait()
        for request in requests:
            request.wait()

    assert Worker.done[0] == "critical"
    assert sorted(Worker.done[1:]) == ["normal 0", "normal 1", "normal 2"]
    assert cleared_waits() == waited_before + 3, "each request waited once"


def test_a_critical_case_that_stalls_holds_the_others_up_no_longer_than_the_limit(monkeypatch, worker):
    monkeypatch.setattr(PRECEDENCE, "max_wait", 0.05)
    began, go_on = eventlet.event.Event(), eventlet.event.Event()
    with entrypoint_hook(worker, "critical") as critical:
        critical_worker = eventlet.spawn(critical, began, go_on)
        began.wait()
        with eventlet.Timeout(LONG):
            for request in flood(worker, 3):
                request.wait()
        assert sorted(Worker.done) == ["normal 0", "normal 1", "normal 2"]

        go_on.send()
        critical_worker.wait()
    assert Worker.done[-1] == "critical"
    monkeypatch.setattr(PRECEDENCE, "max_wait", LONG)
    with eventlet.Timeout(5):
        PRECEDENCE.before_round_trip(None)  # at once: the critical worker let go at its end


def policy(pid):
    return os.sched_getscheduler(pid) & ~os.SCHED_RESET_ON_FORK


def test_while_a_critical_case_is_handled_the_process_and_its_backend_run_in_real_time(monkeypatch, worker):
    if os.environ.get("SANAD_CRITICAL_REALTIME") == "0":
        pytest.skip("real time is turned off (SANAD_CRITICAL_REALTIME=0)")
    began, go_on = eventlet.event.Event(), eventlet.event.Event()
    assert policy(0) == os.SCHED_OTHER
    with entrypoint_hook(worker, "critical") as critical:
        critical_worker = eventlet.spawn(critical, began, go_on)
        backend = began.wait()
        if PRECEDENCE.boost.refused:
            go_on.send()
            critical_worker.wait()
            pytest.skip("this machine does not let the tests raise a process's priority (no CAP_SYS_NICE)")
        during = policy(0), policy(backend)
        go_on.send()
        critical_worker.wait()
    with eventlet.Timeout(LONG):  # the worker lets go after its answer, once its event is published
        while policy(0) != os.SCHED_OTHER:
            eventlet.sleep(0.05)

    assert during == (os.SCHED_RR, os.SCHED_RR)
    assert policy(backend) == os.SCHED_OTHER
