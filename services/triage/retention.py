"""What `sanad purge` drops from triage's schema once a case has been closed longer than the retention
period (sanad/platform/retention.py), and what it keeps.

Dropped: the evidence of each assessment (the narrative's words that triggered its reasons), what the
victim asked of her helpers (her age among it), and staff's reasons for overriding a level (a sealed
empty value takes their place).
Kept for statistics: every assessment's level, score, reason codes, lexicon version and times, and every
override's levels, role and time: what evaluating the risk model needs.
"""
from sanad.contracts.sealing import override_reason_context

PERSONAL_COLUMNS = {
    ("assessments", "evidence_sealed"),
    ("assessments", "preferences_sealed"),
    ("assessments", "preferences"),  # in the clear before migration 0004
    ("overrides", "reason_sealed"),
}

BLANK_EVIDENCE = """
    UPDATE assessments SET evidence_sealed = NULL, preferences_sealed = NULL, preferences = NULL
    WHERE case_id = ANY(%(case_ids)s)
      AND (evidence_sealed IS NOT NULL OR preferences_sealed IS NOT NULL OR preferences IS NOT NULL)
"""
OVERRIDES_OF = "SELECT event_id, case_id FROM overrides WHERE case_id = ANY(%(case_ids)s)"
BLANK_OVERRIDE = "UPDATE overrides SET reason_sealed = %(reason_sealed)s WHERE event_id = %(event_id)s"


def held_open(cur, case_ids, cutoff) -> set:
    """None: triage's work on a case ends with its assessment."""
    return set()


def purge(cur, case_ids, keys, now) -> dict:
    cur.execute(BLANK_EVIDENCE, {"case_ids": list(case_ids)})
    changed = {"assessments": cur.rowcount, "overrides": 0}
    cur.execute(OVERRIDES_OF, {"case_ids": list(case_ids)})
    for row in cur.fetchall():
        cur.execute(BLANK_OVERRIDE, {"event_id": row["event_id"],
                                     "reason_sealed": keys.data.seal("", override_reason_context(row["case_id"]))})
        changed["overrides"] += cur.rowcount
    return changed
