"""The pool's transactions on real PostgreSQL, counted on the wire: BEGIN travels with a transaction's first
statement, statements given to `later` with the next statement or with COMMIT, and however the statements
travel, a transaction commits whole or not at all. The pool connects through tests.support.wire's relay,
which keeps each query the client sends: each is one round trip to the server."""
import eventlet
import psycopg2
import pytest
from psycopg2 import sql

from sanad.platform.pool import Pool, Prepared
from tests.support.wire import CountingRelay

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def database_url(make_database):
    url = make_database("pool")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE pool_probe (id int PRIMARY KEY, note text NOT NULL)")
    return url


@pytest.fixture
def relay(database_url):
    counting = CountingRelay(database_url)
    yield counting
    counting.close()


@pytest.fixture
def pool(database_url, relay):
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("TRUNCATE pool_probe")
    made = relay.connected_pool(size=1)
    yield made
    made.close()


def notes(pool):
    with pool.transaction() as cur:
        cur.execute("SELECT id, note FROM pool_probe ORDER BY id")
        return [(row["id"], row["note"]) for row in cur.fetchall()]


def test_begin_goes_with_the_first_statement_and_later_statements_with_the_commit(pool, relay):
    with pool.transaction() as cur:
        cur.execute("INSERT INTO pool_probe VALUES (%(id)s, %(note)s)", {"id": 1, "note": "first"})
        cur.later("INSERT INTO pool_probe VALUES (%(id)s, %(note)s)", {"id": 2, "note": "an audit row"})
        cur.later("INSERT INTO pool_probe VALUES (%(id)s, %(note)s)", {"id": 3, "note": "an outbox row"})

    assert len(relay.queries) == 2
    assert relay.queries[0].startswith("BEGIN") and "'first'" in relay.queries[0]
    assert "'an audit row'" in relay.queries[1] and "'an outbox row'" in relay.queries[1]
    assert relay.queries[1].endswith("COMMIT")
    assert notes(pool) == [(1, "first"), (2, "an audit row"), (3, "an outbox row")]


def test_a_statement_given_to_later_is_seen_by_the_next_statement_of_its_transaction(pool, relay):
    with pool.transaction() as cur:
        cur.later("INSERT INTO pool_probe VALUES (1, 'waiting')")
        cur.execute("SELECT count(*) AS n FROM pool_probe")
        counted = cur.fetchone()["n"]

    assert counted == 1
    assert len(relay.queries) == 2  # BEGIN, the insert and the count; then COMMIT


def test_a_failing_later_statement_fails_the_transaction_and_leaves_nothing_of_it(pool):
    with pool.transaction() as cur:
        cur.execute("INSERT INTO pool_probe VALUES (1, 'kept')")

    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pool.transaction() as cur:
            cur.execute("INSERT INTO pool_probe VALUES (2, 'half of a change')")
            cur.later("INSERT INTO pool_probe VALUES (1, 'a duplicate')")

    assert notes(pool) == [(1, "kept")]  # and the connection went back to the pool fit for use


def test_a_block_that_raises_rolls_back_and_never_sends_what_was_left_for_later(pool, relay):
    with pytest.raises(RuntimeError):
        with pool.transaction() as cur:
            cur.execute("INSERT INTO pool_probe VALUES (1, 'rolled back')")
            cur.later("INSERT INTO pool_probe VALUES (2, 'never sent')")
            raise RuntimeError("the handler failed")

    assert len(relay.queries) == 2 and relay.queries[1] == "ROLLBACK"
    assert "never sent" not in "".join(relay.queries)
    assert notes(pool) == []


def test_what_waits_for_the_commit_runs_once_the_commit_succeeded_and_never_after_a_failure(pool):
    ran = []
    with pool.transaction() as cur:
        cur.later("INSERT INTO pool_probe VALUES (1, 'kept')")
        cur.after_commit(lambda: ran.append("after the commit"))
    assert ran == ["after the commit"] and notes(pool) == [(1, "kept")]

    with pytest.raises(RuntimeError):
        with pool.transaction() as cur:
            cur.execute("INSERT INTO pool_probe VALUES (2, 'rolled back')")
            cur.after_commit(lambda: ran.append("after a rollback"))
            raise RuntimeError("the handler failed")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pool.transaction() as cur:
            cur.after_commit(lambda: ran.append("after a failed COMMIT"))
            cur.later("INSERT INTO pool_probe VALUES (1, 'a duplicate, sent with the COMMIT')")

    assert ran == ["after the commit"]


def test_a_transaction_that_ran_nothing_costs_no_round_trip(pool, relay):
    with pool.transaction():
        pass

    assert relay.queries == []


def test_statements_travel_together_whatever_their_form(pool):
    with pool.transaction() as cur:
        cur.execute("SELECT 1 -- a line comment at the end must not swallow what follows")
        cur.later(sql.SQL("INSERT INTO pool_probe VALUES ({}, {})").format(sql.Literal(1), sql.Literal("50% off")))
        cur.later("INSERT INTO pool_probe VALUES (2, %(note)s)", {"note": "100% -- not a comment; nor this"})
        cur.later("INSERT INTO pool_probe VALUES (3, 'no parameters, a %% kept as it is')")

    assert notes(pool) == [(1, "50% off"), (2, "100% -- not a comment; nor this"),
                           (3, "no parameters, a %% kept as it is")]


NOTE_OF = Prepared("SELECT note FROM pool_probe WHERE id = %(id)s OR id = %(id)s + %(offset)s ORDER BY id")
ADD_NOTE = Prepared("INSERT INTO pool_probe VALUES (%(id)s, %(note)s || ' at 100%%')")


def test_a_prepared_statement_is_prepared_with_its_first_use_on_a_connection_then_run_by_name(pool, relay):
    for attempt in (1, 2):
        with pool.transaction() as cur:
            cur.later(ADD_NOTE, {"id": attempt, "note": f"note {attempt}"})
            cur.execute(NOTE_OF, {"id": attempt, "offset": 100})
            assert cur.fetchall() == [{"note": f"note {attempt} at 100%"}]

    first, _, second, _ = relay.queries  # each transaction's statements, then its COMMIT
    assert first.startswith("BEGIN") and first.count("PREPARE") == 2
    assert "PREPARE" not in second and second.count("EXECUTE sanad_") == 2
    assert "pool_probe" not in second  # the text travels once a connection


def test_a_failure_beside_a_first_prepare_costs_the_connection_and_nothing_else(pool, relay):
    """A prepared statement outlives a rollback, so after a failure nobody knows which PREPARE ran; the
    pool starts again on a new connection, where the statement is prepared afresh."""
    with pool.transaction() as cur:
        cur.execute("INSERT INTO pool_probe VALUES (1, 'kept')")
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pool.transaction() as cur:
            cur.execute(ADD_NOTE, {"id": 1, "note": "a duplicate"})
    with pool.transaction() as cur:
        cur.execute(ADD_NOTE, {"id": 2, "note": "added"})

    assert relay.connections == 2
    assert "PREPARE" in relay.queries[-2]
    assert notes(pool) == [(1, "kept"), (2, "added at 100%")]


def test_a_prepared_statement_failing_once_prepared_keeps_its_connection(pool, relay):
    with pool.transaction() as cur:
        cur.execute(ADD_NOTE, {"id": 1, "note": "kept"})
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pool.transaction() as cur:
            cur.execute(ADD_NOTE, {"id": 1, "note": "a duplicate"})

    assert notes(pool) == [(1, "kept at 100%")]
    assert relay.connections == 1


def test_a_prepared_statements_planner_setting_goes_before_it_in_the_same_round_trip_every_time(pool, relay):
    note_of_without_bitmaps = Prepared("SELECT note FROM pool_probe WHERE id = %(id)s",
                                       planner="SET LOCAL enable_bitmapscan = off")
    for _ in (1, 2):
        with pool.transaction() as cur:
            cur.execute(note_of_without_bitmaps, {"id": 1})
            cur.execute("SHOW enable_bitmapscan")
            assert cur.fetchone() == {"enable_bitmapscan": "off"}
        with pool.transaction() as cur:  # and the setting ended with its transaction
            cur.execute("SHOW enable_bitmapscan")
            assert cur.fetchone() == {"enable_bitmapscan": "on"}

    runs = [query for query in relay.queries if "EXECUTE sanad_" in query]
    assert len(runs) == 2
    assert all(query.index("SET LOCAL enable_bitmapscan = off") < query.index("EXECUTE sanad_") for query in runs)


def test_a_prepared_statement_takes_named_parameters_only():
    with pytest.raises(ValueError):
        Prepared("SELECT note FROM pool_probe WHERE id = %s")
    assert Prepared("SELECT %(a)s, %(b)s, %(a)s").prepare.endswith("SELECT $1, $2, $1")


def test_executemany_runs_inside_the_transaction(pool):
    with pytest.raises(psycopg2.errors.UniqueViolation):
        with pool.transaction() as cur:
            cur.executemany("INSERT INTO pool_probe VALUES (%s, %s)", [(1, "one"), (2, "two"), (1, "again")])

    assert notes(pool) == []


def test_taking_an_idle_connection_from_the_pool_lets_no_other_green_thread_run(pool):
    """Under a flood a switch to eventlet's hub waits a turn of every request the process is working on,
    and each transaction checks its connection out once: the check must not be such a switch."""
    other_turns = []

    def other_request():
        while True:
            other_turns.append(1)
            eventlet.sleep(0)

    other = eventlet.spawn(other_request)
    eventlet.sleep(0)
    other_turns.clear()
    try:
        for _ in range(20):
            with pool.connection():
                pass
    finally:
        other.kill()

    assert other_turns == []
