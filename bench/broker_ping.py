"""`python -m bench.broker_ping`: what one crossing of RabbitMQ costs an event of the critical lane, with
no service and no database in it; alone, or while the stack is flooded (`python -m bench.timeline
--broker-ping`, docs/performance.md, "The targets").

A process of its own, in real time where it may (as each process of the critical lane is), publishes a
persistent message with publisher confirms to a durable queue of its own every INTERVAL seconds, and
receives it on a second connection. Each latency runs from just before the publish to the receipt, on one
monotonic clock. The queue is deleted afterwards.

The process is started as a command (`subprocess`), not with multiprocessing: the test run that checks it
is patched by eventlet, under which multiprocessing's start of a process once collided with another green
thread writing to its resource tracker's pipe, and failed the run.
"""
import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from kombu import Connection, Queue

from bench.procstat import run_in_real_time
from bench.stats import summary_ms

INTERVAL = 0.02
ROOT = Path(__file__).resolve().parents[1]
DRAIN_SECONDS = 1.0  # how long the receiver waits for the last messages once publishing has stopped


def measure(amqp_uri, seconds, interval=INTERVAL):
    """Latencies in seconds, one a message, for `seconds` of publishing from this process."""
    name = f"bench-broker-ping-{uuid.uuid4().hex[:8]}"
    latencies, stop = [], threading.Event()
    with Connection(amqp_uri) as receiving, Connection(
            amqp_uri, transport_options={"confirm_publish": True}) as publishing:
        queue = Queue(name, routing_key=name, durable=True)(receiving.default_channel)
        queue.declare()
        receiver = threading.Thread(target=_receive, args=(receiving, queue, latencies, stop), daemon=True)
        receiver.start()
        try:
            producer = publishing.Producer()
            finish = time.monotonic() + seconds
            while time.monotonic() < finish:
                producer.publish({"sent": time.monotonic()}, routing_key=name, serializer="json", delivery_mode=2)
                time.sleep(interval)
            time.sleep(DRAIN_SECONDS)
        finally:
            stop.set()
            receiver.join(DRAIN_SECONDS * 2)
            queue.delete()
    return latencies


def _receive(connection, queue, latencies, stop):
    def received(body, message):
        latencies.append(time.monotonic() - body["sent"])
        message.ack()

    with connection.Consumer(queue, callbacks=[received], prefetch_count=1):
        while not stop.is_set():
            try:
                connection.drain_events(timeout=0.2)
            except TimeoutError:
                pass


def measure_in_own_process(amqp_uri, seconds, interval=INTERVAL):
    """measure(), from a process of its own under the real-time policy where it may."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.broker_ping", "--amqp-uri", amqp_uri, "--seconds", str(seconds),
         "--interval", str(interval), "--latencies"],
        cwd=ROOT, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"the broker ping exited with code {done.returncode}: {done.stderr[-500:]}")
    return json.loads(done.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.broker_ping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-uri", default="pyamqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=INTERVAL, help="seconds between two messages")
    parser.add_argument("--latencies", action="store_true",
                        help="print every latency in seconds, not their summary in milliseconds")
    args = parser.parse_args(argv)
    run_in_real_time()
    latencies = measure(args.amqp_uri, args.seconds, args.interval)
    print(json.dumps(latencies if args.latencies else summary_ms(latencies)))


if __name__ == "__main__":
    main()
