"""Precedence among green threads (sanad.platform.precedence): who waits for a critical case, and for how
long at most, and when the process would go into real time and back. Green threads and eventlet's clock
only; no connection, and a boost that records what it was asked rather than changing this process's
scheduling (tests/integration/test_precedence.py checks the real one)."""
import eventlet
import eventlet.event
from prometheus_client import REGISTRY

from sanad.platform.precedence import Precedence

LONG = 30.0  # a limit no test reaches unless it is broken
CONNECTION = object()  # what the pool passes: only the boost looks at it


class RecordingBoost:
    def __init__(self):
        self.calls = []

    def start(self):
        self.calls.append("start")

    def include(self, conn):
        self.calls.append("include")

    def stop(self):
        self.calls.append("stop")


def precedence(max_wait=LONG):
    return Precedence(max_wait=max_wait, boost=RecordingBoost())


def waits_ended(outcome):
    return REGISTRY.get_sample_value("sanad_precedence_waits_total", {"outcome": outcome}) or 0


def test_another_green_thread_waits_until_the_holder_lets_go():
    gate = precedence()
    holder = gate.hold()
    passed = []
    waiter = eventlet.spawn(lambda: (gate.before_round_trip(CONNECTION), passed.append(True)))
    eventlet.sleep(0.01)
    assert passed == [], "it went on while a critical case held precedence"

    cleared_before = waits_ended("cleared")
    gate.release(holder)
    waiter.wait()

    assert passed == [True]
    assert waits_ended("cleared") == cleared_before + 1


def test_holders_never_wait_for_themselves_or_each_other():
    gate = precedence()
    first = gate.hold()
    finished = eventlet.event.Event()

    def second_critical_case():
        held = gate.hold()
        gate.before_round_trip(CONNECTION)
        gate.release(held)
        finished.send()

    gate.before_round_trip(CONNECTION)  # the first holder's own round trip
    eventlet.spawn(second_critical_case)
    with eventlet.Timeout(LONG):
        finished.wait()
    gate.release(first)


def test_nobody_waits_when_nobody_holds_precedence():
    gate = precedence()
    gate.release(gate.hold())
    with eventlet.Timeout(1):
        gate.before_round_trip(CONNECTION)


def test_a_wait_ends_at_its_limit_when_the_holder_never_lets_go_and_real_time_ends_with_it():
    gate = precedence(max_wait=0.05)
    gate.hold()
    limits_before = waits_ended("limit")
    passed = []
    waiter = eventlet.spawn(lambda: (gate.before_round_trip(CONNECTION), passed.append(True)))
    with eventlet.Timeout(LONG):
        waiter.wait()
    assert passed == [True]
    assert waits_ended("limit") == limits_before + 1
    assert gate.boost.calls == ["start", "stop"], "the flood moves again: real time would be the flood's too"


def test_a_holder_killed_before_letting_go_holds_nobody_up():
    gate = precedence()
    held = eventlet.event.Event()
    critical_worker = eventlet.spawn(lambda: (gate.hold(), held.send(), eventlet.sleep(LONG)))
    held.wait()
    critical_worker.kill()
    with eventlet.Timeout(1):
        gate.before_round_trip(CONNECTION)


def test_one_release_wakes_every_waiter():
    gate = precedence()
    holder = gate.hold()
    passed = []
    waiters = [eventlet.spawn(lambda i=i: (gate.before_round_trip(CONNECTION), passed.append(i))) for i in range(5)]
    eventlet.sleep(0.01)
    assert passed == []
    gate.release(holder)
    with eventlet.Timeout(LONG):
        for waiter in waiters:
            waiter.wait()
    assert sorted(passed) == [0, 1, 2, 3, 4]


def test_the_process_goes_into_real_time_with_the_first_holder_and_back_after_the_last():
    gate = precedence()
    first = gate.hold()
    gate.before_round_trip(CONNECTION)
    second_ends = eventlet.event.Event()

    def second_critical_case():
        held = gate.hold()
        second_ends.wait()
        gate.release(held)

    second = eventlet.spawn(second_critical_case)
    eventlet.sleep(0)
    gate.release(first)
    assert gate.boost.calls == ["start", "include"], "still a critical case in hand"
    second_ends.send()
    second.wait()
    assert gate.boost.calls == ["start", "include", "stop"]
