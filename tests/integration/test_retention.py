"""`sanad purge` on cases that went through the six real processes: a case closed longer than the retention
period loses its personal data in every schema and keeps its statistics; a case with an open referral, or
a recent one, is left alone; a second run does nothing; and no sealed or hashed column of a case table
escapes the services' retention modules."""
import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from sanad import webhooks
from sanad.contracts.sealing import narrative_context
from sanad.platform.migrate import SCHEMAS
from sanad.platform.pool import Pool
from tests.integration.conftest import sanad_cli
from tests.support.api_client import api_headers
from tests.support.receiver import Receiver

pytestmark = pytest.mark.integration

OLD = "now() - interval '400 days'"
NARRATIVE = "He says he will send my photos to my family tonight unless I pay. I am thinking of ending my life."


def case(name, phone):
    return {
        "narrative": f"{NARRATIVE} ({name})",
        "channel": "phone",
        "governorate": "dhi_qar",
        "needs": ["counselling"],
        "consents": ["counselling"],
        "victim_age": 19,
        "safe_contact": {"name": name, "phone": phone, "safe_times": "mornings", "code_word": "jasmine"},
    }


def sql(database_url, schema, statement, params=None):
    pool = Pool(database_url, size=1, schema=schema)
    try:
        with pool.transaction() as cur:
            cur.execute(statement, params or {})
            return cur.fetchall() if cur.description else cur.rowcount
    finally:
        pool.close()


def purge_command(env, *args):
    sanad = Path(sys.executable).with_name("sanad")
    return subprocess.run([str(sanad), "purge", *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def cases(stack, stack_env, database_url):
    """Three delivered cases: `closed` (closed 400 days ago), `open` (received 400 days ago, its referral
    still offered) and `recent` (closed today)."""
    secret = webhooks.generate_secret()
    made = {}
    with Receiver(secret) as partner:
        sanad_cli(stack_env, "partner", "add", "--name", "Retention Test Counselling", "--service", "counselling",
                  "--governorate", "dhi_qar", "--webhook-url", partner.url, "--secret", secret)
        for label, phone in (("closed", "07701111111"), ("open", "07702222222"), ("recent", "07703333333")):
            response = requests.post(stack.url("intake") + "/api/cases", json=case(f"Caller {label}", phone),
                                     headers=api_headers(stack), timeout=30)
            assert response.status_code == 201, response.text
            made[label] = response.json()
        references = {c["reference"] for c in made.values()}
        assert partner.wait_for(lambda got: references <= {p["data"]["case_reference"] for _, _, p in got})
    ids = {label: c["id"] for label, c in made.items()}

    def delivered():
        rows = sql(database_url, "intake", "SELECT DISTINCT case_id FROM case_deliveries WHERE outcome = 'delivered'")
        return {str(r["case_id"]) for r in rows} >= set(ids.values())
    assert _eventually(delivered), "intake did not hear of every delivery"

    for label in ("closed", "recent"):
        when = OLD if label == "closed" else "now()"
        sql(database_url, "referral", f"UPDATE referrals SET status = 'completed', updated_at = {when} "
                                      "WHERE case_id = %(id)s", {"id": ids[label]})
        sql(database_url, "referral", "UPDATE ack_deadlines SET status = 'cancelled' WHERE referral_id IN "
                                      "(SELECT id FROM referrals WHERE case_id = %(id)s)", {"id": ids[label]})
    for label in ("closed", "open"):
        params = {"id": ids[label]}
        sql(database_url, "intake", f"UPDATE cases SET received_at = {OLD} WHERE id = %(id)s", params)
        sql(database_url, "intake", f"UPDATE audit_log SET at = {OLD} WHERE case_id = %(id)s", params)
        sql(database_url, "notify", f"UPDATE deliveries SET created_at = {OLD}, finished_at = {OLD} "
                                    "WHERE case_id = %(id)s", params)
        sql(database_url, "notify", "UPDATE delivery_attempts SET response_excerpt = 'thanks, we will call the caller' "
                                    "WHERE delivery_id IN (SELECT id FROM deliveries WHERE case_id = %(id)s)", params)
        sql(database_url, "triage", "INSERT INTO dead_letters (queue, reason, body) VALUES ('test', 'test', %(body)s)",
            {"body": json.dumps({"data": {"case_id": ids[label], "narrative": NARRATIVE}})})
    return ids


def _eventually(check, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def intake_case(database_url, case_id):
    return sql(database_url, "intake", "SELECT * FROM cases WHERE id = %(id)s", {"id": case_id})[0]


def test_a_dry_run_counts_the_closed_case_and_the_one_referral_holds_open_and_changes_nothing(
        stack_env, database_url, cases):
    done = purge_command(stack_env, "--dry-run", "--retention-days", "365")
    assert done.returncode == 0, done.stderr
    assert "not purged yet: 2" in done.stdout and "referral 1" in done.stdout
    assert "would purge 1 case(s)" in done.stdout
    assert intake_case(database_url, cases["closed"])["contact_phone_sealed"] is not None


def test_purge_drops_the_closed_case_s_personal_data_everywhere_and_keeps_its_statistics(
        stack, stack_env, database_url, keys, cases):
    before = {label: intake_case(database_url, case_id) for label, case_id in cases.items()}
    evidence_before = {r["case_id"]: r["evidence_sealed"] for r in sql(
        database_url, "triage", "SELECT case_id, evidence_sealed FROM assessments")}

    done = purge_command(stack_env, "--retention-days", "365")
    assert done.returncode == 0, done.stderr
    assert "purged 1 case(s)" in done.stdout

    closed = intake_case(database_url, cases["closed"])
    assert keys.data.open(closed["narrative_sealed"], narrative_context(cases["closed"])) == ""
    for column in ("contact_name_sealed", "contact_phone_sealed", "contact_phone_hash", "contact_safe_times_sealed",
                   "contact_code_word_sealed", "risk_evidence_sealed", "victim_age_sealed", "victim_age"):
        assert closed[column] is None, column
    for column in ("reference", "received_at", "channel", "governorate", "needs", "consents", "risk_level",
                   "risk_score", "risk_reasons", "victim_age_band"):
        assert closed[column] == before["closed"][column], column

    for label in ("open", "recent"):
        kept = intake_case(database_url, cases[label])
        assert keys.data.open(kept["narrative_sealed"], narrative_context(cases[label])).startswith(NARRATIVE)
        assert kept["contact_phone_sealed"] == before[label]["contact_phone_sealed"]
        assert kept["victim_age_sealed"] == before[label]["victim_age_sealed"] and kept["victim_age_sealed"]

    evidence = {r["case_id"]: r["evidence_sealed"] for r in sql(
        database_url, "triage", "SELECT case_id, evidence_sealed FROM assessments")}
    assert evidence[uuid.UUID(cases["closed"])] is None
    assert evidence[uuid.UUID(cases["open"])] == evidence_before[uuid.UUID(cases["open"])]
    for schema, table in (("triage", "assessments"), ("referral", "cases")):
        asked = {r["case_id"]: r["preferences_sealed"] for r in sql(
            database_url, schema, f"SELECT case_id, preferences_sealed FROM {table}")}
        assert asked[uuid.UUID(cases["closed"])] is None, f"{schema}: what the victim asked is dropped"
        assert asked[uuid.UUID(cases["open"])] is not None, f"{schema}: and kept for a case still open"

    excerpts = {str(r["case_id"]): r["response_excerpt"] for r in sql(
        database_url, "notify", "SELECT d.case_id, a.response_excerpt FROM delivery_attempts a "
                                "JOIN deliveries d ON d.id = a.delivery_id")}
    assert excerpts[cases["closed"]] is None and excerpts[cases["open"]] is not None
    letters = {r["body"]["data"]["case_id"] if r["body"] else None for r in sql(
        database_url, "triage", "SELECT body FROM dead_letters WHERE queue = 'test'")}
    assert letters == {None, cases["open"]}

    for schema in SCHEMAS:
        purged = {str(r["case_id"]) for r in sql(database_url, schema, "SELECT case_id FROM purged_cases")}
        assert purged == {cases["closed"]}, schema

    # The purged case still opens for staff: its statistics, without anything personal.
    response = requests.get(f"{stack.url('intake')}/api/cases/{cases['closed']}", headers=api_headers(stack),
                            timeout=10)
    assert response.status_code == 200, response.text
    assert "Caller closed" not in response.text and "07701111111" not in response.text


def test_a_second_purge_finds_nothing_more_to_do(stack_env, cases):
    first = purge_command(stack_env, "--retention-days", "365")
    assert first.returncode == 0, first.stderr
    assert "purged 0 case(s)" in first.stdout


def test_a_retention_period_under_thirty_days_is_refused(stack_env, database_url, cases):
    done = purge_command(stack_env, "--retention-days", "7")
    assert done.returncode == 2 and "retention-days" in done.stderr
    assert intake_case(database_url, cases["recent"])["contact_phone_sealed"] is not None


def test_every_sealed_or_hashed_column_of_a_case_table_is_purged_by_its_service(database_url):
    for schema in SCHEMAS:
        module = importlib.import_module(f"services.{schema}.retention")
        columns = sql(database_url, schema, """
            SELECT table_name, column_name FROM information_schema.columns c
            WHERE table_schema = %(schema)s
              AND (table_name = 'cases' OR EXISTS (
                    SELECT 1 FROM information_schema.columns k
                    WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name AND k.column_name = 'case_id'))
        """, {"schema": schema})
        of_cases = {(r["table_name"], r["column_name"]) for r in columns}
        sealed = {(t, c) for t, c in of_cases if c.endswith(("_sealed", "_hash", "_fingerprint"))}
        assert sealed <= module.PERSONAL_COLUMNS, f"{schema}: not purged: {sorted(sealed - module.PERSONAL_COLUMNS)}"
        every = {(r["table_name"], r["column_name"]) for r in sql(
            database_url, schema, "SELECT table_name, column_name FROM information_schema.columns "
                                  "WHERE table_schema = %(schema)s", {"schema": schema})}
        assert module.PERSONAL_COLUMNS <= every, f"{schema}: no such column: {module.PERSONAL_COLUMNS - every}"
