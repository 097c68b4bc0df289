"""The partners' side of the benchmark: one HTTP server standing in for every partner, in a process of
its own, under the real-time policy where it may (bench.procstat.run_in_real_time), so that the load the
benchmark generates never delays a verification; what it verifies it takes from the flood's CPU, as the
flood's normal webhooks are verified too.

Each webhook is verified with the Standard Webhooks reference library, as a partner would, before its
arrival counts; the arrival time is time.monotonic(), which on Linux is one clock for every process of
the machine, so it can be set against the moment the benchmark's client saw intake's 201.
"""
import multiprocessing
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


OFFER = "referral.offered"  # the webhook that first puts a case before a partner; others come later


class Arrival:
    __slots__ = ("at", "reference", "level", "webhook_id", "type")

    def __init__(self, at, reference, level, webhook_id, type_):
        self.at, self.reference, self.level, self.webhook_id, self.type = at, reference, level, webhook_id, type_


class PartnerReceiver:
    """Starts the receiver process and keeps, in this process, every verified arrival by case reference."""

    def __init__(self, secret):
        context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
        self._arrivals = context.Queue()
        parent_end, child_end = context.Pipe()
        self._process = context.Process(target=_serve, args=(secret, self._arrivals, child_end), daemon=True,
                                        name="bench-receiver")
        self._process.start()
        if not parent_end.poll(30):
            raise RuntimeError("the webhook receiver did not start")
        port = parent_end.recv()
        self.url = f"http://127.0.0.1:{port}/webhooks/partner"
        self.pid = self._process.pid
        self._lock = threading.Lock()
        self._by_reference = {}
        self._count = 0
        self._rejected = 0
        self._changed = threading.Condition(self._lock)
        self._collector = threading.Thread(target=self._collect, daemon=True, name="bench-receiver-collector")
        self._collector.start()

    def _collect(self):
        while True:
            try:
                batch = self._arrivals.get(timeout=0.5)
            except queue.Empty:
                if not self._process.is_alive():
                    return
                continue
            with self._changed:
                for kind, at, reference, level, webhook_id, type_ in batch:
                    if kind == "rejected":
                        self._rejected += 1
                        continue
                    self._by_reference.setdefault(reference, []).append(
                        Arrival(at, reference, level, webhook_id, type_))
                    self._count += 1
                self._changed.notify_all()

    @property
    def count(self):
        with self._lock:
            return self._count

    @property
    def rejected(self):
        with self._lock:
            return self._rejected

    def _offers(self, reference):
        return [a.at for a in self._by_reference.get(reference, ()) if a.type == OFFER]

    def first_arrival(self, reference):
        """When the first offer of this case reached a partner; None if none has."""
        with self._lock:
            offers = self._offers(reference)
            return min(offers) if offers else None

    def last_arrival(self, reference):
        with self._lock:
            offers = self._offers(reference)
            return max(offers) if offers else None

    def arrivals_of(self, reference):
        with self._lock:
            return [a for a in self._by_reference.get(reference, ()) if a.type == OFFER]

    def wait_for_count(self, predicate, timeout):
        """Wait until predicate(count of verified arrivals) holds; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self._count):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    def close(self):
        self._process.terminate()
        self._process.join(10)


def _serve(secret, arrivals, ready):
    from standardwebhooks.webhooks import Webhook

    from bench.procstat import run_in_real_time

    run_in_real_time()

    verifier = Webhook(secret)
    pending = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload = verifier.verify(body, headers)
                at = time.monotonic()
                data = payload.get("data", {})
                record = ("verified", at, data.get("case_reference"), data.get("risk_level"),
                          headers["webhook-id"], payload.get("type"))
                status = 204
            except Exception:  # noqa: BLE001 -- whatever fails verification is refused, as a partner would
                record, status = ("rejected", time.monotonic(), None, None, None, None), 400
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            with lock:
                pending.append(record)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready.send(server.server_address[1])
    # Hand arrivals over in small batches: one queue put per webhook would cost more than the webhook.
    while True:
        time.sleep(0.01)
        with lock:
            batch = pending[:]
            pending.clear()
        if batch:
            arrivals.put(batch)
