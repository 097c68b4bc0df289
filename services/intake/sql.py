"""Every query intake runs, against its own schema."""

INSERT_CASE = """
    INSERT INTO cases (id, reference, idempotency_key, received_at, channel, governorate, needs, consents,
                       victim_age, material_published, deadline_hours, suicidal_thoughts, threat_of_violence,
                       narrative_sealed)
    VALUES (%(id)s, %(reference)s, %(idempotency_key)s, %(received_at)s, %(channel)s, %(governorate)s,
            %(needs)s, %(consents)s, %(victim_age)s, %(material_published)s, %(deadline_hours)s,
            %(suicidal_thoughts)s, %(threat_of_violence)s, %(narrative_sealed)s)
    ON CONFLICT DO NOTHING
    RETURNING id
"""
CASE_BY_IDEMPOTENCY_KEY = "SELECT id, reference FROM cases WHERE idempotency_key = %(key)s"

CASE_BY_ID = """
    SELECT id, reference, received_at, channel, governorate, needs, consents, risk_level, risk_score,
           risk_reasons, lexicon_version, triaged_at, unmatched_services
    FROM cases WHERE id = %(id)s
"""
REFERRALS_OF_CASE = """
    SELECT id, partner_id, partner_name, service, level, created_at
    FROM case_referrals WHERE case_id = %(case_id)s ORDER BY created_at, id
"""
DELIVERIES_OF_CASE = """
    SELECT delivery_id, referral_id, attempt, webhook_id, outcome, status_code, latency_ms, attempted_at,
           next_attempt_at
    FROM case_deliveries WHERE case_id = %(case_id)s ORDER BY attempted_at, attempt
"""

# Status updates: a later assessment replaces an earlier one, never the reverse.
RECORD_TRIAGE = """
    UPDATE cases SET risk_level = %(level)s, risk_score = %(score)s, risk_reasons = %(reasons)s,
                     risk_evidence_sealed = %(evidence_sealed)s, lexicon_version = %(lexicon_version)s,
                     triaged_at = %(triaged_at)s
    WHERE id = %(case_id)s AND (triaged_at IS NULL OR triaged_at <= %(triaged_at)s)
"""
RECORD_UNMATCHED = """
    UPDATE cases SET unmatched_services = %(services)s WHERE id = %(case_id)s
"""
RECORD_REFERRAL = """
    INSERT INTO case_referrals (id, case_id, partner_id, partner_name, service, level, created_at)
    VALUES (%(referral_id)s, %(case_id)s, %(partner_id)s, %(partner_name)s, %(service)s, %(level)s, %(created_at)s)
    ON CONFLICT (id) DO NOTHING
"""
RECORD_DELIVERY_ATTEMPT = """
    INSERT INTO case_deliveries (delivery_id, attempt, referral_id, case_id, webhook_id, outcome, status_code,
                                 latency_ms, attempted_at, next_attempt_at)
    VALUES (%(delivery_id)s, %(attempt)s, %(referral_id)s, %(case_id)s, %(webhook_id)s, %(outcome)s,
            %(status_code)s, %(latency_ms)s, %(attempted_at)s, %(next_attempt_at)s)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
"""

INSERT_USER = """
    INSERT INTO users (id, username, display_name, role, password_hash)
    VALUES (%(id)s, %(username)s, %(display_name)s, %(role)s, %(password_hash)s)
"""
