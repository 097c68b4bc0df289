"""`python -m bench.broker_ping`: what one crossing of RabbitMQ costs an event of the critical lane, with
no service and no database in it; alone, or while the stack is flooded (`python -m bench.timeline
--broker-ping`, docs/performance.md, "The targets").

A process of its own, in real time where it may (as each process of the critical lane is), publishes a
persistent message with publisher confirms to a durable queue of its own every INTERVAL seconds, and
receives it on a second connection. Each latency runs from just before the publish to the receipt, on one
monotonic clock. The queue is deleted afterwards.
"""
import argparse
import json
import multiprocessing
import threading
import time
import uuid

from kombu import Connection, Queue

from bench.procstat import run_in_real_time
from bench.stats import summary_ms

INTERVAL = 0.02
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
    """measure(), from a spawned process under the real-time policy where it may."""
    context = multiprocessing.get_context("spawn")  # never fork a process that runs threads
    parent_end, child_end = context.Pipe(duplex=False)
    pinger = context.Process(target=_measure_and_send, args=(child_end, amqp_uri, seconds, interval), daemon=True,
                             name="bench-broker-ping")
    pinger.start()
    child_end.close()
    try:
        return parent_end.recv()
    except EOFError:
        raise RuntimeError(f"the broker ping exited with code {pinger.exitcode}") from None
    finally:
        pinger.join(10)


def _measure_and_send(results, amqp_uri, seconds, interval):
    run_in_real_time()
    results.send(measure(amqp_uri, seconds, interval))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench.broker_ping", description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-uri", default="pyamqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    print(json.dumps(summary_ms(measure_in_own_process(args.amqp_uri, args.seconds))))


if __name__ == "__main__":
    main()
