"""Which cases referral still holds open, and what `sanad purge` drops from its schema once a case has
been closed longer than the retention period (sanad/platform/retention.py).

A case is closed for referral when none of its referrals is open (offered, accepted, in progress), no
acknowledgement deadline of it is pending, and nothing about it changed after the cut-off. An offer that
no partner ever answered stays open, and so does its case, until someone closes it: purging a case a
person may still be working on is the worse mistake.
Dropped: supervisors' free-text notes in the audit log, and what the victim asked of her helpers (her
age among it). Kept: the referrals, their statuses and codes, deadlines, escalations and the audit trail,
none of which holds personal data.
"""
from services.referral.lifecycle import OPEN

PERSONAL_COLUMNS = {
    ("audit_log", "note_sealed"),
    ("cases", "preferences_sealed"),
    ("cases", "preferences"),  # in the clear before migration 0006
}

HELD_OPEN = """
    SELECT r.case_id FROM referrals r
    WHERE r.case_id = ANY(%(case_ids)s) AND (r.status = ANY(%(open)s) OR r.updated_at >= %(cutoff)s)
    UNION
    SELECT r.case_id FROM ack_deadlines d JOIN referrals r ON r.id = d.referral_id
    WHERE r.case_id = ANY(%(case_ids)s) AND d.status = 'pending'
    UNION
    SELECT e.case_id FROM escalations e
    WHERE e.case_id = ANY(%(case_ids)s) AND e.escalated_at >= %(cutoff)s
"""
BLANK_NOTES = """
    UPDATE audit_log SET note_sealed = NULL WHERE case_id = ANY(%(case_ids)s) AND note_sealed IS NOT NULL
"""


def held_open(cur, case_ids, cutoff) -> set:
    cur.execute(HELD_OPEN, {"case_ids": list(case_ids), "open": list(OPEN), "cutoff": cutoff})
    return {row["case_id"] for row in cur.fetchall()}


BLANK_PREFERENCES = """
    UPDATE cases SET preferences_sealed = NULL, preferences = NULL
    WHERE case_id = ANY(%(case_ids)s) AND (preferences_sealed IS NOT NULL OR preferences IS NOT NULL)
"""


def purge(cur, case_ids, keys, now) -> dict:
    cur.execute(BLANK_NOTES, {"case_ids": list(case_ids)})
    changed = {"audit_log": cur.rowcount}
    cur.execute(BLANK_PREFERENCES, {"case_ids": list(case_ids)})
    return changed | {"cases": cur.rowcount}
