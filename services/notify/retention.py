"""Which cases notify still holds open, and what `sanad purge` drops from its schema once a case has been
closed longer than the retention period (sanad/platform/retention.py).

A case is still open for notify while a webhook about it is being retried, or was created or finished
after the cut-off.
Dropped: what a partner was shown beyond the minimum (consented fields and safe-contact instructions in
the payload) and the first bytes of partners' answers, which may quote anything.
Kept: every delivery and attempt with its outcome, status code, latency and times, and the minimal payload
(reference, risk level, service, governorate): what delivery statistics need.
"""

PERSONAL_COLUMNS = {
    ("deliveries", "payload"),
    ("delivery_attempts", "response_excerpt"),
}

HELD_OPEN = """
    SELECT DISTINCT case_id FROM deliveries
    WHERE case_id = ANY(%(case_ids)s)
      AND (status = 'pending' OR created_at >= %(cutoff)s OR finished_at >= %(cutoff)s)
"""
TRIM_PAYLOADS = """
    UPDATE deliveries SET payload = payload #- '{data,consented_to_share}' #- '{data,safe_contact}'
    WHERE case_id = ANY(%(case_ids)s)
      AND (payload -> 'data' ? 'consented_to_share' OR payload -> 'data' ? 'safe_contact')
"""
BLANK_EXCERPTS = """
    UPDATE delivery_attempts a SET response_excerpt = NULL
    FROM deliveries d
    WHERE d.id = a.delivery_id AND d.case_id = ANY(%(case_ids)s) AND a.response_excerpt IS NOT NULL
"""


def held_open(cur, case_ids, cutoff) -> set:
    cur.execute(HELD_OPEN, {"case_ids": list(case_ids), "cutoff": cutoff})
    return {row["case_id"] for row in cur.fetchall()}


def purge(cur, case_ids, keys, now) -> dict:
    params = {"case_ids": list(case_ids)}
    cur.execute(TRIM_PAYLOADS, params)
    changed = {"deliveries": cur.rowcount}
    cur.execute(BLANK_EXCERPTS, params)
    changed["delivery_attempts"] = cur.rowcount
    return changed
