"""How many normal cases intake records at once, so that a critical case's request is read sooner.

Each time one of intake's green threads waits for PostgreSQL, the turn passes to every other ready green
thread, and a flood's requests are most of them. A critical case's request is not known to be critical
until its body is read, and before that it waited about two whole turns: one for the server to read the
request, one for its worker to start. Behind a 5,000-case flood those two took 17 to 20 ms of the 25 to
32 ms intake took to answer a critical case at the median (docs/performance.md, item 50). Once its case is
known to be critical, sanad.platform.precedence puts it first; these waits come before that.

So at most `count` normal cases are recorded at a time: the others wait here, their bodies read and their
transactions not begun, out of everyone's turns. A critical case takes no slot, nor does a request whose
lane is unknown until its transaction (its caller not allowed lately, services/intake/callers.py) or that
is refused before one. With three slots intake took the benchmark's flood as fast as the pipeline behind
it delivered it, and no slower: the flood waited in front of intake rather than in the queues behind it.
"""
import os
import time
from contextlib import contextmanager

from eventlet.semaphore import Semaphore
from nameko.extensions import DependencyProvider
from prometheus_client import Histogram

SLOTS_SETTING = "SANAD_INTAKE_RECORDING_SLOTS"
DEFAULT_SLOTS = 3

# How long normal cases wait here: long waits mean intake is holding a flood back, as it should.
SLOT_WAIT = Histogram(
    "sanad_intake_recording_slot_wait_seconds",
    "How long a normal case waited for one of intake's recording slots before its transaction.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


class Slots:
    def __init__(self, count):
        # ASCII digits only: str.isdigit() also admits "²", which int() then refuses without naming the setting.
        if not str(count).isascii() or not str(count).isdigit() or int(count) < 1:
            raise ValueError(f"{SLOTS_SETTING} must be a whole number of at least 1, not {count!r}")
        self._free = Semaphore(int(count))

    @contextmanager
    def held_for(self, lane):
        """Hold a slot while recording a case on `lane` (None when not known yet); only the normal lane
        takes one, waiting for it if none is free."""
        if lane != "normal":
            yield
            return
        asked = time.perf_counter()
        with self._free:
            SLOT_WAIT.observe(time.perf_counter() - asked)
            yield


class RecordingSlots(DependencyProvider):
    """One Slots for the whole process, sized by SANAD_INTAKE_RECORDING_SLOTS."""

    def setup(self):
        # Set but empty means the default, as for notify's settings (services/notify/settings.py).
        self.slots = Slots(os.environ.get(SLOTS_SETTING) or DEFAULT_SLOTS)

    def get_dependency(self, worker_ctx):
        return self.slots
