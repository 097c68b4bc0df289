"""Every query referral runs, against its own schema."""
from sanad.platform.pool import Prepared

# The directory -----------------------------------------------------------------------------------------

INSERT_PARTNER = """
    INSERT INTO partners (id, name, description, address, confidential_address, phone, email, website, accepting)
    VALUES (%(id)s, %(name)s, %(description)s, %(address)s, %(confidential_address)s, %(phone)s, %(email)s,
            %(website)s, %(accepting)s)
"""
PARTNER_BY_NAME = "SELECT id FROM partners WHERE name = %(name)s"
PARTNER_BY_ID = """
    SELECT id, name, description, address, confidential_address, phone, email, website, accepting, active,
           accepting_changed_at, accepting_changed_by, created_at, updated_at
    FROM partners WHERE id = %(id)s
"""
UPSERT_SERVICE = """
    INSERT INTO partner_services (id, partner_id, service, governorates, languages, staff_genders, always_open,
                                  min_age, max_age, eligibility, contacts_family)
    VALUES (%(id)s, %(partner_id)s, %(service)s, %(governorates)s, %(languages)s, %(staff_genders)s,
            %(always_open)s, %(min_age)s, %(max_age)s, %(eligibility)s, %(contacts_family)s)
    ON CONFLICT (partner_id, service) DO UPDATE
    SET governorates = EXCLUDED.governorates, languages = EXCLUDED.languages,
        staff_genders = EXCLUDED.staff_genders, always_open = EXCLUDED.always_open, min_age = EXCLUDED.min_age,
        max_age = EXCLUDED.max_age, eligibility = EXCLUDED.eligibility, contacts_family = EXCLUDED.contacts_family
    RETURNING id
"""
DELETE_SERVICE = "DELETE FROM partner_services WHERE partner_id = %(partner_id)s AND service = %(service)s RETURNING id"
DELETE_HOURS = "DELETE FROM service_hours WHERE service_id = %(service_id)s"
INSERT_HOURS = """
    INSERT INTO service_hours (service_id, weekday, opens_at, closes_at)
    VALUES (%(service_id)s, %(weekday)s, %(opens)s, %(closes)s)
"""
TOUCH_PARTNER = "UPDATE partners SET updated_at = %(now)s WHERE id = %(id)s"
UPDATE_PARTNER = """
    UPDATE partners SET
        description = coalesce(%(description)s, description),
        address = CASE WHEN %(set_address)s THEN %(address)s ELSE address END,
        confidential_address = coalesce(%(confidential_address)s, confidential_address),
        phone = CASE WHEN %(set_phone)s THEN %(phone)s ELSE phone END,
        email = CASE WHEN %(set_email)s THEN %(email)s ELSE email END,
        website = CASE WHEN %(set_website)s THEN %(website)s ELSE website END,
        active = coalesce(%(active)s, active),
        updated_at = %(now)s
    WHERE id = %(id)s
    RETURNING id
"""
# A partner notify cannot reach stops taking new cases (handlers.delivery_exhausted); once only.
STOP_ACCEPTING = """
    UPDATE partners SET accepting = false, accepting_changed_at = %(now)s, accepting_changed_by = %(by)s,
                        updated_at = %(now)s
    WHERE id = %(id)s AND accepting
    RETURNING id
"""
SET_ACCEPTING = """
    UPDATE partners SET accepting = %(accepting)s, accepting_changed_at = %(now)s, accepting_changed_by = %(by)s,
                        updated_at = %(now)s
    WHERE id = %(id)s
    RETURNING id
"""

_HOURS = """
    coalesce((SELECT json_agg(json_build_object('weekday', h.weekday, 'opens', h.opens_at, 'closes', h.closes_at)
                              ORDER BY h.weekday, h.opens_at)
              FROM service_hours h WHERE h.service_id = ps.id), '[]'::json)
"""
# A partner's open referrals: its folded count and the changes not folded yet (migration 0003 says why).
_OPEN_REFERRALS = """
    (coalesce((SELECT l.open_referrals FROM partner_load l WHERE l.partner_id = p.id), 0)
     + coalesce((SELECT sum(c.change) FROM partner_load_changes c WHERE c.partner_id = p.id), 0))
"""
# Every active partner offering one of the services, wherever it works: matching passes over those outside
# the victim's governorate itself, so it can say so.
OFFERS_FOR = Prepared(f"""
    SELECT p.id, p.name, ps.service, ps.governorates, p.accepting, ps.always_open, ps.staff_genders,
           ps.languages, ps.min_age, ps.max_age, ps.contacts_family, {_HOURS} AS hours,
           {_OPEN_REFERRALS} AS open_referrals
    FROM partner_services ps JOIN partners p ON p.id = ps.partner_id
    WHERE p.active AND ps.service = ANY(%(services)s)
""")
OFFER_OF = f"""
    SELECT p.id, p.name, ps.service, ps.governorates, p.accepting, ps.always_open, ps.staff_genders,
           ps.languages, ps.min_age, ps.max_age, ps.contacts_family, {_HOURS} AS hours,
           {_OPEN_REFERRALS} AS open_referrals
    FROM partner_services ps JOIN partners p ON p.id = ps.partner_id
    WHERE p.id = %(partner_id)s AND p.active AND ps.service = %(service)s
"""
DIRECTORY = f"""
    SELECT p.id, p.name, p.description, p.address, p.confidential_address, p.phone, p.email, p.website,
           p.accepting, p.active, p.accepting_changed_at, p.accepting_changed_by, {_OPEN_REFERRALS} AS open_referrals,
           coalesce((SELECT json_agg(json_build_object(
                         'service', ps.service, 'governorates', ps.governorates, 'languages', ps.languages,
                         'staff_genders', ps.staff_genders, 'always_open', ps.always_open,
                         'min_age', ps.min_age, 'max_age', ps.max_age, 'eligibility', ps.eligibility,
                         'contacts_family', ps.contacts_family, 'hours', {_HOURS}) ORDER BY ps.service)
                     FROM partner_services ps WHERE ps.partner_id = p.id), '[]'::json) AS services
    FROM partners p
    WHERE (%(partner_id)s::uuid IS NULL OR p.id = %(partner_id)s::uuid)
    ORDER BY p.name
"""

# Folds the changes noted since the last fold into each partner's count, in one transaction, so a reader
# sees a change either as a row of partner_load_changes or in partner_load, never both nor neither. One
# process folds at a time: the others' attempts that second find the lock taken and do nothing.
FOLD_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('referral.partner_load')) AS mine"
FOLD_PARTNER_LOAD = """
    WITH folded AS (
        DELETE FROM partner_load_changes RETURNING partner_id, change
    ), totals AS (
        SELECT f.partner_id, sum(f.change) AS change FROM folded f JOIN partners p ON p.id = f.partner_id
        GROUP BY f.partner_id
    )
    INSERT INTO partner_load (partner_id, open_referrals) SELECT partner_id, change FROM totals
    ON CONFLICT (partner_id) DO UPDATE SET open_referrals = partner_load.open_referrals + EXCLUDED.open_referrals
"""

# Cases and referrals -----------------------------------------------------------------------------------

# A batch's cases, their rows locked in the order of the ids given (sorted by the caller, so that two
# batches lock them in one order).
CASE_LEVELS_FOR_UPDATE = Prepared("""
    SELECT c.case_id, c.level, c.triaged_at
    FROM unnest(%(case_ids)s::uuid[]) AS wanted (id)
    CROSS JOIN LATERAL (SELECT case_id, level, triaged_at FROM cases WHERE case_id = wanted.id FOR UPDATE) AS c
""")
# triaged_at is when the case was assessed (its case.triaged event's time): an older assessment, arriving
# late, never replaces a newer one, even from a process that had not seen the case when it began.
UPSERT_CASE = Prepared("""
    INSERT INTO cases (case_id, reference, level, governorate, needs, consents, correlation_id, triaged_at,
                       preferences_sealed)
    VALUES (%(case_id)s, %(reference)s, %(level)s, %(governorate)s, %(needs)s, %(consents)s, %(correlation_id)s,
            %(triaged_at)s, %(preferences_sealed)s)
    ON CONFLICT (case_id) DO UPDATE
    SET level = EXCLUDED.level, needs = EXCLUDED.needs, consents = EXCLUDED.consents, triaged_at = EXCLUDED.triaged_at,
        preferences_sealed = EXCLUDED.preferences_sealed, preferences = NULL
    WHERE cases.triaged_at <= EXCLUDED.triaged_at
""")
# A case whose risk was raised: its open referrals take the new level, and the deadlines still running
# are brought forward to the new level's policy (never pushed back), counted from each original offer.
RELEVEL_OPEN_REFERRALS = """
    UPDATE referrals SET level = %(level)s, updated_at = %(now)s
    WHERE case_id = %(case_id)s AND status IN ('offered', 'accepted', 'in_progress')
"""
HASTEN_PENDING_DEADLINES = """
    UPDATE ack_deadlines d
    SET due_at = least(d.due_at, r.created_at + make_interval(secs => %(ack_seconds)s)), lane = %(lane)s,
        policy_level = %(level)s, policy_version = %(version)s, ack_seconds = %(ack_seconds)s,
        max_reoffers = greatest(d.max_reoffers, %(max_reoffers)s)
    FROM referrals r
    WHERE r.id = d.referral_id AND r.case_id = %(case_id)s AND d.status = 'pending'
"""
# What a case triaged again already has, by need: a live referral (someone has the need, or has it
# offered), or a no_match already announced, with the level it was announced at.
# What became of each need of a case: an offer standing or taken up (live), one carried through (completed
# or closed: settled), one declined or withdrawn (ended), a no_match announced at a level.
NEEDS_IN_HAND = """
    SELECT CASE WHEN status IN ('offered', 'accepted', 'in_progress') THEN 'live'
                WHEN status IN ('completed', 'closed') THEN 'settled' ELSE 'ended' END AS kind,
           service, level
    FROM referrals WHERE case_id = %(case_id)s
    UNION ALL
    SELECT 'no_match' AS kind, service, level FROM escalations WHERE case_id = %(case_id)s AND reason = 'no_match'
"""
CASE_BY_ID = "SELECT * FROM cases WHERE case_id = %(case_id)s"
# `sanad purge` dropped the case's personal data from this schema (sanad/platform/retention.py).
CASE_PURGED = "SELECT purged_at FROM purged_cases WHERE case_id = %(case_id)s"
_INSERT_REFERRAL = """
    INSERT INTO referrals (id, case_id, reference, partner_id, service, level, governorate, attempt, offered_by,
                           created_at, updated_at)
    VALUES (%(id)s, %(case_id)s, %(reference)s, %(partner_id)s, %(service)s, %(level)s, %(governorate)s,
            %(attempt)s, %(offered_by)s, %(now)s, %(now)s)
"""
# An attempt made before (a repeated event) inserts nothing and returns nothing.
INSERT_REFERRAL = Prepared(_INSERT_REFERRAL + "ON CONFLICT (case_id, service, attempt) DO NOTHING RETURNING id")
# For an attempt known to be new: one made since fails on the table's key.
INSERT_NEW_REFERRAL = Prepared(_INSERT_REFERRAL)
# Serialises the offers of one case that pick their attempt from NEXT_ATTEMPT (a re-offer, a supervisor's
# refer-anyway), so two at once never compute the same attempt, one of them losing its offer to the other's
# key. An advisory lock rather than the case's row: a re-triage locks the case row and then its referrals,
# while an escalation holds its referral already, and taking the case row after it would deadlock the two.
LOCK_CASE_OFFERS = "SELECT pg_advisory_xact_lock(hashtext('referral.case_offers'), hashtext(%(case_id)s::text))"
NEXT_ATTEMPT = """
    SELECT coalesce(max(attempt), 0) + 1 AS attempt FROM referrals
    WHERE case_id = %(case_id)s AND service = %(service)s
"""
PARTNERS_OFFERED = """
    SELECT DISTINCT partner_id FROM referrals WHERE case_id = %(case_id)s AND service = %(service)s
"""
LOCK_REFERRAL = """
    SELECT r.*, p.name AS partner_name FROM referrals r JOIN partners p ON p.id = r.partner_id
    WHERE r.id = %(id)s FOR UPDATE OF r
"""
SET_REFERRAL_STATUS = """
    UPDATE referrals
    SET status = %(status)s, note_code = %(note_code)s, updated_at = %(now)s,
        acknowledged_at = CASE WHEN %(acknowledges)s THEN coalesce(acknowledged_at, %(now)s) ELSE acknowledged_at END
    WHERE id = %(id)s
"""
REFERRALS_OF_CASE = """
    SELECT r.id, r.partner_id, p.name AS partner_name, r.service, r.level, r.status, r.note_code, r.attempt,
           r.offered_by, r.created_at, r.updated_at, r.acknowledged_at,
           (SELECT d.due_at FROM ack_deadlines d WHERE d.referral_id = r.id AND d.status = 'pending') AS acknowledge_by
    FROM referrals r JOIN partners p ON p.id = r.partner_id
    WHERE r.case_id = %(case_id)s ORDER BY r.service, r.attempt
"""

# Policies and deadlines --------------------------------------------------------------------------------

POLICIES = "SELECT level, ack_seconds, max_reoffers, version, updated_at, updated_by FROM escalation_policies"
POLICY_FOR = Prepared(
    "SELECT level, ack_seconds, max_reoffers, version FROM escalation_policies WHERE level = %(level)s")
EVERY_POLICY = Prepared("SELECT level, ack_seconds, max_reoffers, version FROM escalation_policies")
SET_POLICY = """
    INSERT INTO escalation_policies (level, ack_seconds, max_reoffers, version, updated_at, updated_by)
    VALUES (%(level)s, %(ack_seconds)s, %(max_reoffers)s, 1, %(now)s, %(by)s)
    ON CONFLICT (level) DO UPDATE
    SET ack_seconds = EXCLUDED.ack_seconds, max_reoffers = EXCLUDED.max_reoffers,
        version = escalation_policies.version + 1, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
    RETURNING level, ack_seconds, max_reoffers, version, updated_at, updated_by
"""
INSERT_DEADLINE = Prepared("""
    INSERT INTO ack_deadlines (id, referral_id, chain_id, lane, due_at, steps_taken, policy_level, policy_version,
                               ack_seconds, max_reoffers, created_at)
    VALUES (%(id)s, %(referral_id)s, %(chain_id)s, %(lane)s, %(due_at)s, %(steps_taken)s, %(policy_level)s,
            %(policy_version)s, %(ack_seconds)s, %(max_reoffers)s, %(now)s)
""")
# One due deadline and its referral, both locked, or nothing. Critical deadlines first, whichever process
# asks; a row another worker holds (or whose referral a partner is answering right now) is skipped, never
# waited for, so two workers never fire the same deadline and an acknowledgement never deadlocks a timer.
CLAIM_DUE_DEADLINE = """
    SELECT d.id, d.referral_id, d.chain_id, d.lane, d.due_at, d.steps_taken, d.policy_level, d.policy_version,
           d.ack_seconds, d.max_reoffers, d.failures
    FROM ack_deadlines d JOIN referrals r ON r.id = d.referral_id
    WHERE d.status = 'pending' AND d.due_at <= %(now)s AND d.lane = ANY(%(lanes)s)
    ORDER BY (d.lane = 'critical') DESC, d.due_at
    LIMIT 1
    FOR UPDATE OF d, r SKIP LOCKED
"""
LATEST_DEADLINE_OF = """
    SELECT id, referral_id, chain_id, lane, due_at, status, steps_taken, policy_level, policy_version, ack_seconds,
           max_reoffers
    FROM ack_deadlines WHERE referral_id = %(referral_id)s
    ORDER BY created_at DESC, steps_taken DESC LIMIT 1
    FOR UPDATE
"""
FINISH_DEADLINE = "UPDATE ack_deadlines SET status = %(status)s, finished_at = %(now)s WHERE id = %(id)s"
CANCEL_PENDING_DEADLINES = """
    UPDATE ack_deadlines SET status = 'cancelled', finished_at = %(now)s
    WHERE referral_id = %(referral_id)s AND status = 'pending'
    RETURNING id
"""
# A deadline whose escalation keeps failing is retried later rather than blocking those behind it. On the
# normal lane, after `max_failures` it is set aside as failed (logged, and counted by FAILED_DEADLINES
# while its offer stands) for a person to look at; a critical one is never set aside: it is retried for as
# long as it fails, counted as overdue all the while.
DEADLINE_FAILED = """
    UPDATE ack_deadlines
    SET failures = failures + 1, due_at = %(retry_at)s,
        status = CASE WHEN lane <> 'critical' AND failures + 1 >= %(max_failures)s THEN 'failed' ELSE status END,
        finished_at = CASE WHEN lane <> 'critical' AND failures + 1 >= %(max_failures)s THEN %(now)s
                           ELSE finished_at END
    WHERE id = %(id)s AND status = 'pending'
    RETURNING failures, status, lane
"""
INSERT_ESCALATION = """
    INSERT INTO escalations (id, event_id, chain_id, referral_id, case_id, service, level, reason, step,
                             reoffered_to, new_referral_id, escalated_at, fired_by)
    VALUES (%(id)s, %(event_id)s, %(chain_id)s, %(referral_id)s, %(case_id)s, %(service)s, %(level)s, %(reason)s,
            %(step)s, %(reoffered_to)s, %(new_referral_id)s, %(escalated_at)s, %(fired_by)s)
"""
ESCALATIONS_OF_CASE = """
    SELECT referral_id, service, reason, step, reoffered_to, new_referral_id, escalated_at
    FROM escalations WHERE case_id = %(case_id)s ORDER BY escalated_at, step
"""

# Keys and audit ----------------------------------------------------------------------------------------

INSERT_API_KEY = """
    INSERT INTO api_keys (key_id, role, partner_id, staff_name, digest, created_at)
    VALUES (%(key_id)s, %(role)s, %(partner_id)s, %(staff_name)s, %(digest)s, %(now)s)
"""
KEY_BY_ID = """
    SELECT k.key_id, k.role, k.partner_id, k.staff_name, k.digest, k.expires_at, k.revoked_at, k.last_used_at,
           p.active AS partner_active
    FROM api_keys k LEFT JOIN partners p ON p.id = k.partner_id
    WHERE k.key_id = %(key_id)s
"""
# Written at most once a minute per key, so a busy partner does not turn every read into a write.
TOUCH_KEY = """
    UPDATE api_keys SET last_used_at = %(now)s
    WHERE key_id = %(key_id)s AND (last_used_at IS NULL OR last_used_at < %(now)s - interval '1 minute')
"""
# Rotation: the partner's other live keys stop working at `until` (now, or after a grace period). Only its
# own keys: its in-house counsellors' staff keys name the partner too (migration 0005), and stay.
EXPIRE_PARTNER_KEYS = """
    UPDATE api_keys SET expires_at = %(until)s
    WHERE partner_id = %(partner_id)s AND role = 'partner' AND key_id <> %(keep)s AND revoked_at IS NULL
      AND (expires_at IS NULL OR expires_at > %(until)s)
    RETURNING key_id
"""
INSERT_AUDIT = """
    INSERT INTO audit_log (at, actor_kind, actor_id, key_id, action, outcome, referral_id, case_id, partner_id,
                           remote_addr, detail, note_sealed)
    VALUES (%(at)s, %(actor_kind)s, %(actor_id)s, %(key_id)s, %(action)s, %(outcome)s, %(referral_id)s,
            %(case_id)s, %(partner_id)s, %(remote_addr)s, %(detail)s, %(note_sealed)s)
"""
# One audit row for each referral a call showed, so each case's trail (audit_log_by_case) has it.
INSERT_AUDIT_EACH = """
    INSERT INTO audit_log (at, actor_kind, actor_id, key_id, action, outcome, referral_id, case_id, partner_id,
                           remote_addr, detail)
    SELECT %(at)s, %(actor_kind)s, %(actor_id)s, %(key_id)s, %(action)s, %(outcome)s, shown.referral_id,
           shown.case_id, %(partner_id)s, %(remote_addr)s, %(detail)s
    FROM unnest(%(referral_ids)s::uuid[], %(case_ids)s::uuid[]) AS shown (referral_id, case_id)
"""

# The partner's view ------------------------------------------------------------------------------------

_PARTNER_VIEW = """
    SELECT r.id, r.reference, r.level, r.service, r.governorate, r.status, r.note_code, r.created_at,
           r.updated_at, r.acknowledged_at, r.partner_id, r.case_id,
           (SELECT d.due_at FROM ack_deadlines d WHERE d.referral_id = r.id AND d.status = 'pending') AS acknowledge_by
    FROM referrals r
"""
REFERRAL_VIEW = _PARTNER_VIEW + " WHERE r.id = %(id)s"
PARTNER_REFERRAL = _PARTNER_VIEW + " WHERE r.id = %(id)s AND r.partner_id = %(partner_id)s"
# Newest first; a page after the first starts below the last referral of the one before (`before`).
PARTNER_REFERRALS = _PARTNER_VIEW + """
    WHERE r.partner_id = %(partner_id)s AND (%(status)s::text IS NULL OR r.status = %(status)s::text)
      AND (%(before)s::uuid IS NULL OR (r.created_at, r.id) < (
          SELECT c.created_at, c.id FROM referrals c WHERE c.id = %(before)s::uuid))
    ORDER BY r.created_at DESC, r.id DESC LIMIT %(limit)s
"""
REFERRAL_OWNER = "SELECT partner_id, case_id FROM referrals WHERE id = %(id)s"

ALL_PARTNERS = """
    SELECT p.id, p.name, p.accepting, p.active,
           coalesce(array_agg(ps.service ORDER BY ps.service) FILTER (WHERE ps.service IS NOT NULL), '{}') AS services,
           coalesce((SELECT array_agg(DISTINCT g ORDER BY g) FROM partner_services s2, unnest(s2.governorates) g
                     WHERE s2.partner_id = p.id), '{}') AS governorates
    FROM partners p LEFT JOIN partner_services ps ON ps.partner_id = p.id
    GROUP BY p.id ORDER BY p.name
"""

# Gauges (issue 9) --------------------------------------------------------------------------------------

REFERRALS_BY_STATUS = "SELECT status, level, count(*) AS referrals FROM referrals GROUP BY status, level"
# A pending deadline well past due has not been fired; one whose escalation failed is retried later with a
# new due_at, so it counts as soon as it has failed once.
OVERDUE_DEADLINES = """
    SELECT lane, count(*) AS overdue FROM ack_deadlines
    WHERE status = 'pending' AND (due_at < %(now)s - make_interval(secs => %(grace)s) OR failures > 0)
    GROUP BY lane
"""
# Deadlines set aside after failing again and again whose offer still stands: nobody chases that offer
# until a person does (a supervisor withdraws it, refers the need anyway, or the partner answers).
FAILED_DEADLINES = """
    SELECT d.lane, count(*) AS failed FROM ack_deadlines d JOIN referrals r ON r.id = d.referral_id
    WHERE d.status = 'failed' AND r.status = 'offered'
    GROUP BY d.lane
"""

# Key rotation: the audit log's sealed notes, by id.
NOTES_TO_RESEAL = """
    SELECT id, case_id, note_sealed FROM audit_log
    WHERE note_sealed IS NOT NULL AND id > %(after)s ORDER BY id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_NOTE_SEAL = "UPDATE audit_log SET note_sealed = %(note_sealed)s WHERE id = %(id)s"
# `preferences` is what a case recorded before migration 0006 kept in the clear: reseal seals it.
CASES_TO_RESEAL = """
    SELECT case_id, preferences_sealed, preferences FROM cases
    WHERE case_id > %(after)s AND (preferences_sealed IS NOT NULL OR preferences IS NOT NULL)
    ORDER BY case_id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_CASE_SEAL = """
    UPDATE cases SET preferences_sealed = %(preferences_sealed)s, preferences = NULL WHERE case_id = %(id)s
"""
