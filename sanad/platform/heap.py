"""The cyclic garbage collector of a service process, settled once the service has started.

Everything a service holds from the moment it is up (modules, schemas, the risk model, connections) lives
as long as the process, yet each full collection walks through all of it again: in the benchmark's flood
that cost the busiest processes pauses of 85 to 234 ms (docs/performance.md, item 25), in which no
request, and no critical case, moves. Once the container has started, what is alive is collected once and
frozen (gc.freeze): later collections only look at what came after. Garbage the process makes later is
collected as before.
"""
import gc

from nameko.extensions import DependencyProvider

_settled = False


def settle_heap() -> None:
    """Collect what starting left behind, then leave everything alive now out of later collections. Once
    a process: a test process starts many containers, and freezing again would keep their garbage."""
    global _settled
    if not _settled:
        _settled = True
        gc.collect()
        gc.freeze()


class SettledHeap(DependencyProvider):
    """Settles the heap when the container starts, after every module and dependency is loaded."""

    def start(self):
        settle_heap()
