"""A partner's webhook endpoint for the tests: a real HTTP server on loopback that verifies every
webhook with the Standard Webhooks reference library and records what arrived and when."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


class Receiver:
    def __init__(self, secret, respond=None):
        """`respond(webhook_id, payload)` may return a status code (default 204) and may sleep."""
        self.verifier = Webhook(secret)
        self.respond = respond or (lambda webhook_id, payload: 204)
        self.received = []  # (monotonic time, webhook id, payload), verified ones only
        self.rejected = 0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}/webhooks/sanad"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def payloads(self):
        with self.lock:
            return [payload for _, _, payload in self.received]

    def webhook_ids(self):
        with self.lock:
            return [webhook_id for _, webhook_id, _ in self.received]

    def wait_for(self, predicate, timeout=60, poll=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.received)):
                    return True
            time.sleep(poll)
        return False

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = receiver.verifier.verify(body, headers)
                except Exception:  # noqa: BLE001 -- any verification failure is a rejection
                    with receiver.lock:
                        receiver.rejected += 1
                    self._answer(400)
                    return
                status = receiver.respond(headers["webhook-id"], payload)
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.received.append((time.monotonic(), headers["webhook-id"], payload))
                self._answer(status)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler


def as_json(payload):
    return json.dumps(payload, ensure_ascii=False)
