"""A partner's webhook endpoint for the tests: a real HTTP server on loopback that verifies every
webhook with the Standard Webhooks reference library and with Svix's, unchanged, as partners would,
and records what arrived and when. It speaks HTTP/1.1 and keeps connections open, as partners' servers do.
It can fail on purpose: answer late, answer 429 with Retry-After or 5xx, answer with a body, drop the
connection, or hold a request until the test lets it go."""
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook
from svix.webhooks import Webhook as SvixWebhook


@dataclass(frozen=True)
class Reply:
    """How to answer one webhook. `respond` may return one instead of a bare status code."""
    status: int = 204
    delay: float = 0.0                 # seconds to wait before answering
    retry_after: str | None = None     # sent as Retry-After
    drop: bool = False                 # close the connection without answering
    hold: threading.Event | None = None  # wait until the test sets it, then answer
    body: bytes = b""                  # sent as the answer's body


class Receiver:
    def __init__(self, secret, respond=None):
        """`secret` is the partner's whsec_ secret; `respond(webhook_id, payload)` returns a status code
        (default 204) or a Reply, and may sleep."""
        self.respond = respond or (lambda webhook_id, payload: 204)
        self.received = []  # (monotonic time, webhook id, payload): verified and answered 2xx
        self.requests = []  # (arrival, webhook id, status or "dropped"): every verified request, once answered
        self.peers = []     # the sender's (address, port) of every request, verified or not, as it arrived
        self.holding = 0    # requests being held right now
        self.rejected = 0
        self.lock = threading.Lock()
        self.use_secret(secret)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def use_secret(self, secret):
        """Verify with this secret from now on (the partner switched after a rotation)."""
        self.verifiers = (Webhook(secret), SvixWebhook(secret))

    @property
    def verifier(self):
        return self.verifiers[0]

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

    def attempts_for(self, webhook_id):
        """What each verified request for `webhook_id` was answered, in the order the requests arrived."""
        with self.lock:
            return [status for _, wid, status in sorted(self.requests, key=lambda r: r[0]) if wid == webhook_id]

    def wait_for(self, predicate, timeout=60, poll=0.05):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(list(self.received)):
                    return True
            time.sleep(poll)
        return False

    def wait_until(self, condition, timeout=60, poll=0.05):
        """Wait until condition(receiver) is true; False if it never was within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self):
                return True
            time.sleep(poll)
        return False

    def _verify(self, body, headers):
        """The payload if every verifier accepts the webhook; raises otherwise."""
        payload = self.verifiers[0].verify(body, headers)
        for verifier in self.verifiers[1:]:
            verifier.verify(body, headers)
        return payload

    def _handler_class(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                arrival = time.monotonic()
                with receiver.lock:
                    receiver.peers.append(self.client_address)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = receiver._verify(body, headers)
                except Exception:  # noqa: BLE001 -- any verification failure is a rejection
                    with receiver.lock:
                        receiver.rejected += 1
                    self._answer(400)
                    return
                webhook_id = headers["webhook-id"]
                reply = receiver.respond(webhook_id, payload)
                if isinstance(reply, int):
                    reply = Reply(status=reply)
                if reply.hold is not None:
                    with receiver.lock:
                        receiver.holding += 1
                    reply.hold.wait()
                    with receiver.lock:
                        receiver.holding -= 1
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.drop:
                    with receiver.lock:
                        receiver.requests.append((arrival, webhook_id, "dropped"))
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                with receiver.lock:
                    receiver.requests.append((arrival, webhook_id, reply.status))
                    if 200 <= reply.status < 300:
                        receiver.received.append((time.monotonic(), webhook_id, payload))
                self._answer(reply.status, reply.retry_after, reply.body)

            def _answer(self, status, retry_after=None, body=b""):
                try:
                    self.send_response(status)
                    if retry_after is not None:
                        self.send_header("Retry-After", retry_after)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the sender gave up (timed out or died) before the answer

            def log_message(self, *args):
                pass

        return Handler


def as_json(payload):
    return json.dumps(payload, ensure_ascii=False)
