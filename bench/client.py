"""The benchmark's operators: they post cases to intake's HTTP API as the operators' UI would, and
note the moment each 201 arrived. Intake is the only service the benchmark talks to."""
import http.client
import json
import multiprocessing
import threading
import time
from urllib.parse import urlsplit

from bench import load
from bench.procstat import run_in_real_time

# A typical normal case: extortion for money, one need. One need means one webhook per case, so "fully
# processed" is one arrival at the partner, as it is for a critical case.
NORMAL_CASE = {
    "narrative": "يهددني ينشر صوري على الفيسبوك اذا ما ادفع له. He asks for 300 dollars by next week "
                 "and says he has screenshots of our chats.",
    "channel": "whatsapp",
    "governorate": "dhi_qar",
    "needs": ["legal_aid"],
    "consents": ["legal_aid"],
}
# A critical case: the checklist says suicidal thoughts and the deadline is hours away.
CRITICAL_CASE = {
    "narrative": "She says she will end her life tonight if the pictures reach her brothers. "
                 "قالت راح تنتحر اذا وصلت الصور لأهلها.",
    "channel": "phone",
    "governorate": "dhi_qar",
    "needs": ["counselling"],
    "consents": ["counselling"],
    "suicidal_thoughts": True,
    "deadline_hours": 6,
}


RETRY_PAUSES = (0.5, 1, 2, 4, 0)


class IntakeError(Exception):
    pass


class Submitted:
    __slots__ = ("reference", "case_id", "sent_at", "answered_at", "kind")

    def __init__(self, reference, case_id, sent_at, answered_at, kind):
        self.reference, self.case_id, self.kind = reference, case_id, kind
        self.sent_at, self.answered_at = sent_at, answered_at


class IntakeClient:
    """One keep-alive HTTP connection per thread (like a browser tab per operator), authenticated with an
    API token when intake asks for one (see BenchEnvironment.api_token). Plain http.client, not requests:
    the operators share the machine with the services they load, and with requests the flood's senders
    took 0.89 CPU ms a case against 0.26 (docs/performance.md, item 40)."""

    def __init__(self, base_url, api_token=None):
        self.base_url = base_url
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.prefix = parts.path.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_token}"} if api_token else {}
        self._local = threading.local()

    def _request(self, method, path, body=None, timeout=60):
        """(status, body bytes). A connection that failed is dropped, and the next request opens another;
        the failed request itself is not sent again."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
            self._local.connection = connection
        headers = dict(self.headers)
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, self.prefix + path, body=payload, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            connection.close()
            self._local.connection = None
            raise

    def post_case(self, kind):
        """Post a case of `kind` ("normal" or "critical"); the time is taken when the 201 has arrived.
        A 503 (the database out of connections on a shared machine) is retried a few times, as an
        operator's UI would; the case's latency still starts at its 201."""
        body = CRITICAL_CASE if kind == "critical" else NORMAL_CASE
        sent_at = time.monotonic()
        for pause in RETRY_PAUSES:
            status, text = self._request("POST", "/api/cases", body)
            answered_at = time.monotonic()
            if status != 503:
                break
            time.sleep(pause)
        if status != 201:
            raise IntakeError(f"intake answered {status}: {text[:200]!r}")
        created = json.loads(text)
        return Submitted(created["reference"], created["id"], sent_at, answered_at, kind)

    def case_status(self, case_id):
        status, text = self._request("GET", f"/api/cases/{case_id}", timeout=30)
        if status != 200:
            raise IntakeError(f"intake answered {status} for a case status")
        return json.loads(text)


def paced_from_own_process(base_url, api_token, kind, count, rate):
    """load.paced(post_case(kind)) from a process of its own under the real-time policy where it may
    (bench.procstat.run_in_real_time), returning the same. An operator posting a critical case sits at
    a machine of their own; sent from the benchmark's process, the moment each 201 was read waited for
    the flood's senders (the interpreter lock) and for a core, so late that behind the flood webhooks
    arrived before the 201 that preceded them had been read."""
    context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    parent_end, child_end = context.Pipe(duplex=False)
    sender = context.Process(target=_paced_posts, args=(child_end, base_url, api_token, kind, count, rate),
                             daemon=True, name="bench-critical-sender")
    sender.start()
    child_end.close()
    try:
        while not parent_end.poll(1):
            if not sender.is_alive():
                raise RuntimeError(f"the critical cases' sender exited with code {sender.exitcode}")
        outcome, value = parent_end.recv()
    finally:
        sender.join(10)
    if outcome == "failed":
        raise IntakeError(value)
    return value


def _paced_posts(results, base_url, api_token, kind, count, rate):
    run_in_real_time()
    client = IntakeClient(base_url, api_token)
    try:
        results.send(("sent", load.paced(lambda i: client.post_case(kind), count, rate)))
    except Exception as exc:  # noqa: BLE001 -- reported to the benchmark's process, which raises it
        results.send(("failed", f"{type(exc).__name__}: {exc}"))
