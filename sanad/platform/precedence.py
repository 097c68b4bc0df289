"""A critical case first among the green threads of one process.

Intake works on every request of a flood in one process. Each time one of them waits for PostgreSQL, the
answer is taken up only once every other ready green thread has had its turn, and behind a flood a turn
of all of them lasts tens of milliseconds: a critical case's request paid it at each of its round trips
(docs/performance.md). sanad.platform.priority raises a critical process above the others; this lets a
critical request go first inside its own process.

A green thread that holds precedence (`hold`, from the moment its case is known to be critical to the
end of its worker, when its critical event has been published) has every other green thread of the
process wait before its next round trip to PostgreSQL (`before_round_trip`, called by the pool's
transactions), so its own waits are only for turns already running. Holders never wait, for one another
or anyone. Meanwhile the process and the backends of the holders' connections run in real time where
they may (sanad.platform.priority.CriticalBoost): with the flood held back, the process's own waits for
a core, and its backends', were most of what a critical case's round trips still took behind a flood.

A paused green thread may hold something the critical one needs: a row lock (two submissions with one
Idempotency-Key), a connection of a full pool. So no one waits longer than MAX_WAIT at a time, and at
worst a critical case waits that long, never for ever; and the process leaves real time then, since
the flood's requests move again and would share it. metrics.PRECEDENCE_WAITS counts how the waits ended;
many that reach the limit would mean such a conflict.
"""
import greenlet

from sanad.platform import metrics
from sanad.platform.priority import CriticalBoost

MAX_WAIT = 0.1  # seconds


class Precedence:
    def __init__(self, max_wait=MAX_WAIT, boost=None):
        self.max_wait = max_wait
        self.boost = boost or CriticalBoost()
        self._holders = set()
        self._cleared = None  # sent when the last holder lets go; waited on by everyone else meanwhile

    def hold(self):
        """The current green thread goes first until `release(holder)` with what this returns."""
        import eventlet.event  # here, not at the top: the pool imports this module outside services too

        holder = greenlet.getcurrent()
        if self._cleared is None:
            self._cleared = eventlet.event.Event()
            self.boost.start()
        self._holders.add(holder)
        return holder

    def release(self, holder):
        self._holders.discard(holder)
        if not self._holders and self._cleared is not None:
            cleared, self._cleared = self._cleared, None
            self.boost.stop()
            cleared.send()

    def before_round_trip(self, conn):
        """A holder's round trip goes at once, on a backend in real time where it may be; anyone else's
        once no one holds precedence, or after max_wait."""
        if not self._holders:
            return
        current = greenlet.getcurrent()
        if current in self._holders:
            self.boost.include(conn)
            return
        for gone in [holder for holder in self._holders if holder.dead]:  # a worker killed before its end
            self.release(gone)
        cleared = self._cleared
        if cleared is None:
            return
        cleared.wait(self.max_wait)
        if cleared.ready():
            metrics.PRECEDENCE_WAITS.labels(outcome="cleared").inc()
        else:  # the flood moves again, and real time would now be the flood's too
            metrics.PRECEDENCE_WAITS.labels(outcome="limit").inc()
            self.boost.stop()


PRECEDENCE = Precedence()
