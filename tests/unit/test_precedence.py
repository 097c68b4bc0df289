"""Precedence among green threads (sanad.platform.precedence): who waits for a critical case, and for how
long at most. Green threads and eventlet's clock only; no connection."""
import eventlet
import eventlet.event

from sanad.platform.precedence import WAITS, Precedence

LONG = 30.0  # a limit no test reaches unless it is broken


def waits_ended(outcome):
    return WAITS.labels(outcome=outcome)._value.get()


def test_another_green_thread_waits_until_the_holder_lets_go():
    precedence = Precedence(max_wait=LONG)
    holder = precedence.hold()
    passed = []
    waiter = eventlet.spawn(lambda: (precedence.wait_turn(), passed.append(True)))
    eventlet.sleep(0.01)
    assert passed == [], "it went on while a critical case held precedence"

    cleared_before = waits_ended("cleared")
    precedence.release(holder)
    waiter.wait()

    assert passed == [True]
    assert waits_ended("cleared") == cleared_before + 1


def test_holders_never_wait_for_themselves_or_each_other():
    precedence = Precedence(max_wait=LONG)
    first = precedence.hold()
    finished = eventlet.event.Event()

    def second_critical_case():
        held = precedence.hold()
        precedence.wait_turn()
        precedence.release(held)
        finished.send()

    precedence.wait_turn()  # the first holder's own round trip
    eventlet.spawn(second_critical_case)
    with eventlet.Timeout(LONG):
        finished.wait()
    precedence.release(first)


def test_nobody_waits_when_nobody_holds_precedence():
    precedence = Precedence(max_wait=LONG)
    precedence.release(precedence.hold())
    with eventlet.Timeout(1):
        precedence.wait_turn()


def test_a_wait_ends_at_its_limit_when_the_holder_never_lets_go():
    precedence = Precedence(max_wait=0.05)
    precedence.hold()
    limits_before = waits_ended("limit")
    passed = []
    waiter = eventlet.spawn(lambda: (precedence.wait_turn(), passed.append(True)))
    with eventlet.Timeout(LONG):
        waiter.wait()
    assert passed == [True]
    assert waits_ended("limit") == limits_before + 1


def test_a_holder_killed_before_letting_go_holds_nobody_up():
    precedence = Precedence(max_wait=LONG)
    held = eventlet.event.Event()
    critical_worker = eventlet.spawn(lambda: (precedence.hold(), held.send(), eventlet.sleep(LONG)))
    held.wait()
    critical_worker.kill()
    with eventlet.Timeout(1):
        precedence.wait_turn()


def test_one_release_wakes_every_waiter():
    precedence = Precedence(max_wait=LONG)
    holder = precedence.hold()
    passed = []
    waiters = [eventlet.spawn(lambda i=i: (precedence.wait_turn(), passed.append(i))) for i in range(5)]
    eventlet.sleep(0.01)
    assert passed == []
    precedence.release(holder)
    with eventlet.Timeout(LONG):
        for waiter in waiters:
            waiter.wait()
    assert sorted(passed) == [0, 1, 2, 3, 4]
