"""`sanad purge`: drop the personal data of cases closed longer than the retention period, keep what
statistics need.

Each service says what that means in its own schema, in services/<service>/retention.py:
- `held_open(cur, case_ids, cutoff)`: the cases among `case_ids` it is still working on, or touched after
  `cutoff` (referral: an open referral or a pending deadline; notify: a webhook still being retried);
- `purge(cur, case_ids, keys, now)`: blank the personal columns of those cases and return how many rows
  changed, by table. A NOT NULL sealed column gets a sealed empty value, so the code that opens it, and
  `sanad keys reseal`, keep working on a purged case.
intake also offers `candidates(cur, cutoff)`: cases received before the cut-off, not purged yet, and
untouched by staff since. The platform tables of every schema (dead letters, sent outbox rows) are purged
here, and each schema records the cases it purged in `purged_cases`.
"""
from dataclasses import dataclass, field

BATCH = 500

# intake last: its purged_cases row is what makes the next run skip a case, so a run interrupted half
# way through purges the same case again, completely, next time.
PURGE_ORDER = ("notify", "referral", "triage", "intake")

DEAD_LETTER_BODIES = """
    UPDATE dead_letters SET body = NULL
    WHERE body IS NOT NULL AND body -> 'data' ->> 'case_id' = ANY(%(case_texts)s)
"""
SENT_OUTBOX = "DELETE FROM outbox WHERE sent_at IS NOT NULL AND body -> 'data' ->> 'case_id' = ANY(%(case_texts)s)"
RECORD_PURGED = """
    INSERT INTO purged_cases (case_id, purged_at)
    SELECT unnest(%(case_ids)s::uuid[]), %(now)s
    ON CONFLICT (case_id) DO NOTHING
"""


def purge_platform_tables(cur, case_ids, now) -> dict:
    params = {"case_ids": list(case_ids), "case_texts": [str(c) for c in case_ids], "now": now}
    changed = {}
    cur.execute(DEAD_LETTER_BODIES, params)
    changed["dead_letters"] = cur.rowcount
    cur.execute(SENT_OUTBOX, params)
    changed["outbox"] = cur.rowcount
    cur.execute(RECORD_PURGED, params)
    changed["purged_cases"] = cur.rowcount
    return changed


@dataclass
class PurgeReport:
    candidates: int = 0
    held_open: dict = field(default_factory=dict)  # service -> cases it holds back
    purged: int = 0
    changed: dict = field(default_factory=dict)    # "service.table" -> rows changed


def purge_closed_cases(pools, modules, keys, cutoff, now, dry_run=False, batch=BATCH) -> PurgeReport:
    """Purge every case received before `cutoff` that no service holds open. `pools` and `modules` map
    each service to its schema's pool and its retention module."""
    report = PurgeReport()
    with pools["intake"].transaction() as cur:
        candidates = modules["intake"].candidates(cur, cutoff)
    report.candidates = len(candidates)
    held = set()
    for service, module in modules.items():
        with pools[service].transaction() as cur:
            held_here = set(module.held_open(cur, candidates, cutoff))
        report.held_open[service] = len(held_here)
        held |= held_here
    eligible = [case_id for case_id in candidates if case_id not in held]
    if dry_run:
        report.purged = len(eligible)
        return report
    for start in range(0, len(eligible), batch):
        chunk = eligible[start:start + batch]
        for service in PURGE_ORDER:
            with pools[service].transaction() as cur:
                changed = modules[service].purge(cur, chunk, keys, now)
                changed.update(purge_platform_tables(cur, chunk, now))
            for table, rows in changed.items():
                key = f"{service}.{table}"
                report.changed[key] = report.changed.get(key, 0) + rows
        report.purged += len(chunk)
    return report
