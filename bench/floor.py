"""The floor: the same four hops as a case's journey, written directly on kombu and psycopg2 with no
domain work, on the same broker and database as the stack, so that every figure of the real pipeline
can be divided by what the infrastructure alone costs.

A message starts like a case at intake: one INSERT and COMMIT, then the moment is noted (intake's 201
comes after its commit too) and the message is published with confirms. Each of the four hops is a
process of its own, like each service: it consumes (prefetch 1, manual ack), INSERTs one row, COMMITs,
publishes to the next hop with confirms (the last hop notes the arrival time instead), then acks. Bodies
are durable messages of about the size of a case.received event.
"""
import json
import multiprocessing
import queue
import threading
import time
import uuid

import psycopg2
from kombu import Connection, Consumer, Exchange, Producer, Queue

SCHEMA = "bench_floor"
EXCHANGE = Exchange("bench.floor", type="direct", durable=True)
HOPS = 4
PADDING = "x" * 600  # a sealed narrative is several hundred bytes on the broker

CREATE_TABLE = f"""
    CREATE SCHEMA IF NOT EXISTS {SCHEMA};
    CREATE TABLE IF NOT EXISTS {SCHEMA}.hop_rows (
        message_id uuid NOT NULL,
        hop smallint NOT NULL,
        body jsonb NOT NULL,
        recorded_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (message_id, hop)
    )
"""
INSERT_ROW = f"INSERT INTO {SCHEMA}.hop_rows (message_id, hop, body) VALUES (%s, %s, %s)"


def connect(database_url, attempts=120):
    """A connection, waiting a little when a shared server has no connection slot free."""
    for attempt in range(attempts):
        try:
            return psycopg2.connect(database_url)
        except psycopg2.OperationalError as exc:
            if "too many clients" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.5)


def hop_queue(hop):
    return Queue(f"bench.floor.hop{hop}", exchange=EXCHANGE, routing_key=f"hop{hop}", durable=True)


def prepare(amqp_uri, database_url):
    """Create the floor's table and queues; both are dropped with the benchmark's database and vhost."""
    conn = psycopg2.connect(database_url)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(CREATE_TABLE)
    finally:
        conn.close()
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        EXCHANGE(channel).declare()
        for hop in range(1, HOPS + 1):
            hop_queue(hop)(channel).declare()
            hop_queue(hop)(channel).purge()


class Floor:
    """The four hop processes and a source that sends messages into the first hop."""

    def __init__(self, amqp_uri, database_url, workers_per_hop=1):
        self.amqp_uri = amqp_uri
        self.database_url = database_url
        self.workers_per_hop = workers_per_hop
        context = multiprocessing.get_context("spawn")
        self._context = context
        self._done = context.Queue()
        self._stop = context.Event()
        self._processes = []
        self._local = threading.local()
        self._lock = threading.Lock()
        self._arrived = {}
        self._changed = threading.Condition(self._lock)

    def start(self):
        prepare(self.amqp_uri, self.database_url)
        ready = self._context.Barrier(HOPS + 1)
        for hop in range(1, HOPS + 1):
            process = self._context.Process(
                target=_run_hop, name=f"bench-floor-hop{hop}", daemon=True,
                args=(self.amqp_uri, self.database_url, hop, self.workers_per_hop, self._done, self._stop, ready),
            )
            process.start()
            self._processes.append(process)
        ready.wait(60)
        threading.Thread(target=self._collect, daemon=True, name="bench-floor-collector").start()
        return self

    @property
    def pids(self):
        return {f"floor-hop{i}": p.pid for i, p in enumerate(self._processes, start=1)}

    def _collect(self):
        while True:
            try:
                batch = self._done.get(timeout=0.5)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            with self._changed:
                for message_id, at in batch:
                    self._arrived.setdefault(message_id, at)
                self._changed.notify_all()

    def send(self, _index=None):
        """Start one message on its way; returns (message id, the moment its first commit was done)."""
        local = self._local
        if getattr(local, "db", None) is None:
            local.db = connect(self.database_url)
            local.connection = Connection(self.amqp_uri, transport_options={"confirm_publish": True})
            local.producer = Producer(local.connection.default_channel, exchange=EXCHANGE)
        message_id = str(uuid.uuid4())
        body = {"id": message_id, "padding": PADDING}
        with local.db.cursor() as cur:
            cur.execute(INSERT_ROW, (message_id, 0, json.dumps(body)))
        local.db.commit()
        committed_at = time.monotonic()
        local.producer.publish(body, routing_key="hop1", serializer="json", delivery_mode=2, retry=False)
        return message_id, committed_at

    def arrival(self, message_id):
        with self._lock:
            return self._arrived.get(message_id)

    def wait_for(self, message_ids, timeout):
        """Wait until every message has left the last hop; False if `timeout` passed first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while any(m not in self._arrived for m in message_ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
            return True

    def stop(self):
        self._stop.set()
        for process in self._processes:
            process.join(10)
            if process.is_alive():
                process.kill()
        local = self._local
        if getattr(local, "db", None) is not None:
            local.db.close()
            local.connection.release()


def _run_hop(amqp_uri, database_url, hop, workers, done, stop, ready):
    """A hop's process: `workers` threads, each with its own connections, consuming the hop's queue."""
    pending = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_hop_worker, args=(amqp_uri, database_url, hop, stop, pending, lock),
                                daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    ready.wait(60)
    while not stop.is_set():
        time.sleep(0.01)
        if hop == HOPS:
            with lock:
                batch = pending[:]
                pending.clear()
            if batch:
                done.put(batch)
    for t in threads:
        t.join(5)


def _hop_worker(amqp_uri, database_url, hop, stop, pending, lock):
    last = hop == HOPS
    db = connect(database_url)
    consuming = Connection(amqp_uri)
    publishing = Connection(amqp_uri, transport_options={"confirm_publish": True})
    producer = Producer(publishing.default_channel, exchange=EXCHANGE)

    def on_message(body, message):
        with db.cursor() as cur:
            cur.execute(INSERT_ROW, (body["id"], hop, json.dumps(body)))
        db.commit()
        if last:
            arrived_at = time.monotonic()
            with lock:
                pending.append((body["id"], arrived_at))
        else:
            producer.publish(body, routing_key=f"hop{hop + 1}", serializer="json", delivery_mode=2, retry=False)
        message.ack()

    channel = consuming.channel()
    channel.basic_qos(0, 1, False)
    with Consumer(channel, queues=[hop_queue(hop)], callbacks=[on_message], accept=["json"]):
        while not stop.is_set():
            try:
                consuming.drain_events(timeout=0.5)
            except TimeoutError:
                continue
    db.close()
    consuming.release()
    publishing.release()
