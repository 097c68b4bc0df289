"""The plan PostgreSQL keeps for each prepared statement, made as a service makes it on its first start.

A `Prepared` statement is planned once per connection, without its values and with the estimates of that
moment, and the plan is kept until the table is analysed. A plan made on empty tables (every service's
first minutes, and for ever where autovacuum is off) once read a whole index of pending deliveries to
find one delivery by its id (docs/performance.md, item 28). These tests plan every prepared statement on
the emptied tables of this tier's database and refuse a plan that reads an index from its first entry or
reads a whole table that grows with the cases. A table holding a page of rows, never analysed, is planned
differently again: notify's claim of due deliveries is checked there too (item 42).
"""
import importlib
import pkgutil
import re
import uuid

import pytest

import sanad.platform
import services
from sanad.platform.migrate import SCHEMAS
from sanad.platform.pool import Pool, Prepared
from services.notify import handlers, sql
from services.notify.settings import NotifySettings

# Tables whose size staff set (the partner directory, endpoints, policies), not the number of cases:
# reading them whole is cheap at any load.
DIRECTORY_TABLES = {"endpoints", "oncall_endpoints", "partners", "partner_services", "escalation_policies"}
FIRST_COLUMNS = """
    SELECT c.relname AS index, a.attname AS first_column
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s
"""


def _modules(package):
    for module in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
        if ".migrations" not in module.name:
            yield importlib.import_module(module.name)


def prepared_statements():
    """(schema, "module.NAME", statement) for every Prepared statement: a service's own in its schema,
    the platform's (inbox, outbox) in every schema."""
    found = []
    for module in _modules(services):
        schema = module.__name__.split(".")[1]
        found += [(schema, f"{module.__name__}.{name}", value)
                  for name, value in vars(module).items() if isinstance(value, Prepared)]
    for module in _modules(sanad.platform):
        for name, value in vars(module).items():
            if isinstance(value, Prepared):
                found += [(schema, f"{module.__name__}.{name}", value) for schema in SCHEMAS]
    return sorted(set(found))


STATEMENTS = prepared_statements()


def _nodes(plan):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def plan_faults(plan, first_columns):
    """What is wrong with a plan (EXPLAIN's JSON), in words: an index read from its first entry, or a
    growing table read whole."""
    faults = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if kind in ("Index Scan", "Index Only Scan", "Bitmap Index Scan"):
            index, condition = node["Index Name"], node.get("Index Cond", "")
            first = first_columns.get(index)
            if not condition or (first and not re.search(rf"\b{re.escape(first)}\b", condition)):
                faults.append(f"{kind} on {index} reads it from its first entry (condition: {condition or 'none'})")
        elif kind == "Seq Scan" and node["Relation Name"] not in DIRECTORY_TABLES:
            faults.append(f"reads all of {node['Relation Name']}")
    return faults


def generic_plan_on(pool, statement, under_its_planner_setting=True):
    """The plan a connection of `pool` keeps for a statement, made on its tables as they are now, under the
    statement's own planner setting (`Prepared.planner`) as `Transaction` sends it, unless told not to."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SHOW plan_cache_mode")
        assert cur.fetchone()[0] == "force_generic_plan"
        cur.execute("BEGIN")
        if statement.planner and under_its_planner_setting:
            cur.execute(statement.planner)
        cur.execute(statement.prepare.replace(statement.name, "plan_check", 1))
        try:
            values = f"({', '.join(['NULL'] * len(statement.parameters))})" if statement.parameters else ""
            cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE plan_check{values}")
            return cur.fetchone()[0][0]["Plan"]
        finally:
            cur.execute("DEALLOCATE plan_check")
            cur.execute("ROLLBACK")


@pytest.fixture
def generic_plan(pools):
    """The plan a service's connection keeps for a statement, made on the (emptied) tables of `schema`."""
    return lambda schema, statement: generic_plan_on(pools[schema], statement)


@pytest.fixture
def first_columns(pools):
    def of(schema):
        with pools[schema].transaction() as cur:
            cur.execute(FIRST_COLUMNS, {"schema": schema})
            return {row["index"]: row["first_column"] for row in cur.fetchall()}
    return of


def test_every_service_prepares_statements_and_the_check_finds_them():
    schemas = {schema for schema, _, _ in STATEMENTS}
    assert schemas == set(SCHEMAS)
    assert any(name == "services.notify.sql.FINISH_ATTEMPTS" for _, name, _ in STATEMENTS)


@pytest.mark.parametrize("schema, name, statement", STATEMENTS, ids=[f"{s}:{n}" for s, n, _ in STATEMENTS])
def test_a_prepared_plan_made_on_empty_tables_reads_no_index_from_its_start_and_no_growing_table_whole(
        generic_plan, first_columns, schema, name, statement):
    assert plan_faults(generic_plan(schema, statement), first_columns(schema)) == []


def test_the_check_refuses_a_lookup_by_id_that_reads_the_index_of_pending_deliveries(generic_plan, first_columns):
    # What finishing an attempt once was: the literal status let the partial index of pending deliveries answer.
    before = Prepared("""
        UPDATE deliveries SET lease_until = NULL
        WHERE id = %(delivery_id)s AND attempts = %(attempt)s AND status = 'pending' RETURNING id
    """)
    faults = plan_faults(generic_plan("notify", before), first_columns("notify"))
    assert faults and "reads it from its first entry" in faults[0]


# A page or so of pending deliveries in a table never analysed: what notify's table holds when its sweep
# first claims in a surge (docs/performance.md, item 42). A database of its own, since TRUNCATE keeps a
# table's statistics: an emptied table that was once analysed is planned otherwise.
A_PAGE_OF_DELIVERIES = """
    INSERT INTO deliveries (id, webhook_id, kind, target, endpoint_id, referral_id, case_id, partner_id, lane,
                            payload, next_attempt_at, created_at)
    SELECT gen_random_uuid(), 'msg_' || n, 'referral.offered', 'partner', %(endpoint)s, gen_random_uuid(),
           gen_random_uuid(), %(endpoint)s, 'normal', '{}', now() - interval '1 minute', now()
    FROM generate_series(1, 30) AS n
"""


@pytest.fixture(scope="module")
def a_page_of_deliveries(make_database):
    """A pool of one connection on a database whose deliveries hold a page of pending rows."""
    pool = Pool(make_database("a_page_of_deliveries"), size=1, schema="notify")
    endpoint = uuid.uuid4()
    with pool.transaction() as cur:
        cur.execute("INSERT INTO endpoints (partner_id, url) VALUES (%(endpoint)s, 'https://partner.example/w')",
                    {"endpoint": endpoint})
        cur.execute(A_PAGE_OF_DELIVERIES, {"endpoint": endpoint})
    yield pool
    pool.close()


def kept_plan(pool, statement):
    """The plan the pool's one connection keeps for `statement`, as its first run there made it."""
    with pool.connection() as conn, conn.cursor() as cur:
        values = ", ".join(["NULL"] * len(statement.parameters))
        cur.execute(f"EXPLAIN (FORMAT JSON) EXECUTE {statement.name}({values})")
        return cur.fetchone()[0][0]["Plan"]


def test_the_sweeps_claim_plans_on_a_page_of_deliveries_to_look_them_up_by_id(a_page_of_deliveries, first_columns):
    pool = a_page_of_deliveries
    claimed = handlers.claim_due(pool, "normal", 3, {}, NotifySettings(per_endpoint=4, lease_seconds=60))
    assert len(claimed) == 3
    assert plan_faults(kept_plan(pool, sql.CLAIM_DUE), first_columns("notify")) == []


def test_recording_results_plans_on_a_page_of_deliveries_to_look_them_up_by_id(a_page_of_deliveries, first_columns):
    pool = a_page_of_deliveries
    with pool.transaction() as cur:  # a Transaction sends the statement's planner setting with it
        cur.execute(sql.FINISH_ATTEMPTS, {"finished": "[]", "ids": [uuid.uuid4()], "pending": sql.PENDING})
    assert plan_faults(kept_plan(pool, sql.FINISH_ATTEMPTS), first_columns("notify")) == []


@pytest.mark.parametrize("statement", [sql.CLAIM_DUE, sql.FINISH_ATTEMPTS], ids=["CLAIM_DUE", "FINISH_ATTEMPTS"])
def test_left_to_itself_the_planner_reads_every_delivery_for_notifys_lookups_by_id(
        a_page_of_deliveries, first_columns, statement):
    # Why they are planned under NO_WHOLE_TABLE_READS: without it, the same data gets the plan notify's
    # claim kept in the benchmark's floods.
    plan = generic_plan_on(a_page_of_deliveries, statement, under_its_planner_setting=False)
    assert "reads all of deliveries" in plan_faults(plan, first_columns("notify"))
