"""A small PostgreSQL connection pool: lazy, bounded, and quick to drop broken connections.

psycopg2's own pools close every connection returned above `minconn` (so each checkout reconnects) and
open all connections up front (so a service cannot start while PostgreSQL is down). This one opens a
connection when one is first needed, keeps every healthy one, and discards one that failed, so the
next checkout reconnects by itself after a database restart.

An idle connection is checked before it is handed out: PostgreSQL says goodbye to every session when it
shuts down or crashes, so an idle connection with anything to read is one whose server has gone. Without
the check, the first request after a restart would fail once for every connection left in the pool.

A transaction takes as few round trips to PostgreSQL as its work allows (`Transaction`): under load each
round trip waits for the process's turn among all its requests, and a critical case pays that wait once
per round trip. While a critical case's request holds precedence (sanad.platform.precedence), every other
transaction of the process waits before its next round trip.

The statements a flood runs thousands of times are `Prepared`: PostgreSQL parses and plans each once per
connection rather than at every run. In a 5,000-case flood, planning was two fifths of PostgreSQL's time
spent on statements, most of it on a handful of them (pg_stat_statements, docs/performance.md item 27).
"""
import functools
import hashlib
import queue
import re
import select
import sys
import threading
from contextlib import contextmanager

import psycopg2
import psycopg2.extras

from sanad.platform.precedence import PRECEDENCE
from sanad.platform.priority import share_realtime_priority

psycopg2.extras.register_uuid()

# Errors after which a connection cannot be trusted again.
CONNECTION_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)

# For a transaction whose queries want the first few entries of an index in its order. Unless PostgreSQL
# has statistics for the table (analysed lately: not so with autovacuum off, or after quick growth) the
# planner may read the index with a bitmap scan, which fetches every matching row, then sorts them; and a
# bitmap scan never marks the dead entries it passes, so it meets them again next time. A plain index
# scan stops after the few rows it needs and marks dead entries, so later scans skip them.
PLAIN_INDEX_SCANS = "SET LOCAL enable_bitmapscan = off"
# For a transaction that runs a `Prepared` statement whose plan must not read a growing table whole. The
# plan is made at the statement's first run on a connection and kept until the table is analysed. Made
# while the table held a page or so of rows and had never been analysed (a service's first minutes; for
# ever where autovacuum is off), a plan chose to read all of it rather than look rows up by their ids,
# which is cheapest for one page and grows with the table from then on (notify's claim of due
# deliveries: 3 to 5 ms a claim, half of PostgreSQL's time in a 5,000-case flood; docs/performance.md,
# item 42). Where an index answers, this makes the planner take it.
NO_WHOLE_TABLE_READS = "SET LOCAL enable_seqscan = off"


# Between statements sent together: the newline ends a statement's trailing line comment, if it has one.
STATEMENT_SEPARATOR = b"\n;\n"
OPEN = (psycopg2.extensions.TRANSACTION_STATUS_INTRANS, psycopg2.extensions.TRANSACTION_STATUS_INERROR)


class Prepared(str):
    """A statement to be prepared once on each connection and run by name from then on.

    The text is an ordinary statement with named parameters (`%(name)s`); `Transaction` sends
    `PREPARE <name> AS <text with $1, $2...>` the first time a connection meets it, then
    `EXECUTE <name>(<values>)`. Values travel as literals, as in any other statement; PostgreSQL coerces
    each to the type it inferred for that parameter at PREPARE, which is stricter than the context of a
    statement written out in full: a list of strings does not become a uuid[] (send uuid.UUID values),
    and a parameter whose type the statement leaves open needs a cast. A connection made elsewhere
    (not by `Pool`) runs the text as it is.

    `planner` is a `SET LOCAL` the plan must be made under (NO_WHOLE_TABLE_READS, say): `Transaction`
    sends it before the statement every time, since whichever run comes first on a connection makes the
    plan that connection keeps, and tests/service/test_query_plans.py plans the statement under it."""

    def __new__(cls, text, planner=None):
        if "%" in re.sub(r"%%|%\(\w+\)s", "", text):
            raise ValueError("a prepared statement takes named parameters only")
        self = super().__new__(cls, text)
        self.planner = planner
        parameters = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", text)))
        numbered = re.sub(r"%\((\w+)\)s", lambda match: f"${parameters.index(match.group(1)) + 1}", text)
        self.parameters = tuple(parameters)  # their names, in the order of $1, $2...
        self.name = "sanad_" + hashlib.sha256(text.encode()).hexdigest()[:16]
        self.prepare = f"PREPARE {self.name} AS {numbered.replace('%%', '%')}"
        self.run = f"EXECUTE {self.name}" + (f"({', '.join(f'%({name})s' for name in parameters)})"
                                             if parameters else "")
        return self


class PreparingConnection(psycopg2.extensions.connection):
    """A connection that remembers which `Prepared` statements its session holds."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prepared = set()


class Transaction(psycopg2.extras.RealDictCursor):
    """A cursor for one transaction, on a connection in autocommit mode.

    psycopg2 left to itself sends BEGIN, each statement and COMMIT as round trips of their own. This cursor
    sends BEGIN with the transaction's first statement, and each statement given to `later` with the next
    statement, or with COMMIT. `later` is for a statement whose result nobody reads and whose failure should
    fail the whole transaction (an audit row, an outbox row): its error is raised by whichever call sends
    it. A transaction that sent nothing ends without a round trip. Only statements sent by these methods
    are inside the transaction: psycopg2's callproc and copy methods would run on their own.
    `after_commit` keeps a function to call once COMMIT has succeeded, and forgets it on a rollback or a
    failed COMMIT, so that what a caller does with it (the outbox publishing events from memory) follows
    only a transaction that is known to have committed."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._begun = False
        self._waiting = []  # statements given to `later`, parameters bound, not yet sent
        self._preparing = {}  # Prepared statements this connection has not prepared yet, by name
        self._after_commit = []

    def execute(self, query, vars=None):
        return self._send(self._bound(query, vars))

    def executemany(self, query, vars_list):
        for vars in vars_list:
            self.execute(query, vars)

    def later(self, query, vars=None):
        self._waiting.append(self._bound(query, vars))

    def after_commit(self, function):
        self._after_commit.append(function)

    def commit(self):
        then, self._after_commit = self._after_commit, []
        if self._begun or self._waiting:
            self._send(b"COMMIT")
        for function in then:
            function()

    def rollback(self):
        self._waiting.clear()
        self._preparing.clear()
        self._after_commit.clear()
        if self.connection.info.transaction_status in OPEN:
            super().execute("ROLLBACK")

    def _bound(self, query, vars):
        prepared = getattr(self.connection, "prepared", None)
        if isinstance(query, Prepared) and query.planner:
            self._waiting.append(query.planner.encode())
        if not isinstance(query, Prepared) or prepared is None:
            return self.mogrify(query, vars)
        if query.name not in prepared:
            self._preparing[query.name] = query.prepare.encode()
        return self.mogrify(query.run, vars)

    def _send(self, statement):
        """Send `statement` with BEGIN if the transaction has not begun, the PREPARE of any statement met
        for the first time on this connection, and what waits for later. A prepared statement outlives a
        rollback, so when what was sent fails, whether each PREPARE ran is unknown: the connection is
        closed then, and the pool opens another. That happens only before a statement has once run."""
        PRECEDENCE.before_round_trip(self.connection)
        statements = ([] if self._begun else [b"BEGIN"]) + list(self._preparing.values()) + self._waiting
        preparing, self._preparing = self._preparing, {}
        self._begun, self._waiting = True, []
        try:
            result = super().execute(STATEMENT_SEPARATOR.join(statements + [statement]))
        except BaseException:
            if preparing:
                self.connection.close()
            raise
        self.connection.prepared.update(preparing)
        return result


class Pool:
    def __init__(self, dsn, size, schema=None, connect_timeout=5, application_name="sanad"):
        self._dsn = dsn
        self._application_name = application_name
        # No JIT compilation: Sanad's queries are short, and on a table without statistics the planner's
        # guesses can put one over jit_above_cost, which then compiles it at every run (82 ms a reading
        # of notify's endpoint gauge in the benchmark, all of it compiling).
        # A prepared statement keeps one plan made without its values: left to choose, PostgreSQL planned
        # referral's matching again at every run (a generic plan costed above the custom ones), which is
        # what preparing it was to save. Only `Prepared` statements have a plan to keep.
        self._options = ("-c jit=off -c plan_cache_mode=force_generic_plan"
                         + (f" -c search_path={schema},public" if schema else ""))
        self._connect_timeout = connect_timeout
        self._idle = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(size)

    def _connect(self):
        conn = self._open()
        conn.autocommit = True  # transactions begin and end in the statements Transaction sends
        share_realtime_priority(conn)
        return conn

    def _open(self):
        kwargs = {"connect_timeout": self._connect_timeout, "application_name": self._application_name,
                  "options": self._options, "connection_factory": PreparingConnection}
        if psycopg2.extensions.get_wait_callback() is None:
            return psycopg2.connect(self._dsn, **kwargs)
        # A green connection (sanad.platform.database) is made without blocking, and libpq ignores
        # connect_timeout then: the timeout is kept here instead.
        import eventlet
        with eventlet.Timeout(self._connect_timeout, psycopg2.OperationalError("timed out connecting to PostgreSQL")):
            return psycopg2.connect(self._dsn, **kwargs)

    @contextmanager
    def connection(self):
        self._slots.acquire()
        conn = None
        try:
            conn = self._take_idle() or self._connect()
            yield conn
        except CONNECTION_ERRORS:
            if conn is not None:
                conn.close()
            conn = None
            raise
        finally:
            if conn is not None:
                if conn.closed or conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                    conn.close()
                else:
                    self._idle.put(conn)
            self._slots.release()

    def _take_idle(self):
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return None
            if _alive(conn):
                return conn
            conn.close()

    @contextmanager
    def transaction(self):
        """A cursor inside one transaction (a `Transaction`): committed when the block ends, rolled back if
        it raises."""
        with self.connection() as conn:
            with conn.cursor(cursor_factory=Transaction) as cursor:
                try:
                    yield cursor
                    cursor.commit()
                except BaseException:
                    if not conn.closed:
                        cursor.rollback()
                    raise

    def close(self):
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _alive(conn) -> bool:
    """False for a closed connection, or an idle one the server has written to (a shutdown notice, the
    end of the stream): nothing is due on an idle session, so anything there means it is over."""
    if conn.closed:
        return False
    try:
        readable, _, _ = _system_select()([conn], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


@functools.cache
def _system_select():
    """The system's select, even in a process eventlet has patched: eventlet's hands control to its hub
    even with no timeout, so every checkout would wait a turn of every other green thread (under a
    flood, of every request the process is working on). Looked up at the first checkout, by when a
    service process has been patched."""
    eventlet = sys.modules.get("eventlet")
    return eventlet.patcher.original("select").select if eventlet else select.select
