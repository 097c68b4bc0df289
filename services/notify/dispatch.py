"""Attempts run concurrently, each in a green thread of a bounded pool, so a slow partner holds up only
its own deliveries: at most `per_endpoint` requests are open to any one endpoint, and at most `size`
attempts run in the pool. An endpoint may hold `held_per_endpoint` attempts: those sending, and the rest
claimed ahead, waiting for one of its requests to end, so the next webhook goes out without waiting for
a claim's round trip to PostgreSQL. An attempt lets go of its endpoint as soon as its request has ended,
so recording the results (in groups, GroupRecorder) never keeps the next webhook from going out."""
import logging
from collections import Counter

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore

log = logging.getLogger(__name__)


class AttemptPool:
    def __init__(self, size, per_endpoint, held_per_endpoint=None):
        self.size = size
        self.per_endpoint = per_endpoint
        self.held_per_endpoint = held_per_endpoint or per_endpoint
        self._threads = eventlet.GreenPool(size)
        self._running = 0
        self._held = Counter()  # by endpoint: attempts sending, or waiting for a request slot
        self._requests = {}  # by endpoint: a semaphore of its request slots
        self._finished = Event()
        self.closed = False

    def close(self):
        """Take no more attempts (the process is stopping); those running carry on."""
        self.closed = True

    def free(self) -> int:
        if self.closed:
            return 0
        return self.size - self._running

    def has_room_for(self, endpoint_id) -> bool:
        return self.free() > 0 and self._held[str(endpoint_id)] < self.held_per_endpoint

    def in_flight(self) -> dict:
        """{endpoint id: attempts it holds now, sending or waiting to}, for endpoints with any."""
        return {endpoint: n for endpoint, n in self._held.items() if n}

    def run(self, endpoint_id, function, *args, reserved=False):
        """Run function(*args, request_ended) in the pool once one of `endpoint_id`'s request slots is
        free. The attempt holds a slot of the pool until it returns, and its place at the endpoint until
        it calls request_ended() (or returns). The caller checks has_room_for() first, or reserve()d the
        slots (`reserved`); they are taken at once, before the green thread starts."""
        endpoint = str(endpoint_id)
        if not reserved:
            self._take(endpoint)
        hold = _EndpointHold(endpoint, on_let_go=self._end_hold)
        self._threads.spawn_n(self._run, hold, function, args)

    def reserve(self, endpoint_id) -> bool:
        """Take the slots for an attempt to `endpoint_id` that will start later with run(reserved=True),
        if there is room now; give them back with release() if the attempt never starts."""
        if not self.has_room_for(endpoint_id):
            return False
        self._take(str(endpoint_id))
        return True

    def release(self, endpoint_id) -> None:
        self._end_hold(str(endpoint_id))
        self._end_attempt()

    def wait_for_room(self, timeout) -> None:
        """Return at once if a slot is free, else when an attempt finishes, or after `timeout` seconds."""
        if self.free() > 0 or self.closed:
            return
        self.wait_for_an_attempt(timeout)

    def wait_for_an_attempt(self, timeout) -> None:
        """Return when the next attempt finishes or lets go of its endpoint, or after `timeout` seconds."""
        with eventlet.Timeout(max(timeout, 0), False):
            self._finished.wait()

    def wait(self, timeout=None) -> bool:
        """Wait for every running attempt; True when none is left."""
        with eventlet.Timeout(timeout, False):
            self._threads.waitall()
        return self._running == 0

    def _run(self, hold, function, args):
        try:
            hold.take_request_slot(self._requests.setdefault(hold.endpoint, Semaphore(self.per_endpoint)))
            function(*args, hold.let_go)
        except Exception:  # noqa: BLE001 -- an attempt's failure must not kill the pool; its lease runs out
            log.exception("a webhook attempt failed unexpectedly; its delivery is retried when its lease ends")
        finally:
            hold.let_go()
            self._end_attempt()

    def _take(self, endpoint):
        self._held[endpoint] += 1
        self._running += 1

    def _end_hold(self, endpoint):
        self._held[endpoint] -= 1
        if not self._held[endpoint]:
            del self._held[endpoint]
        self._wake()

    def _end_attempt(self):
        self._running -= 1
        self._wake()

    def _wake(self):
        finished, self._finished = self._finished, Event()
        finished.send()


class _EndpointHold:
    """An attempt's place at its endpoint: counted from when it was claimed, with one of the endpoint's
    request slots from when it gets one, both let go once, when its request has ended or it returns."""

    def __init__(self, endpoint, on_let_go):
        self.endpoint = endpoint
        self._on_let_go = on_let_go
        self._request_slot = None
        self._held = True

    def take_request_slot(self, slots):
        slots.acquire()
        self._request_slot = slots

    def let_go(self):
        if self._held:
            self._held = False
            if self._request_slot is not None:
                self._request_slot.release()
            self._on_let_go(self.endpoint)


class GroupRecorder:
    """Records the results of attempts that end while another group is being recorded together, next, in
    one transaction: in a surge, one commit for many webhooks, where each took one (docs/performance.md,
    item 35). An attempt that ends alone is recorded at once.

    `record(record_all, item)` returns the result for `item`, or raises what recording it raised.
    `record_all(items)` records a list of items in one transaction and returns their results in order;
    whichever caller's turn comes records the group with its own function, so callers pass equivalent
    ones. If a group fails, each of its items is recorded again alone, so what fails is only its own."""

    def __init__(self):
        self._waiting = []
        self._turn = Semaphore()

    def record(self, record_all, item):
        entry = _Entry(item)
        self._waiting.append(entry)
        with self._turn:
            if not entry.settled:  # else a group recorded while this one waited for its turn took it
                group, self._waiting = self._waiting, []
                self._settle(record_all, group)
        return entry.outcome()

    def _settle(self, record_all, group):
        try:
            results = record_all([entry.item for entry in group])
        except Exception as exc:  # noqa: BLE001 -- given to the callers, each on its own
            if len(group) == 1:
                group[0].fail(exc)
                return
            for entry in group:
                self._settle(record_all, [entry])
            return
        except BaseException:  # this green thread is being killed: nobody is left to record them
            for entry in group:
                if not entry.settled:
                    entry.fail(RuntimeError("recording stopped: the process is stopping"))
            raise
        for entry, result in zip(group, results):
            entry.succeed(result)


class _Entry:
    def __init__(self, item):
        self.item = item
        self.settled = False
        self._result = self._error = None

    def succeed(self, result):
        self.settled, self._result = True, result

    def fail(self, error):
        self.settled, self._error = True, error

    def outcome(self):
        if self._error is not None:
            raise self._error
        return self._result
