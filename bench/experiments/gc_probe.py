"""How often each service's cyclic garbage collector runs under a flood, and each process's CPU a case.

    PYTHONPATH=. .venv/bin/python bench/experiments/gc_probe.py [CASES]

Starts the benchmark's stack (bench.environment), sends 300 normal cases to warm it up, then floods intake
with CASES normal cases (3,000 by default) from eight senders and waits until the stand-in partner has
every webhook. Python's collections by generation are read from each process's /metrics
(prometheus_client's python_gc_collections_total) before and after the flood; CPU from /proc."""
import re
import sys
import time
import urllib.request

from bench import load, procstat
from bench.client import IntakeClient
from bench.environment import BenchEnvironment

WARM_UP = 300
GC_LINE = re.compile(r'^python_gc_(collections|objects_collected)_total\{generation="(\d)"\} (\S+)$')


def gc_counts(environment) -> dict:
    """{process: {(what, generation): count}} from every process's /metrics."""
    counts = {}
    for name in environment.stack.running:
        with urllib.request.urlopen(environment.stack.url(name) + "/metrics", timeout=10) as response:
            text = response.read().decode()
        matches = (GC_LINE.match(line) for line in text.splitlines())
        counts[name] = {(m.group(1), int(m.group(2))): float(m.group(3)) for m in matches if m}
    return counts


def cpu_seconds(environment) -> dict:
    return {name: procstat.cpu_seconds(pid) for name, pid in environment.service_pids.items()}


def flood(environment, client, count):
    """Send `count` normal cases and wait until the partner has every one (ten minutes at most)."""
    missing = load.flood(lambda i: client.post_case("normal"), count, 8)
    deadline = time.monotonic() + 600
    while missing and time.monotonic() < deadline:
        time.sleep(0.1)
        missing = [c for c in missing if environment.receiver.first_arrival(c.reference) is None]
    if missing:
        raise RuntimeError(f"{len(missing)} cases never reached the partner")


def main(count):
    environment = BenchEnvironment("/tmp/sanad-gc-probe").open()
    try:
        client = IntakeClient(environment.stack.url("intake"), environment.api_token)
        flood(environment, client, WARM_UP)
        time.sleep(3)
        gc_before, cpu_before = gc_counts(environment), cpu_seconds(environment)
        started = time.monotonic()
        flood(environment, client, count)
        took = time.monotonic() - started
        time.sleep(3)
        gc_after, cpu_after = gc_counts(environment), cpu_seconds(environment)
    finally:
        environment.close()
    print(f"{count} cases delivered in {took:.1f} s; a case's share, by process:")
    for name, after in gc_after.items():
        made = {key: (after[key] - gc_before[name].get(key, 0)) / count for key in after}
        collected = sum(value for (what, _), value in made.items() if what == "objects_collected")
        print(f"{name:18s} CPU {1000 * (cpu_after[name] - cpu_before[name]) / count:6.3f} ms; collections: "
              f"generation 0 {made.get(('collections', 0), 0):.3f}, 1 {made.get(('collections', 1), 0):.4f}, "
              f"2 {made.get(('collections', 2), 0):.5f}; objects collected {collected:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
