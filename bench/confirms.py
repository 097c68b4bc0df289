"""Benchmark: publishing a batch of persistent events with confirms, one confirm awaited at a time (kombu's
`confirm_publish`, what the outbox did until item 32) against all of a batch's confirms awaited together
(sanad.platform.broker.ConfirmedPublisher, what it does now).

Not a test: timings depend on the machine. Run it with nothing else busy:

    .venv/bin/python -m bench.confirms [--batch 1 5 20 50] [--rounds 300]

For each batch size and each way it publishes `rounds` batches of case-sized JSON events to a durable
queue of a virtual host of its own (deleted afterwards) and prints, per way: the median time a batch
took until every message was confirmed, and the CPU a message cost this process and RabbitMQ (the whole
broker, read from /proc).
"""
import argparse
import os
import statistics
import time

from kombu import Connection, Exchange, Queue

from bench import procstat
from bench.environment import Rabbit
from sanad.platform.broker import ConfirmedPublisher

EXCHANGE = Exchange("bench.confirms", type="direct", durable=True)
QUEUE = Queue("bench.confirms", exchange=EXCHANGE, routing_key="bench.confirms", durable=True)
# About the size of a case.triaged event.
BODY = {"id": "0" * 36, "type": "case.triaged", "version": 1, "data": {"sealed_evidence": "x" * 600}}


BROKER = "RabbitMQ"


def one_at_a_time(uri):
    connection = Connection(uri, transport_options={"confirm_publish": True})
    producer = connection.Producer()

    def publish(batch):
        for i in range(batch):
            producer.publish(BODY, exchange=EXCHANGE, routing_key=QUEUE.routing_key, serializer="json",
                             delivery_mode=2, message_id=str(i), retry=False)
    return publish, connection.release


def together(uri):
    publisher = ConfirmedPublisher(uri)

    def publish(batch):
        publisher.publish_all(EXCHANGE, [(str(i), QUEUE.routing_key, BODY) for i in range(batch)])
    return publish, publisher.release


WAYS = {"one confirm at a time": one_at_a_time, "a batch's confirms together": together}


def measure(uri, way, batch, rounds):
    publish, release = WAYS[way](uri)
    try:
        publish(batch)  # connected and warmed up
        times = []
        meter = procstat.CpuMeter({"this process": os.getpid()}, {BROKER: procstat.BROKER_COMMAND}).start()
        for _ in range(rounds):
            started = time.perf_counter()
            publish(batch)
            times.append(time.perf_counter() - started)
        used, _ = meter.stop()
        messages = batch * rounds
        return {"batch_ms": statistics.median(times) * 1000,
                "own_us": used["this process"] / messages * 1e6,
                "broker_us": used[BROKER] / messages * 1e6}
    finally:
        release()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 5, 20, 50])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    rabbit, vhost = Rabbit(), f"sanad_bench_confirms_{os.getpid()}"
    rabbit.create_vhost(vhost)
    uri = f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}"
    try:
        with Connection(uri) as connection:
            QUEUE(connection.default_channel).declare()
        print(f"{'batch':>5}  {'way':<28} {'batch ms (p50)':>14} {'this process us/msg':>20} {'RabbitMQ us/msg':>16}")
        for batch in args.batch:
            for way in WAYS:
                with Connection(uri) as connection:
                    QUEUE(connection.default_channel).purge()
                figures = measure(uri, way, batch, args.rounds)
                print(f"{batch:>5}  {way:<28} {figures['batch_ms']:>14.2f} {figures['own_us']:>20.0f} "
                      f"{figures['broker_us']:>16.0f}")
    finally:
        rabbit.delete_vhost(vhost)


if __name__ == "__main__":
    main()
