"""Where the services spend their time under load: py-spy samples every service process while the
benchmark floods intake, and the samples are summed by component.

py-spy pauses each process for every sample (about 100 a second): without pausing (--nonblocking) it
charged a third of intake's samples to one line of uuid.UUID.__init__ that does next to no work, most
likely stacks read while eventlet was switching between green threads. py-spy sees Python frames only, so time inside psycopg2's C code is charged to the Python
line that called it: a sample whose innermost line calls execute/commit/fetch counts as "PostgreSQL
calls". nameko's eventlet patches psycopg2 to yield while it waits for the server, so those samples are
psycopg2 and libpq at work (sending, receiving, converting rows), not waits. Idle samples (the eventlet
hub polling its sockets) are left out, so the shares are of the time a process was busy.
"""
import collections
import linecache
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import load

ROOT = f"{Path(__file__).resolve().parents[1]}/"

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?):(?P<line>\d+)\)$")
DATABASE_CALL = re.compile(r"\.(execute|executemany|commit|rollback|fetchone|fetchall)\(|psycopg2\.connect\(")

# (component, test on the frame's file path), first match wins.
COMPONENTS = (
    ("triage scoring (assessment, normalise)", lambda f: f.endswith(("/triage/assessment.py",
                                                                      "/triage/normalise.py"))),
    ("referral matching", lambda f: f.endswith("services/referral/matching.py")),
    ("webhook signing", lambda f: f.endswith("sanad/webhooks.py") or "/hmac.py" in f or "/hashlib" in f),
    ("AES-GCM sealing", lambda f: f.endswith("sanad/crypto.py") or "/cryptography/" in f),
    ("contracts (marshmallow)", lambda f: "/marshmallow/" in f or f.endswith("sanad/contracts/events.py")),
    ("JSON", lambda f: "/json/" in f),
    ("PostgreSQL driver (psycopg2)", lambda f: "/psycopg2/" in f),
    ("AMQP (kombu, py-amqp)", lambda f: "/kombu/" in f or "/amqp/" in f),
    ("HTTP server (eventlet.wsgi, werkzeug)", lambda f: "/werkzeug/" in f or "/eventlet/wsgi" in f),
    ("HTTP client (requests, urllib3)", lambda f: "/requests/" in f or "/urllib3/" in f or "/http/client" in f),
    ("nameko", lambda f: "/nameko/" in f),
    ("eventlet and greenlet", lambda f: "/eventlet/" in f or "/greenlet/" in f),
    ("metrics (prometheus_client)", lambda f: "/prometheus_client/" in f),
    ("logging", lambda f: "/logging/" in f),
    ("Sanad handlers and plumbing", lambda f: "/services/" in f or "/sanad/" in f),
)
# The eventlet hub polling its sockets: py-spy does not always see it as idle, but nothing waits on it.
IDLE = "idle (eventlet hub polling)"
IDLE_FUNCTIONS = {"Hub.do_poll", "Hub.wait", "do_poll"}
USE_CASES = ("record_case", "record_status", "triage_case", "refer_case", "schedule_delivery", "attempt",
             "claim_one", "_relay", "_sweep", "handle_event", "create_case")


def parse_frame(text):
    match = FRAME.match(text)
    if not match:
        return text, "", 0
    return match["function"], match["file"], int(match["line"])


def component_of(stack):
    """The component a sample is charged to, from its innermost frame (see the module's docstring)."""
    function, file, line = parse_frame(stack[-1])
    if function in IDLE_FUNCTIONS:
        return IDLE
    if file and DATABASE_CALL.search(linecache.getline(file, line)):
        return "PostgreSQL calls (psycopg2, libpq)"
    file = file if file.startswith("/") else f"/{file}"
    for name, test in COMPONENTS:
        if test(file):
            return name
    return "other (standard library, interpreter)"


def summarise(collapsed_text, top=12):
    """Shares of the busy samples (idle ones left out) by component, by use case (inclusive) and by
    innermost line, and the share of samples that were idle."""
    by_component = collections.Counter()
    by_use_case = collections.Counter()
    by_line = collections.Counter()
    total = idle = 0
    for row in collapsed_text.splitlines():
        stack_text, _, count_text = row.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        component = component_of(stack)
        if component == IDLE:
            idle += count
            continue
        total += count
        by_component[component] += count
        functions = {parse_frame(frame)[0] for frame in stack}
        for use_case in USE_CASES:
            if use_case in functions:
                by_use_case[use_case] += count
        function, file, line = parse_frame(stack[-1])
        by_line[f"{function} ({_short(file)}:{line})"] += count

    def shares(counter, limit=None):
        return [{"what": k, "share": round(v / total, 3)} for k, v in counter.most_common(limit)] if total else []

    return {"busy_samples": total, "idle_share": round(idle / (idle + total), 3) if idle + total else None,
            "by_component": shares(by_component), "by_use_case": shares(by_use_case),
            "top_lines": shares(by_line, top)}


def _short(file):
    for marker in ("/site-packages/", "/lib/python3.11/", ROOT):
        if marker in file:
            return file.split(marker, 1)[1]
    return file


def profile_under_load(benchmark, out_dir, seconds, rate=100):
    """Sample every service with py-spy for `seconds` while intake is flooded with normal cases and
    critical ones arrive at `benchmark.config.critical_rate`. Returns the summary of each service."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    py_spy = Path(sys.executable).with_name("py-spy")
    recorders = {}
    for name, pid in benchmark.env.service_pids.items():
        recorders[name] = subprocess.Popen(
            [str(py_spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
             "--format", "raw", "--full-filenames", "--output", str(out_dir / f"{name}.txt")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()
    sent = []

    def flood():
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            sent.extend(load.flood(lambda i: benchmark.client.post_case("normal"), 200,
                                   benchmark.config.concurrency))

    flooding = threading.Thread(target=flood, daemon=True)
    flooding.start()
    critical, _ = load.paced(lambda i: benchmark.client.post_case("critical"),
                             int(seconds * benchmark.config.critical_rate), benchmark.config.critical_rate)
    summaries = {}
    for name, recorder in recorders.items():
        _, errors = recorder.communicate(timeout=seconds + 60)
        path = out_dir / f"{name}.txt"
        if recorder.returncode != 0 or not path.exists():
            summaries[name] = {"error": errors.decode("utf-8", "replace")[-500:]}
            continue
        summaries[name] = summarise(path.read_text())
    stop.set()
    flooding.join()
    benchmark._await(sent + critical)
    return {"seconds": seconds, "rate_hz": rate, "cases": len(sent) + len(critical), "services": summaries}
