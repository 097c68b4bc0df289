"""What a PostgreSQL client sends on the wire, counted: a loopback relay between a pool and the server that
keeps the text of every simple query the client sends. Each is one round trip, since psycopg2 sends one
query and waits for its answer before the next."""
import struct
from contextlib import contextmanager

import eventlet
import psycopg2

from sanad.platform.pool import Pool

# Real threads and sockets even under eventlet: the relay must go on while the test waits on PostgreSQL,
# whether or not psycopg2 hands its waits to the hub in this process.
threading = eventlet.patcher.original("threading")
real_socket = eventlet.patcher.original("socket")

NEGOTIATION_CODES = {80877103, 80877104}  # SSLRequest, GSSENCRequest: the startup message follows them


class CountingRelay:
    """Relays PostgreSQL clients to the server of `database_url`, keeping the text of each query sent."""

    def __init__(self, database_url):
        self.database_url = database_url
        parts = psycopg2.extensions.parse_dsn(database_url)
        self.upstream = (parts.get("host", "127.0.0.1"), int(parts.get("port", 5432)))
        self.queries = []
        self.connections = 0  # made through the relay so far
        self.listener = real_socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def port(self):
        return self.listener.getsockname()[1]

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = real_socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(server, client, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(client, server, self._read_client), daemon=True).start()

    @staticmethod
    def _pump(source, sink, observe):
        buffered = bytearray()
        state = {"startup": True}
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                for end in (source, sink):
                    end.close()
                return
            if observe is not None:
                buffered += chunk
                observe(buffered, state)
            sink.sendall(chunk)

    def _read_client(self, buffered, state):
        """Take whole messages off the front of the client's stream, noting each simple query."""
        while True:
            if state["startup"]:
                if len(buffered) < 8:
                    return
                length, code = struct.unpack("!II", buffered[:8])
                if len(buffered) < length:
                    return
                state["startup"] = code in NEGOTIATION_CODES
                del buffered[:length]
                continue
            if len(buffered) < 5:
                return
            kind, length = buffered[:1], struct.unpack("!I", buffered[1:5])[0]
            if len(buffered) < 1 + length:
                return
            if kind == b"Q":
                self.queries.append(bytes(buffered[5:1 + length]).rstrip(b"\0").decode())
            del buffered[:1 + length]

    def close(self):
        self.listener.close()

    def connected_pool(self, size=1, schema=None):
        """A pool whose connections go through the relay, connected before the counting starts (the pool
        keeps its connections), so only what is sent after this call is counted."""
        dsn = psycopg2.extensions.make_dsn(self.database_url, host="127.0.0.1", port=self.port,
                                           sslmode="disable", gssencmode="disable")
        pool = Pool(dsn, size=size, schema=schema)
        with pool.connection():
            pass
        self.queries.clear()
        return pool


@contextmanager
def counting_pool(database_url, schema=None):
    """(a pool of one connection through a relay of its own, the list of queries it sends from here on),
    both closed when the block ends."""
    relay = CountingRelay(database_url)
    pool = relay.connected_pool(size=1, schema=schema)
    try:
        yield pool, relay.queries
    finally:
        pool.close()
        relay.close()
