"""Waiting for something a running stack does in its own time."""
import time


def wait_until(check, timeout=60, poll=0.1, what=None):
    """The first true value `check()` returns, asked every `poll` seconds; AssertionError naming `what` (or
    the check's docstring) if none comes within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"not true within {timeout} s: {what or check.__doc__ or check}")
