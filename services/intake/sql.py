"""Every query intake runs, against its own schema."""
from sanad.platform.pool import Prepared

# Cases ----------------------------------------------------------------------------------------------

INSERT_CASE = Prepared("""
    INSERT INTO cases (id, reference, idempotency_key, idempotency_fingerprint, received_at, channel, governorate,
                       needs, consents, victim_age_sealed, material_published, deadline_hours, suicidal_thoughts,
                       threat_of_violence, narrative_sealed, recorded_by, assigned_to, caller_relation,
                       victim_age_band, victim_gender, district, extortion_types, platforms, perpetrator, demands,
                       demand_amount, demand_currency, deadline_at, published_on, family_contact_allowed,
                       tribe_contact_allowed, anonymous, contact_name_sealed, contact_phone_sealed,
                       contact_phone_hash, contact_safe_times_sealed, contact_code_word_sealed, no_messages)
    VALUES (%(id)s, %(reference)s, %(idempotency_key)s, %(idempotency_fingerprint)s, %(received_at)s, %(channel)s,
            %(governorate)s, %(needs)s, %(consents)s, %(victim_age_sealed)s, %(material_published)s,
            %(deadline_hours)s, %(suicidal_thoughts)s, %(threat_of_violence)s, %(narrative_sealed)s,
            %(recorded_by)s, %(assigned_to)s, %(caller_relation)s, %(victim_age_band)s, %(victim_gender)s,
            %(district)s, %(extortion_types)s, %(platforms)s, %(perpetrator)s, %(demands)s, %(demand_amount)s,
            %(demand_currency)s, %(deadline_at)s, %(published_on)s, %(family_contact_allowed)s,
            %(tribe_contact_allowed)s, %(anonymous)s, %(contact_name_sealed)s, %(contact_phone_sealed)s,
            %(contact_phone_hash)s, %(contact_safe_times_sealed)s, %(contact_code_word_sealed)s, %(no_messages)s)
""")

# What a case's unique columns are called when an insert fails on them (services/intake/handlers.py).
# An Idempotency-Key is unique per account that recorded the case (migration 0005).
CASE_KEYS = {"cases_idempotency_key_per_caller": "idempotency_key", "cases_reference_key": "reference"}
CASE_BY_IDEMPOTENCY_KEY = """
    SELECT id, reference, idempotency_fingerprint FROM cases
    WHERE recorded_by = %(caller)s AND idempotency_key = %(key)s
"""

# Which cases each role sees (see permissions.py). %(viewer)s is the account, %(partner)s its partner. A
# counsellor sees a case while a referral of it to their partner is offered or taken up (a referral with
# no status recorded yet is offered), not once the partner declined it or Sanad withdrew it.
VISIBILITY = {
    "operator": "(c.recorded_by = %(viewer)s OR c.assigned_to = %(viewer)s OR c.assigned_to IS NULL)",
    "counsellor": "EXISTS (SELECT 1 FROM case_referrals r LEFT JOIN case_referral_statuses s ON s.referral_id = r.id"
                  " WHERE r.case_id = c.id AND r.partner_id = %(partner)s"
                  " AND coalesce(s.status, 'offered') NOT IN ('declined', 'withdrawn'))",
    "supervisor": "TRUE",
}


def visibility(role) -> str:
    """The predicate on `cases c` for a role; a role that sees no case gets FALSE."""
    return VISIBILITY.get(role, "FALSE")


CASE_EXISTS = "SELECT id FROM cases WHERE id = %(id)s"
CASE_VISIBLE = "SELECT c.id FROM cases c WHERE c.id = %(id)s AND {visibility}"

CASE_BY_ID = """
    SELECT c.*, recorder.display_name AS recorded_by_name, holder.display_name AS assigned_to_name
    FROM cases c
    LEFT JOIN users recorder ON recorder.id = c.recorded_by
    LEFT JOIN users holder ON holder.id = c.assigned_to
    WHERE c.id = %(id)s
"""
CASE_FOR_UPDATE = """
    SELECT id, reference, risk_level, assigned_to,
           EXISTS (SELECT 1 FROM purged_cases p WHERE p.case_id = cases.id) AS purged
    FROM cases WHERE id = %(id)s FOR UPDATE
"""

QUEUE = """
    SELECT c.id, c.reference, c.received_at, c.channel, c.governorate, c.district, c.needs, c.consents,
           c.risk_level, c.risk_score, c.triaged_at, c.unmatched_services, c.assigned_to,
           holder.display_name AS assigned_to_name,
           (SELECT count(*) FROM case_referrals r WHERE r.case_id = c.id) AS referral_count,
           EXISTS (SELECT 1 FROM case_deliveries d WHERE d.case_id = c.id AND d.outcome = 'delivered') AS delivered
    FROM cases c LEFT JOIN users holder ON holder.id = c.assigned_to
    WHERE {visibility}
    ORDER BY CASE c.risk_level WHEN 'critical' THEN 0 WHEN 'high' THEN 1 WHEN 'medium' THEN 3
                               WHEN 'low' THEN 4 ELSE 2 END,
             c.received_at, c.id
    LIMIT %(limit)s
"""

# Every other case of the phone, and whether the viewer may see each (only those are named).
OTHER_CASES_WITH_PHONE = """
    SELECT c.id, c.reference, {visibility} AS visible FROM cases c
    WHERE c.contact_phone_hash = %(phone_hash)s AND c.id <> %(id)s
    ORDER BY c.received_at
"""

REFERRALS_OF_CASE = """
    SELECT r.id, r.partner_id, r.partner_name, r.service, r.level, r.created_at,
           s.status, s.note_code, s.changed_at AS status_changed_at, s.changed_by AS status_changed_by
    FROM case_referrals r LEFT JOIN case_referral_statuses s ON s.referral_id = r.id
    WHERE r.case_id = %(case_id)s ORDER BY r.created_at, r.id
"""
DELIVERIES_OF_CASE = """
    SELECT delivery_id, referral_id, attempt, webhook_id, outcome, status_code, latency_ms, attempted_at,
           next_attempt_at
    FROM case_deliveries WHERE case_id = %(case_id)s ORDER BY attempted_at, attempt
"""
ESCALATIONS_OF_CASE = """
    SELECT referral_id, service, reason, step, reoffered_to, escalated_at
    FROM case_escalations WHERE case_id = %(case_id)s ORDER BY escalated_at, id
"""
OVERRIDES_OF_CASE = """
    SELECT o.id, o.previous_level, o.level, o.reason_sealed, o.overridden_by, u.display_name AS overridden_by_name,
           o.role, o.overridden_at
    FROM case_overrides o LEFT JOIN users u ON u.id = o.overridden_by
    WHERE o.case_id = %(case_id)s ORDER BY o.overridden_at, o.id
"""

INSERT_OVERRIDE = """
    INSERT INTO case_overrides (id, case_id, previous_level, level, reason_sealed, overridden_by, role, overridden_at)
    VALUES (%(id)s, %(case_id)s, %(previous_level)s, %(level)s, %(reason_sealed)s, %(overridden_by)s, %(role)s,
            %(overridden_at)s)
"""
SET_RISK_LEVEL = "UPDATE cases SET risk_level = %(level)s WHERE id = %(id)s"
SET_ASSIGNEE = "UPDATE cases SET assigned_to = %(assignee)s WHERE id = %(id)s"

# Status updates heard from other services: a later assessment replaces an earlier one, never the reverse.
RECORD_TRIAGE = Prepared("""
    UPDATE cases SET risk_level = %(level)s, risk_score = %(score)s, risk_reasons = %(reasons)s,
                     risk_evidence_sealed = %(evidence_sealed)s, lexicon_version = %(lexicon_version)s,
                     triaged_at = %(triaged_at)s
    WHERE id = %(case_id)s AND (triaged_at IS NULL OR triaged_at <= %(triaged_at)s)
""")
RECORD_UNMATCHED = """
    UPDATE cases SET unmatched_services = %(services)s WHERE id = %(case_id)s
"""
RECORD_REFERRAL = Prepared("""
    INSERT INTO case_referrals (id, case_id, partner_id, partner_name, service, level, created_at)
    VALUES (%(referral_id)s, %(case_id)s, %(partner_id)s, %(partner_name)s, %(service)s, %(level)s, %(created_at)s)
    ON CONFLICT (id) DO NOTHING
""")
RECORD_DELIVERY_ATTEMPT = Prepared("""
    INSERT INTO case_deliveries (delivery_id, attempt, referral_id, case_id, webhook_id, outcome, status_code,
                                 latency_ms, attempted_at, next_attempt_at)
    VALUES (%(delivery_id)s, %(attempt)s, %(referral_id)s, %(case_id)s, %(webhook_id)s, %(outcome)s,
            %(status_code)s, %(latency_ms)s, %(attempted_at)s, %(next_attempt_at)s)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
""")
RECORD_REFERRAL_STATUS = """
    INSERT INTO case_referral_statuses (referral_id, case_id, status, previous_status, note_code, changed_by,
                                        changed_at)
    VALUES (%(referral_id)s, %(case_id)s, %(status)s, %(previous_status)s, %(note_code)s, %(changed_by)s,
            %(changed_at)s)
    ON CONFLICT (referral_id) DO UPDATE
    SET status = EXCLUDED.status, previous_status = EXCLUDED.previous_status, note_code = EXCLUDED.note_code,
        changed_by = EXCLUDED.changed_by, changed_at = EXCLUDED.changed_at
    WHERE case_referral_statuses.changed_at <= EXCLUDED.changed_at
"""
RECORD_ESCALATION = """
    INSERT INTO case_escalations (case_id, referral_id, service, reason, step, reoffered_to, escalated_at)
    VALUES (%(case_id)s, %(referral_id)s, %(service)s, %(reason)s, %(step)s, %(reoffered_to)s, %(escalated_at)s)
"""

# Audit ----------------------------------------------------------------------------------------------

INSERT_AUDIT = Prepared("""
    INSERT INTO audit_log (at, actor_id, actor_role, via, action, case_id, detail, ip)
    VALUES (%(at)s, %(actor_id)s, %(actor_role)s, %(via)s, %(action)s, %(case_id)s, %(detail)s, %(ip)s)
""")
AUDIT_OF_CASE = """
    SELECT a.at, a.actor_id, u.username AS actor_username, u.display_name AS actor_name, a.actor_role, a.via,
           a.action, a.detail, a.ip
    FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id
    WHERE a.case_id = %(case_id)s ORDER BY a.at, a.id
"""

# Accounts, sessions and tokens -------------------------------------------------------------------------

INSERT_USER = """
    INSERT INTO users (id, username, display_name, role, password_hash, partner_id)
    VALUES (%(id)s, %(username)s, %(display_name)s, %(role)s, %(password_hash)s, %(partner_id)s)
"""
USER_BY_USERNAME = """
    SELECT id, username, display_name, role, partner_id, password_hash, active FROM users WHERE username = %(username)s
"""
USER_BY_ID = "SELECT id, username, display_name, role, partner_id, active FROM users WHERE id = %(id)s"
ALL_USERS = """
    SELECT id, username, display_name, role, partner_id, active, created_at FROM users ORDER BY username
"""
SET_USER_ACTIVE = "UPDATE users SET active = %(active)s WHERE id = %(id)s RETURNING id"
END_SESSIONS_OF_USER = "DELETE FROM sessions WHERE user_id = %(id)s"
SET_PASSWORD_HASH = "UPDATE users SET password_hash = %(password_hash)s WHERE id = %(id)s"
DRAFT_KEY_OF_USER = "SELECT draft_key_sealed FROM users WHERE id = %(id)s FOR UPDATE"
SET_DRAFT_KEY = "UPDATE users SET draft_key_sealed = %(draft_key_sealed)s WHERE id = %(id)s"

INSERT_SESSION = """
    INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, last_seen_at, expires_at, ip)
    VALUES (%(token_hash)s, %(user_id)s, %(csrf_token)s, %(now)s, %(now)s, %(expires_at)s, %(ip)s)
"""
SESSION_USER = """
    SELECT u.id, u.username, u.display_name, u.role, u.partner_id, s.csrf_token
    FROM sessions s JOIN users u ON u.id = s.user_id
    WHERE s.token_hash = %(token_hash)s AND u.active AND s.expires_at > %(now)s AND s.last_seen_at > %(idle_since)s
"""
TOUCH_SESSION = "UPDATE sessions SET last_seen_at = %(now)s WHERE token_hash = %(token_hash)s"
DELETE_SESSION = "DELETE FROM sessions WHERE token_hash = %(token_hash)s"
PURGE_SESSIONS = "DELETE FROM sessions WHERE expires_at < %(now)s"

INSERT_TOKEN = """
    INSERT INTO api_tokens (id, token_hash, user_id, label, created_at, expires_at)
    VALUES (%(id)s, %(token_hash)s, %(user_id)s, %(label)s, %(now)s, %(expires_at)s)
"""
TOKEN_USER = Prepared("""
    SELECT u.id, u.username, u.display_name, u.role, u.partner_id
    FROM api_tokens t JOIN users u ON u.id = t.user_id
    WHERE t.token_hash = %(token_hash)s AND u.active AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > %(now)s)
""")
REVOKE_TOKEN = "UPDATE api_tokens SET revoked_at = %(now)s WHERE id = %(id)s AND revoked_at IS NULL RETURNING id"
REVOKE_TOKENS_OF_USER = "UPDATE api_tokens SET revoked_at = %(now)s WHERE user_id = %(id)s AND revoked_at IS NULL"
# The cases a deactivated account held go back to the open queue, where every operator sees them.
RELEASE_CASES_OF_USER = "UPDATE cases SET assigned_to = NULL WHERE assigned_to = %(id)s RETURNING id"

# One login attempt per name at a time, held to the attempt's COMMIT: concurrent guesses cannot all read
# the failures before any of them is recorded. Tried, not waited for: a wait would hold a connection.
CLAIM_LOGIN_NAME = "SELECT pg_try_advisory_xact_lock(hashtextextended(%(username_hash)s, 0)) AS claimed"
COUNT_LOGIN_FAILURES = """
    SELECT (SELECT count(*) FROM login_failures WHERE username_hash = %(username_hash)s AND failed_at > %(since)s)
               AS by_name,
           (SELECT count(*) FROM login_failures WHERE ip = %(ip)s AND failed_at > %(since)s) AS by_address
"""
RECORD_LOGIN_FAILURE = """
    INSERT INTO login_failures (username_hash, ip, failed_at) VALUES (%(username_hash)s, %(ip)s, %(at)s)
"""
CLEAR_LOGIN_FAILURES = "DELETE FROM login_failures WHERE username_hash = %(username_hash)s"

# Key rotation ------------------------------------------------------------------------------------------

# `victim_age` is what a case recorded before migration 0006 kept in the clear: reseal seals it.
CASES_TO_RESEAL = """
    SELECT id, narrative_sealed, contact_name_sealed, contact_phone_sealed, contact_safe_times_sealed,
           contact_code_word_sealed, risk_evidence_sealed, victim_age_sealed, victim_age
    FROM cases WHERE id > %(after)s ORDER BY id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_CASE_SEALS = """
    UPDATE cases SET narrative_sealed = %(narrative_sealed)s, contact_name_sealed = %(contact_name_sealed)s,
                     contact_phone_sealed = %(contact_phone_sealed)s,
                     contact_safe_times_sealed = %(contact_safe_times_sealed)s,
                     contact_code_word_sealed = %(contact_code_word_sealed)s,
                     risk_evidence_sealed = %(risk_evidence_sealed)s, victim_age_sealed = %(victim_age_sealed)s,
                     victim_age = NULL
    WHERE id = %(id)s
"""
OVERRIDES_TO_RESEAL = """
    SELECT id, case_id, reason_sealed FROM case_overrides WHERE id > %(after)s ORDER BY id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_OVERRIDE_SEAL = "UPDATE case_overrides SET reason_sealed = %(reason_sealed)s WHERE id = %(id)s"
USERS_TO_RESEAL = """
    SELECT id, draft_key_sealed FROM users WHERE draft_key_sealed IS NOT NULL AND id > %(after)s
    ORDER BY id LIMIT %(limit)s FOR UPDATE
"""

# Time to each stage (issue 9): what intake knew of the case before the event it is handling.
ANSWERED_STATUSES = ("accepted", "declined", "in_progress", "completed", "closed")
# The stages a batch's cases had reached. Its shape keeps the plan made on empty tables (see
# tests/service/test_query_plans.py) to one primary-key lookup a case and one index probe a stage: given
# `id = ANY(...)` or EXISTS, the planner chose to read cases and the statuses whole.
CASES_STAGES_REACHED = Prepared("""
    SELECT c.id, c.received_at, c.risk_level, c.triaged_at,
           coalesce((SELECT true FROM case_referrals r WHERE r.case_id = c.id LIMIT 1), false) AS referred,
           coalesce((SELECT true FROM case_deliveries d WHERE d.case_id = c.id AND d.outcome = 'delivered' LIMIT 1),
                    false) AS first_delivery,
           coalesce((SELECT true FROM case_referral_statuses s WHERE s.case_id = c.id AND s.status = ANY(%(answered)s)
                     LIMIT 1), false) AS acknowledged
    FROM unnest(%(case_ids)s::uuid[]) AS wanted (id)
    CROSS JOIN LATERAL (SELECT id, received_at, risk_level, triaged_at FROM cases WHERE id = wanted.id LIMIT 1) AS c
""")
