"""sanad.platform.heap: what a service holds once started is left out of later collections; garbage is not."""
import gc
import weakref

import pytest

from sanad.platform import heap


class Node:
    def __init__(self):
        self.me = self  # a reference cycle: only the cyclic collector frees it


@pytest.fixture
def unsettled(monkeypatch):
    monkeypatch.setattr(heap, "_settled", False)
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settling_collects_startup_garbage_then_freezes_what_is_alive(unsettled):
    garbage = weakref.ref(Node())
    kept = Node()
    heap.settle_heap()
    assert garbage() is None
    assert gc.get_freeze_count() > 0
    assert not any(obj is kept for generation in range(3) for obj in gc.get_objects(generation))


def test_garbage_made_after_settling_is_still_collected(unsettled):
    heap.settle_heap()
    later = weakref.ref(Node())
    gc.collect()
    assert later() is None


def test_a_process_settles_once(unsettled):
    heap.settle_heap()
    frozen = gc.get_freeze_count()
    kept = [Node() for _ in range(100)]
    heap.settle_heap()
    assert gc.get_freeze_count() == frozen
    assert kept
