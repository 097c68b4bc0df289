"""Every query notify runs, against its own schema."""
from sanad.platform.pool import NO_WHOLE_TABLE_READS, Prepared

# Every endpoint a webhook can go to: partners' (keyed by partner id) and the on-call pager's.
_WITH_ENDPOINTS = """
    WITH webhook_endpoints AS (
        SELECT 'partner' AS target, partner_id AS id, url, enabled FROM endpoints
        UNION ALL
        SELECT 'oncall' AS target, id, url, enabled FROM oncall_endpoints
    )"""

# Endpoints and their secrets -----------------------------------------------------------------------------

INSERT_ENDPOINT = """
    INSERT INTO endpoints (partner_id, url) VALUES (%(partner_id)s, %(url)s)
"""
INSERT_ONCALL_ENDPOINT = """
    INSERT INTO oncall_endpoints (id, name, url) VALUES (%(id)s, %(name)s, %(url)s)
"""
INSERT_SECRET = """
    INSERT INTO endpoint_secrets (endpoint_id, secret_sealed, created_at)
    VALUES (%(endpoint_id)s, %(secret_sealed)s, %(now)s)
"""
SECRETS_TO_RESEAL = """
    SELECT id, endpoint_id, secret_sealed FROM endpoint_secrets WHERE id > %(after)s
    ORDER BY id LIMIT %(limit)s FOR UPDATE
"""
UPDATE_SECRET_SEAL = "UPDATE endpoint_secrets SET secret_sealed = %(secret_sealed)s WHERE id = %(id)s"
ENDPOINT = _WITH_ENDPOINTS + " SELECT target, id, url, enabled FROM webhook_endpoints WHERE id = %(id)s"
# The secrets in use now keep signing until the overlap ends; one that expires sooner keeps its expiry.
EXPIRE_SECRETS = """
    UPDATE endpoint_secrets SET expires_at = %(until)s
    WHERE endpoint_id = %(endpoint_id)s AND (expires_at IS NULL OR expires_at > %(until)s)
"""
ACTIVE_SECRET_COUNT = """
    SELECT count(*) AS active FROM endpoint_secrets
    WHERE endpoint_id = %(endpoint_id)s AND (expires_at IS NULL OR expires_at > %(now)s)
"""
LIST_ENDPOINTS = _WITH_ENDPOINTS + """
    SELECT w.target, w.id, w.url, w.enabled, e.consecutive_exhausted, e.disabled_at, e.disabled_reason,
           (SELECT count(*) FROM endpoint_secrets s
            WHERE s.endpoint_id = w.id AND (s.expires_at IS NULL OR s.expires_at > %(now)s)) AS active_secrets
    FROM webhook_endpoints w LEFT JOIN endpoints e ON w.target = 'partner' AND e.partner_id = w.id
    WHERE %(target)s::text IS NULL OR w.target = %(target)s
    ORDER BY w.target, w.url
"""
ENABLED_ONCALL_ENDPOINTS = "SELECT id FROM oncall_endpoints WHERE enabled ORDER BY created_at"
SET_PARTNER_ENDPOINT_ENABLED = """
    UPDATE endpoints SET enabled = %(enabled)s, consecutive_exhausted = 0,
        disabled_at = CASE WHEN %(enabled)s THEN NULL ELSE %(now)s END,
        disabled_reason = CASE WHEN %(enabled)s THEN NULL ELSE %(reason)s END
    WHERE partner_id = %(id)s
    RETURNING partner_id
"""
SET_ONCALL_ENDPOINT_ENABLED = """
    UPDATE oncall_endpoints SET enabled = %(enabled)s WHERE id = %(id)s RETURNING id
"""

# An endpoint that keeps failing ----------------------------------------------------------------------------

COUNT_EXHAUSTED = """
    UPDATE endpoints SET consecutive_exhausted = consecutive_exhausted + 1
    WHERE partner_id = %(endpoint_id)s
    RETURNING consecutive_exhausted, enabled
"""
RESET_EXHAUSTED = Prepared("""
    UPDATE endpoints SET consecutive_exhausted = 0
    WHERE partner_id = %(endpoint_id)s AND consecutive_exhausted > 0
""")
DISABLE_ENDPOINT = """
    UPDATE endpoints SET enabled = false, disabled_at = %(now)s, disabled_reason = %(reason)s
    WHERE partner_id = %(endpoint_id)s AND enabled
    RETURNING partner_id
"""

# Deliveries ------------------------------------------------------------------------------------------------

# A webhook id already taken (the same event handled again) leaves the delivery that has it alone. An
# offer of a referral withdrawn already (its withdrawal handled first, after a backlog) is not made at all.
INSERT_DELIVERY = Prepared("""
    INSERT INTO deliveries (id, webhook_id, kind, target, endpoint_id, referral_id, case_id, partner_id, lane,
                            payload, next_attempt_at, created_at)
    SELECT %(id)s, %(webhook_id)s, %(kind)s, %(target)s, %(endpoint_id)s, %(referral_id)s, %(case_id)s,
           %(partner_id)s, %(lane)s, %(payload)s, %(now)s, %(now)s
    WHERE %(kind)s::text <> 'referral.offered'
       OR NOT EXISTS (SELECT 1 FROM withdrawn_referrals w WHERE w.referral_id = %(referral_id)s::uuid)
    ON CONFLICT (webhook_id) DO NOTHING
""")
# An offer's delivery and its referral's withdrawal come from two queues, and after an outage both wait
# in them: handled in the same instant, neither would see the other's uncommitted row, and the offer
# would go to a partner that no longer has it. So each first takes a lock on the referral, the offer a
# shared one (a batch's offers of different referrals never wait for each other), the withdrawal an
# exclusive one, each in a statement of its own before the statement that reads the other's row: the
# later one waits for the earlier one's COMMIT, then sees what it wrote (under READ COMMITTED each
# statement reads a snapshot of its own, also when several travel in one round trip).
OFFER_OF_REFERRAL_LOCKED = Prepared(
    "SELECT pg_advisory_xact_lock_shared(hashtext('notify.referral_offer'), hashtext(%(referral_id)s::text))")
WITHDRAWAL_OF_REFERRAL_LOCKED = \
    "SELECT pg_advisory_xact_lock(hashtext('notify.referral_offer'), hashtext(%(referral_id)s::text))"
# A referral withdrawn: recorded once, and its offer's delivery, if still being tried, cancelled. A
# redelivered event finds it recorded and nothing pending. Pages about the referral are left alone.
CANCEL_WITHDRAWN_OFFER = """
    WITH recorded AS (
        INSERT INTO withdrawn_referrals (referral_id, withdrawn_at) VALUES (%(referral_id)s, %(now)s)
        ON CONFLICT (referral_id) DO NOTHING
    )
    UPDATE deliveries SET status = 'cancelled', finished_at = %(now)s
    WHERE referral_id = %(referral_id)s AND kind = 'referral.offered' AND status = 'pending'
    RETURNING id
"""
_OFFER_WITHDRAWN = """(d.kind = 'referral.offered'
                       AND EXISTS (SELECT 1 FROM withdrawn_referrals w WHERE w.referral_id = d.referral_id))"""

# A claim is a lease: the attempt that holds it runs outside any transaction, and if its process dies the
# lease runs out and another worker takes the delivery up, under the same webhook-id. The lease outlasts
# the longest attempt, and FOR UPDATE SKIP LOCKED with the lease re-checked on the locked row means two
# workers never hold the same attempt.
_CLAIMED = _WITH_ENDPOINTS + """
    UPDATE deliveries d SET lease_until = %(now)s + make_interval(secs => %(lease)s), attempts = d.attempts + 1
    WHERE d.id IN ({due})
    RETURNING d.id, d.webhook_id, d.kind, d.target, d.endpoint_id, d.referral_id, d.case_id, d.partner_id,
              d.lease_until, d.lane, d.payload, d.attempts, d.round_start,
              (SELECT e.url FROM webhook_endpoints e WHERE e.target = d.target AND e.id = d.endpoint_id) AS url,
              (SELECT e.enabled FROM webhook_endpoints e WHERE e.target = d.target AND e.id = d.endpoint_id)
                  AS enabled,
              ARRAY(SELECT s.secret_sealed FROM endpoint_secrets s
                    WHERE s.endpoint_id = d.endpoint_id AND (s.expires_at IS NULL OR s.expires_at > %(now)s)
                    ORDER BY s.id DESC) AS secrets_sealed
"""
# Pending, its time come, and no live lease; {t} is the table's alias and a dot, or nothing; {pending} is
# the status pending deliveries have: the literal where an index of them is walked, the parameter
# %(pending)s where deliveries are found by id.
_IS_DUE = ("{t}status = {pending} AND {t}next_attempt_at <= %(now)s "
           "AND ({t}lease_until IS NULL OR {t}lease_until < %(now)s)")
# Why a parameter: with the literal 'pending', the partial indexes of pending deliveries can answer a
# lookup by id too, and a prepared statement's plan is made once per connection, with the planner's
# estimates of that moment. Made while the table was nearly empty (a service's first minutes; for ever
# where autovacuum does not analyse the table), that plan read the whole index of pending deliveries, dead
# entries included, to find one row: 0.45 to 1.3 ms a claim or result in a 5,000-case flood, the largest
# share of PostgreSQL's time (docs/performance.md, item 28). A parameter proves nothing about an index's
# condition, so the primary key answers. tests/service/test_query_plans.py checks every prepared plan.
PENDING = "pending"
_IS_DUE_IN_INDEX = _IS_DUE.format(t="", pending="'pending'")
CLAIM_BY_ID = Prepared(_CLAIMED.format(due=f"""
    SELECT id FROM deliveries WHERE id = %(id)s AND {_IS_DUE.format(t='', pending='%(pending)s')}
    FOR UPDATE SKIP LOCKED"""))
# Oldest due first, but no more per endpoint than it may still hold in this process (`in_flight` maps an
# endpoint id to the attempts it holds here, sending or waiting to), so one slow partner cannot take every
# slot. In a surge thousands of deliveries wait, and ranking them all at every claim made this notify's
# costliest query; instead the endpoints with deliveries waiting are found by skipping through the index
# one endpoint at a time, and each one's oldest are read from its own range of it. Planned on a page of
# never-analysed rows, the claim read every delivery twice (docs/performance.md, item 42):
# NO_WHOLE_TABLE_READS.
CLAIM_DUE = Prepared(_CLAIMED.format(due=f"""
    WITH RECURSIVE waiting (endpoint_id) AS (
        (SELECT endpoint_id FROM deliveries WHERE status = 'pending' AND lane = %(lane)s
         ORDER BY endpoint_id LIMIT 1)
        UNION ALL
        SELECT (SELECT d.endpoint_id FROM deliveries d
                WHERE d.status = 'pending' AND d.lane = %(lane)s AND d.endpoint_id > w.endpoint_id
                ORDER BY d.endpoint_id LIMIT 1)
        FROM waiting w WHERE w.endpoint_id IS NOT NULL
    ), busy AS (
        SELECT key::uuid AS endpoint_id, value::int AS held FROM jsonb_each_text(%(in_flight)s::jsonb)
    ), candidates AS MATERIALIZED (
        SELECT due.id FROM waiting w LEFT JOIN busy b ON b.endpoint_id = w.endpoint_id
        CROSS JOIN LATERAL (
            SELECT id, next_attempt_at FROM deliveries
            WHERE endpoint_id = w.endpoint_id AND lane = %(lane)s AND {_IS_DUE_IN_INDEX}
            ORDER BY next_attempt_at LIMIT greatest(%(held_per_endpoint)s - coalesce(b.held, 0), 0)
        ) due
        ORDER BY due.next_attempt_at LIMIT %(limit)s
    )
    SELECT d.id FROM deliveries d
    WHERE d.id = ANY(ARRAY(SELECT id FROM candidates)) AND {_IS_DUE.format(t='d.', pending='%(pending)s')}
    FOR UPDATE OF d SKIP LOCKED
"""), planner=NO_WHOLE_TABLE_READS)


INSERT_ATTEMPT = Prepared("""
    INSERT INTO delivery_attempts (delivery_id, endpoint_id, attempt, attempted_at, outcome, status_code, error,
                                   latency_ms, response_excerpt)
    VALUES (%(delivery_id)s, %(endpoint_id)s, %(attempt)s, %(attempted_at)s, %(outcome)s, %(status_code)s, %(error)s,
            %(latency_ms)s, %(response_excerpt)s)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
""")
# The results of attempts recorded together, one statement for all of them: `finished` is a JSON list of
# {id, attempt, status, next_attempt_at, attempted_at}, `ids` their delivery ids, looked up by the primary
# key (a plan made on a near-empty table would read every delivery: NO_WHOLE_TABLE_READS). Each is guarded
# by its attempt number: if the lease ran out and another worker took the delivery over, this worker's
# late result changes nothing.
FINISH_ATTEMPTS = Prepared("""
    UPDATE deliveries d
    SET status = f.status, next_attempt_at = coalesce(f.next_attempt_at, d.next_attempt_at), lease_until = NULL,
        finished_at = CASE WHEN f.status = 'pending' THEN NULL ELSE f.attempted_at END
    FROM jsonb_to_recordset(%(finished)s::jsonb)
        AS f(id uuid, attempt int, status text, next_attempt_at timestamptz, attempted_at timestamptz)
    WHERE d.id = ANY(%(ids)s::uuid[]) AND d.id = f.id AND d.attempts = f.attempt AND d.status = %(pending)s
    RETURNING d.id, d.attempts
""", planner=NO_WHOLE_TABLE_READS)
INSERT_DEAD_DELIVERY = """
    INSERT INTO dead_deliveries (delivery_id, attempts, last_error, dead_at)
    VALUES (%(delivery_id)s, %(attempts)s, %(last_error)s, %(now)s)
"""

# Replay ------------------------------------------------------------------------------------------------------

# A replay starts a fresh round of attempts under the same webhook-id. A delivery still being tried is
# left alone: clearing its lease could let a second worker send it while the first still is.
_REPLAYED = _WITH_ENDPOINTS + """
    UPDATE deliveries d
    SET status = 'pending', next_attempt_at = %(now)s, lease_until = NULL, finished_at = NULL,
        round_start = d.attempts
    WHERE d.status <> 'pending' AND ({chosen}) AND NOT """ + _OFFER_WITHDRAWN + """
      AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.target = d.target AND e.id = d.endpoint_id AND e.enabled)
    RETURNING d.id, d.webhook_id, d.lane
"""
REPLAY_DEAD = _REPLAYED.format(
    chosen="d.status = 'failed' AND d.id IN (SELECT delivery_id FROM dead_deliveries WHERE replayed_at IS NULL)")
REPLAY_CHOSEN = _REPLAYED.format(chosen="d.id::text = ANY(%(ids)s) OR d.webhook_id = ANY(%(ids)s)")
MARK_REPLAYED = """
    UPDATE dead_deliveries SET replayed_at = %(now)s
    WHERE delivery_id = ANY(%(delivery_ids)s::uuid[]) AND replayed_at IS NULL
"""
NOT_REPLAYED = _WITH_ENDPOINTS + """
    SELECT d.id, d.webhook_id, d.status, coalesce(e.enabled, false) AS endpoint_enabled,
           """ + _OFFER_WITHDRAWN + """ AS referral_withdrawn
    FROM deliveries d LEFT JOIN webhook_endpoints e ON e.target = d.target AND e.id = d.endpoint_id
    WHERE (d.id::text = ANY(%(ids)s) OR d.webhook_id = ANY(%(ids)s)) AND NOT (d.id = ANY(%(replayed)s::uuid[]))
"""
# Dead offers of withdrawn referrals that `replay --dead` passed over.
DEAD_BUT_WITHDRAWN = """
    SELECT d.id, d.webhook_id, d.status FROM dead_deliveries dd JOIN deliveries d ON d.id = dd.delivery_id
    WHERE dd.replayed_at IS NULL AND d.status = 'failed' AND """ + _OFFER_WITHDRAWN + """
"""
LIST_DEAD = """
    SELECT dd.id AS dead_id, d.id, d.webhook_id, d.kind, d.target, d.endpoint_id, d.lane, dd.attempts,
           dd.last_error, dd.dead_at, d.payload -> 'data' ->> 'case_reference' AS case_reference,
           """ + _OFFER_WITHDRAWN + """ AS referral_withdrawn
    FROM dead_deliveries dd JOIN deliveries d ON d.id = dd.delivery_id
    WHERE dd.replayed_at IS NULL
    ORDER BY dd.dead_at
"""

# Alerts ------------------------------------------------------------------------------------------------------

INSERT_ALERT = """
    INSERT INTO alerts (kind, endpoint_id, delivery_id, case_reference, detail, raised_at)
    VALUES (%(kind)s, %(endpoint_id)s, %(delivery_id)s, %(case_reference)s, %(detail)s, %(now)s)
    RETURNING id
"""
LIST_ALERTS = """
    SELECT id, kind, endpoint_id, delivery_id, case_reference, detail, raised_at, acknowledged_at, acknowledged_by
    FROM alerts WHERE %(all)s OR acknowledged_at IS NULL
    ORDER BY raised_at
"""
ACKNOWLEDGE_ALERT = """
    UPDATE alerts SET acknowledged_at = %(now)s, acknowledged_by = %(by)s
    WHERE id = %(id)s AND acknowledged_at IS NULL
    RETURNING id
"""
# Partner endpoints by state. Failing: enabled, and the last FAILING_AFTER attempts to it (in the last
# week) all failed.
ENDPOINT_STATES = """
    SELECT count(*) FILTER (WHERE e.enabled) AS enabled,
           count(*) FILTER (WHERE NOT e.enabled) AS disabled,
           count(*) FILTER (WHERE e.enabled AND (
               SELECT count(*) = %(failing_after)s AND bool_and(recent.outcome <> 'delivered')
               FROM (SELECT a.outcome FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
                     WHERE a.endpoint_id = e.partner_id AND d.target = 'partner'
                       AND d.created_at > %(now)s - interval '7 days' AND a.outcome <> 'superseded'
                     ORDER BY a.attempted_at DESC LIMIT %(failing_after)s) recent
           )) AS failing
    FROM endpoints e
"""
OPEN_ALERTS_BY_KIND = "SELECT kind, count(*) AS open FROM alerts WHERE acknowledged_at IS NULL GROUP BY kind"
