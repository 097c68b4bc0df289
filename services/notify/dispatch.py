"""Attempts run concurrently, each in a green thread of a bounded pool, so a slow partner holds up only
its own deliveries: at most `per_endpoint` of the pool's `size` slots go to any one endpoint. Their
results are recorded in groups (GroupRecorder)."""
import logging
from collections import Counter

import eventlet
from eventlet.event import Event
from eventlet.semaphore import Semaphore

log = logging.getLogger(__name__)


class AttemptPool:
    def __init__(self, size, per_endpoint):
        self.size = size
        self.per_endpoint = per_endpoint
        self._threads = eventlet.GreenPool(size)
        self._in_flight = Counter()
        self._finished = Event()
        self.closed = False

    def close(self):
        """Take no more attempts (the process is stopping); those running carry on."""
        self.closed = True

    def free(self) -> int:
        if self.closed:
            return 0
        return self.size - sum(self._in_flight.values())

    def has_room_for(self, endpoint_id) -> bool:
        return self.free() > 0 and self._in_flight[str(endpoint_id)] < self.per_endpoint

    def in_flight(self) -> dict:
        """{endpoint id: attempts running now}, for endpoints with any."""
        return {endpoint: n for endpoint, n in self._in_flight.items() if n}

    def run(self, endpoint_id, function, *args, reserved=False):
        """Run function(*args) in the pool, counted against `endpoint_id` until it returns. The caller
        checks has_room_for() first, or reserve()d the slot (`reserved`); the slot is taken at once,
        before the green thread starts."""
        endpoint = str(endpoint_id)
        if not reserved:
            self._in_flight[endpoint] += 1
        self._threads.spawn_n(self._run, endpoint, function, args)

    def reserve(self, endpoint_id) -> bool:
        """Take a slot for an attempt to `endpoint_id` that will start later with run(reserved=True), if
        the endpoint has room now; give it back with release() if the attempt never starts."""
        if not self.has_room_for(endpoint_id):
            return False
        self._in_flight[str(endpoint_id)] += 1
        return True

    def release(self, endpoint_id) -> None:
        self._free_slot(str(endpoint_id))

    def wait_for_room(self, timeout) -> None:
        """Return at once if a slot is free, else when an attempt finishes, or after `timeout` seconds."""
        if self.free() > 0 or self.closed:
            return
        self.wait_for_an_attempt(timeout)

    def wait_for_an_attempt(self, timeout) -> None:
        """Return when the next attempt finishes, or after `timeout` seconds."""
        with eventlet.Timeout(max(timeout, 0), False):
            self._finished.wait()

    def wait(self, timeout=None) -> bool:
        """Wait for every running attempt; True when none is left."""
        with eventlet.Timeout(timeout, False):
            self._threads.waitall()
        return not self.in_flight()

    def _run(self, endpoint, function, args):
        try:
            function(*args)
        except Exception:  # noqa: BLE001 -- an attempt's failure must not kill the pool; its lease runs out
            log.exception("a webhook attempt failed unexpectedly; its delivery is retried when its lease ends")
        finally:
            self._free_slot(endpoint)

    def _free_slot(self, endpoint):
        self._in_flight[endpoint] -= 1
        if not self._in_flight[endpoint]:
            del self._in_flight[endpoint]
        finished, self._finished = self._finished, Event()
        finished.send()


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
