"""What `sanad purge` drops from intake's schema once a case has been closed longer than the retention
period (sanad/platform/retention.py), and what it keeps.

Dropped: the narrative (a sealed empty value takes its place, so the case still opens), the safe contact
(name, phone, the phone's lookup hash, safe times, code word), the risk evidence (words quoted from the
narrative), the exact age (the age band stays), the idempotency key (a client may put anything in it) and
the keyed hash of the body it came with, and staff's reasons for overriding the risk level (sealed empty).
Kept for statistics: the reference, dates, channel, governorate and district, caller relation, age band,
gender, extortion types, platforms, perpetrator kind, demands, needs and consents, risk level, score and
reason codes, the referrals, statuses, escalations and deliveries intake heard of, and the audit log
(codes and ids only).
"""
from sanad.contracts.sealing import narrative_context, override_reason_context

# Every personal column of a case in this schema; tests/integration/test_retention.py checks that no
# sealed or hashed column of a case table is missing here.
PERSONAL_COLUMNS = {
    ("cases", "narrative_sealed"),
    ("cases", "risk_evidence_sealed"),
    ("cases", "contact_name_sealed"),
    ("cases", "contact_phone_sealed"),
    ("cases", "contact_phone_hash"),
    ("cases", "contact_safe_times_sealed"),
    ("cases", "contact_code_word_sealed"),
    ("cases", "victim_age_sealed"),
    ("cases", "victim_age"),  # in the clear before migration 0006
    ("cases", "idempotency_key"),
    ("cases", "idempotency_fingerprint"),
    ("case_overrides", "reason_sealed"),
}

# Received before the cut-off, not purged yet, and nobody on staff has read or changed it since. A refused
# request is no one at work on the case: counted, anyone who learned a case's id (from an old link or a
# browser's history) could keep it from ever being purged, without so much as logging in.
REFUSED_ACTIONS = ("access_refused", "case_read_denied", "case_change_refused")
CANDIDATES = """
    SELECT c.id FROM cases c
    WHERE c.received_at < %(cutoff)s
      AND NOT EXISTS (SELECT 1 FROM purged_cases p WHERE p.case_id = c.id)
      AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.case_id = c.id AND a.at >= %(cutoff)s
                      AND a.action <> ALL(%(refused)s))
    ORDER BY c.received_at, c.id
"""
BLANK_CASE = """
    UPDATE cases
    SET narrative_sealed = %(narrative_sealed)s, risk_evidence_sealed = NULL, contact_name_sealed = NULL,
        contact_phone_sealed = NULL, contact_phone_hash = NULL, contact_safe_times_sealed = NULL,
        contact_code_word_sealed = NULL, victim_age_sealed = NULL, victim_age = NULL, idempotency_key = NULL,
        idempotency_fingerprint = NULL
    WHERE id = %(case_id)s
"""
OVERRIDES_OF = "SELECT id, case_id FROM case_overrides WHERE case_id = ANY(%(case_ids)s)"
BLANK_OVERRIDE = "UPDATE case_overrides SET reason_sealed = %(reason_sealed)s WHERE id = %(id)s"


def candidates(cur, cutoff) -> list:
    cur.execute(CANDIDATES, {"cutoff": cutoff, "refused": list(REFUSED_ACTIONS)})
    return [row["id"] for row in cur.fetchall()]


def held_open(cur, case_ids, cutoff) -> set:
    """None: candidates() already leaves out the cases staff touched after the cut-off."""
    return set()


def purge(cur, case_ids, keys, now) -> dict:
    changed = {"cases": 0, "case_overrides": 0}
    for case_id in case_ids:
        cur.execute(BLANK_CASE, {"case_id": case_id, "narrative_sealed": keys.data.seal("", narrative_context(case_id))})
        changed["cases"] += cur.rowcount
    cur.execute(OVERRIDES_OF, {"case_ids": list(case_ids)})
    for row in cur.fetchall():
        cur.execute(BLANK_OVERRIDE, {"id": row["id"],
                                     "reason_sealed": keys.data.seal("", override_reason_context(row["case_id"]))})
        changed["case_overrides"] += cur.rowcount
    return changed
