"""Attempts run concurrently, each in a green thread of a bounded pool, so a slow partner holds up only
its own deliveries: at most `per_endpoint` of the pool's `size` slots go to any one endpoint."""
import logging
from collections import Counter

import eventlet
from eventlet.event import Event

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
