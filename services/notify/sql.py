"""Every query notify runs, against its own schema."""

INSERT_ENDPOINT = """
    INSERT INTO endpoints (partner_id, url, secret_sealed) VALUES (%(partner_id)s, %(url)s, %(secret_sealed)s)
"""
INSERT_DELIVERY = """
    INSERT INTO deliveries (id, webhook_id, referral_id, case_id, partner_id, lane, payload, next_attempt_at,
                            created_at)
    VALUES (%(id)s, %(webhook_id)s, %(referral_id)s, %(case_id)s, %(partner_id)s, %(lane)s, %(payload)s,
            %(now)s, %(now)s)
    ON CONFLICT (referral_id) DO NOTHING
    RETURNING id
"""

# A claim is a lease: the attempt that holds it may run outside any transaction, and if its process dies
# the lease runs out and another worker takes the delivery up, under the same webhook-id.
_CLAIMED = """
    UPDATE deliveries d SET lease_until = %(now)s + make_interval(secs => %(lease)s), attempts = d.attempts + 1
    FROM endpoints e
    WHERE d.id IN ({due}) AND e.partner_id = d.partner_id
    RETURNING d.id, d.webhook_id, d.referral_id, d.case_id, d.partner_id, d.payload, d.attempts,
              e.url, e.secret_sealed, e.enabled
"""
_DUE = """
    SELECT id FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= %(now)s AND (lease_until IS NULL OR lease_until < %(now)s)
"""
CLAIM_BY_ID = _CLAIMED.format(due=_DUE + " AND id = %(id)s FOR UPDATE SKIP LOCKED")
CLAIM_DUE = _CLAIMED.format(due=_DUE + " AND lane = %(lane)s ORDER BY next_attempt_at LIMIT %(limit)s "
                                       "FOR UPDATE SKIP LOCKED")

INSERT_ATTEMPT = """
    INSERT INTO delivery_attempts (delivery_id, attempt, attempted_at, outcome, status_code, error, latency_ms,
                                   response_excerpt)
    VALUES (%(delivery_id)s, %(attempt)s, %(attempted_at)s, %(outcome)s, %(status_code)s, %(error)s,
            %(latency_ms)s, %(response_excerpt)s)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
"""
FINISH_ATTEMPT = """
    UPDATE deliveries
    SET status = %(status)s, next_attempt_at = coalesce(%(next_attempt_at)s, next_attempt_at),
        lease_until = NULL, finished_at = CASE WHEN %(status)s = 'pending' THEN NULL ELSE %(attempted_at)s END
    WHERE id = %(delivery_id)s AND attempts = %(attempt)s
    RETURNING id
"""
