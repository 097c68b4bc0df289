"""sanad/platform/inbox.py: how long a batch consumer waits for more events before its next batch."""
from sanad.platform.inbox import BATCH_SIZE, wait_before_batch

BUSY = 0.01


def test_a_quiet_queues_event_goes_at_once_after_an_event_that_came_alone():
    assert wait_before_batch(0.0, BUSY, last_batch=1, waiting=1) == 0.0
    assert wait_before_batch(0.0, BUSY, last_batch=0, waiting=3) == 0.0, "nor before the first batch"


def test_after_a_batch_of_several_the_consumer_waits_to_fill_the_next():
    assert wait_before_batch(0.0, BUSY, last_batch=2, waiting=1) == BUSY
    assert wait_before_batch(0.0, BUSY, last_batch=BATCH_SIZE, waiting=BATCH_SIZE - 1) == BUSY


def test_a_full_batch_at_hand_never_waits():
    assert wait_before_batch(0.0, BUSY, last_batch=BATCH_SIZE, waiting=BATCH_SIZE) == 0.0
    assert wait_before_batch(0.05, 0.0, last_batch=0, waiting=BATCH_SIZE + 1) == 0.0


def test_a_consumer_that_always_lingers_waits_before_every_batch_that_is_not_full():
    assert wait_before_batch(0.05, 0.0, last_batch=0, waiting=1) == 0.05
    assert wait_before_batch(0.05, 0.0, last_batch=7, waiting=1) == 0.05


def test_a_consumer_given_no_wait_never_waits():
    assert wait_before_batch(0.0, 0.0, last_batch=BATCH_SIZE, waiting=1) == 0.0
