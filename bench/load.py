"""Two ways of sending work: a flood (as fast as the receiver takes it, from a few concurrent senders)
and a paced stream (open loop: each item leaves at its scheduled time, whether or not earlier ones
have been answered, so a slow answer never hides a queue)."""
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor


def flood(send, count, concurrency):
    """Call send(i) for i in range(count) from `concurrency` threads; results in order of i."""
    results = [None] * count
    errors = []
    counter = itertools.count()
    lock = threading.Lock()

    def sender():
        while True:
            with lock:
                i = next(counter)
            if i >= count or errors:
                return
            try:
                results[i] = send(i)
            except Exception as exc:  # noqa: BLE001 -- handed to the caller below
                errors.append(exc)
                return

    threads = [threading.Thread(target=sender, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def paced(send, count, rate, concurrency=8):
    """Call send(i) for i in range(count) at `rate` per second on a fixed schedule. Returns the results
    in order of i and the largest lag, in seconds, by which a send started behind its schedule (large
    when every sender was still waiting for an answer)."""
    interval = 1.0 / rate
    lags = [0.0] * count
    start = time.monotonic()

    def timed(i):
        lags[i] = max(0.0, time.monotonic() - (start + i * interval))
        return send(i)

    futures = []
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for i in range(count):
            pause = start + i * interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            futures.append(pool.submit(timed, i))
        results = [f.result() for f in futures]
    return results, max(lags, default=0.0)
