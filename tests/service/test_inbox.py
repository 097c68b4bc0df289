"""handle_event on a real database: an event's id travels with its handler's first statement, so a
duplicate is known only once the handler has begun, and must leave nothing of what it did."""
import uuid

import psycopg2
import pytest

from sanad.contracts.events import new_event
from sanad.platform import inbox
from tests.service.conftest import rows

INSERT_OUTBOX_ROW = "INSERT INTO outbox (id, routing_key, body) VALUES (%(id)s, 'probe', '{}')"


def unmatched():
    return new_event("case.unmatched", {
        "case_id": uuid.uuid4(), "reference": "SND-TEST-0001", "level": "low", "governorate": "dhi_qar",
        "services": ["counselling"],
    }, producer="test").to_message()


def test_an_event_handled_again_leaves_nothing_of_its_second_run(pools):
    pool, body, runs = pools["intake"], unmatched(), []

    def handler(cur, event):
        runs.append(event.id)
        cur.execute(INSERT_OUTBOX_ROW, {"id": uuid.uuid4()})
        return "handled"

    assert inbox.handle_event(pool, "probe", body, handler) == "handled"
    assert inbox.handle_event(pool, "probe", body, handler) is None
    assert len(runs) == 2, "the second run began before its event was known to be a duplicate"
    assert len(rows(pool, "SELECT id FROM outbox")) == 1
    assert rows(pool, "SELECT count(*) AS n FROM processed_events")[0]["n"] == 1
    assert rows(pool, "SELECT count(*) AS n FROM handler_failures")[0]["n"] == 0


def test_a_handler_that_sends_nothing_still_records_its_event_once(pools):
    pool, body = pools["intake"], unmatched()
    assert inbox.handle_event(pool, "probe", body, lambda cur, event: "nothing to write") == "nothing to write"
    assert inbox.handle_event(pool, "probe", body, lambda cur, event: "nothing to write") is None


def test_a_handlers_own_unique_violation_is_a_failure_not_a_duplicate(pools, monkeypatch):
    monkeypatch.setattr(inbox, "RETRY_PAUSE", 0.0)
    pool, taken = pools["intake"], uuid.uuid4()
    with pool.transaction() as cur:
        cur.execute(INSERT_OUTBOX_ROW, {"id": taken})

    with pytest.raises(psycopg2.errors.UniqueViolation):
        inbox.handle_event(pool, "probe", unmatched(), lambda cur, event: cur.execute(INSERT_OUTBOX_ROW, {"id": taken}))
    assert rows(pool, "SELECT attempts FROM handler_failures")[0]["attempts"] == 1
    assert rows(pool, "SELECT count(*) AS n FROM processed_events")[0]["n"] == 0
