"""The attempt pool: bounded, with a share of the requests per endpoint that an attempt gives back when its
request has ended, and never stuck by an attempt that fails; and the recorder that records the results of
attempts ending together in one transaction."""
import eventlet
from eventlet.event import Event

from services.notify.dispatch import AttemptPool, GroupRecorder


def hold(gate):
    """An attempt whose request stays open until `gate` is sent."""
    return lambda request_ended: gate.wait()


def recording_until(gate):
    """An attempt whose request ends at once, and which records its result until `gate` is sent."""
    def attempt(request_ended):
        request_ended()
        gate.wait()
    return attempt


def test_slots_are_taken_when_an_attempt_starts_and_given_back_when_it_ends():
    pool = AttemptPool(size=3, per_endpoint=2)
    gate = Event()
    pool.run("a", hold(gate))
    pool.run("b", hold(gate))
    assert pool.free() == 1 and pool.in_flight() == {"a": 1, "b": 1}
    gate.send()
    assert pool.wait(timeout=5)
    assert pool.free() == 3 and pool.in_flight() == {}


def test_an_endpoint_gets_no_more_than_its_share_while_others_still_have_room():
    pool = AttemptPool(size=4, per_endpoint=2)
    gate = Event()
    pool.run("slow", hold(gate))
    pool.run("slow", hold(gate))
    assert not pool.has_room_for("slow")
    assert pool.has_room_for("other")
    gate.send()
    pool.wait(timeout=5)


def test_a_full_pool_has_room_for_no_one():
    pool = AttemptPool(size=2, per_endpoint=2)
    gate = Event()
    pool.run("a", hold(gate))
    pool.run("b", hold(gate))
    assert not pool.has_room_for("c")
    gate.send()
    pool.wait(timeout=5)


def test_an_attempt_that_raises_gives_its_slot_back():
    pool = AttemptPool(size=1, per_endpoint=1)

    def broken(request_ended):
        raise RuntimeError("boom")

    pool.run("a", broken)
    assert pool.wait(timeout=5)
    assert pool.has_room_for("a")


def test_waiting_for_room_returns_as_soon_as_an_attempt_ends():
    pool = AttemptPool(size=1, per_endpoint=1)
    gate = Event()
    pool.run("a", hold(gate))
    eventlet.spawn_after(0.05, gate.send)
    pool.wait_for_room(timeout=30)
    eventlet.sleep(0)
    assert pool.free() == 1


def test_a_closed_pool_takes_no_more_attempts_and_lets_running_ones_finish():
    pool = AttemptPool(size=2, per_endpoint=2)
    gate = Event()
    finished = []
    pool.run("a", lambda request_ended: finished.append(gate.wait()))
    pool.close()
    assert pool.free() == 0 and not pool.has_room_for("b")
    gate.send("done")
    assert pool.wait(timeout=5)
    assert finished == ["done"]


def test_waiting_for_an_attempt_returns_when_one_ends_even_with_slots_free():
    pool = AttemptPool(size=4, per_endpoint=1)
    gate = Event()
    pool.run("a", hold(gate))
    eventlet.spawn_after(0.05, gate.send)
    pool.wait_for_an_attempt(timeout=30)
    eventlet.sleep(0)
    assert pool.in_flight() == {}


def test_an_endpoint_holds_attempts_claimed_ahead_that_send_as_its_requests_end():
    pool = AttemptPool(size=6, per_endpoint=1, held_per_endpoint=2)
    answered, sent = Event(), []

    def attempt(request_ended):
        sent.append(len(sent) + 1)
        answered.wait()
        request_ended()

    pool.run("a", attempt)
    pool.run("a", attempt)
    eventlet.sleep(0)
    assert sent == [1], "one request open to the endpoint; the other attempt waits for it"
    assert pool.in_flight() == {"a": 2} and not pool.has_room_for("a") and pool.has_room_for("b")
    answered.send()
    assert pool.wait(timeout=5)
    assert sent == [1, 2] and pool.in_flight() == {}


def test_a_reserved_slot_counts_until_it_is_released_or_its_attempt_ends():
    pool = AttemptPool(size=2, per_endpoint=1)
    assert pool.reserve("a")
    assert not pool.reserve("a") and not pool.has_room_for("a") and pool.free() == 1
    pool.release("a")
    assert pool.free() == 2 and pool.in_flight() == {}

    assert pool.reserve("a")
    gate = Event()
    pool.run("a", hold(gate), reserved=True)
    assert pool.in_flight() == {"a": 1}, "the attempt took the reserved slot, not another"
    gate.send()
    assert pool.wait(timeout=5)
    assert pool.free() == 2 and pool.in_flight() == {}


def test_an_endpoint_takes_its_next_request_once_the_last_has_ended_while_that_attempt_still_records():
    pool = AttemptPool(size=3, per_endpoint=1)
    recorded = Event()

    def attempt(request_ended):
        request_ended()
        request_ended()  # a second call gives back nothing more
        recorded.wait()

    pool.run("a", attempt)
    eventlet.sleep(0)
    assert pool.has_room_for("a") and pool.in_flight() == {}
    assert pool.free() == 2, "the attempt still holds its slot of the pool while it records"
    pool.run("a", hold(recorded))
    assert not pool.has_room_for("a") and pool.free() == 1
    recorded.send()
    assert pool.wait(timeout=5)
    assert pool.free() == 3 and pool.in_flight() == {}


def test_the_pool_bounds_attempts_recording_as_well_as_those_sending():
    pool = AttemptPool(size=2, per_endpoint=2)
    recorded = Event()
    pool.run("a", recording_until(recorded))
    pool.run("b", recording_until(recorded))
    eventlet.sleep(0)
    assert pool.in_flight() == {} and pool.free() == 0 and not pool.has_room_for("c")
    recorded.send()
    assert pool.wait(timeout=5)
    assert pool.free() == 2

# Recording results in groups

def recording(calls, gate=None, refuse=()):
    """record_all for a GroupRecorder: notes each group, waits at `gate` on the first, and fails a group
    holding any item of `refuse`."""
    def record_all(items):
        calls.append(list(items))
        if gate is not None and len(calls) == 1:
            gate.wait()
        if set(items) & set(refuse):
            raise ValueError(f"cannot record {sorted(set(items) & set(refuse))}")
        return [f"recorded {item}" for item in items]
    return record_all


def test_an_attempt_that_ends_alone_is_recorded_at_once_on_its_own():
    recorder, calls = GroupRecorder(), []
    assert recorder.record(recording(calls), "a") == "recorded a"
    assert calls == [["a"]]


def test_attempts_that_end_while_a_group_is_being_recorded_are_recorded_together_next():
    recorder, calls, gate = GroupRecorder(), [], Event()
    record_all = recording(calls, gate)
    threads = [eventlet.spawn(recorder.record, record_all, item) for item in "abcd"]
    eventlet.sleep(0)  # all four have ended their attempts; "a" is being recorded
    gate.send()

    assert [thread.wait() for thread in threads] == ["recorded a", "recorded b", "recorded c", "recorded d"]
    assert calls == [["a"], ["b", "c", "d"]]


def test_an_item_that_cannot_be_recorded_fails_only_its_own_attempt():
    recorder, calls, gate = GroupRecorder(), [], Event()
    record_all = recording(calls, gate, refuse=["c"])
    threads = [eventlet.spawn(recorder.record, record_all, item) for item in "abcd"]
    eventlet.sleep(0)
    gate.send()

    results = []
    for thread in threads:
        try:
            results.append(thread.wait())
        except ValueError as exc:
            results.append(str(exc))
    assert results == ["recorded a", "recorded b", "cannot record ['c']", "recorded d"]
    assert calls == [["a"], ["b", "c", "d"], ["b"], ["c"], ["d"]]
