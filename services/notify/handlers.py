"""Notify's use cases, each taking its dependencies as arguments."""
import json
import random
import uuid
from datetime import datetime, timezone

from sanad import webhooks
from sanad.contracts.events import new_event
from services.notify import payloads, policy, sql

PRODUCER = "notify"
LEASE_SECONDS = 60
SWEEP_BATCH = 20


def secret_context(partner_id) -> str:
    return f"endpoint:{partner_id}:secret"


def register_endpoint(cur, keys, partner_id, url, secret):
    webhooks.secret_bytes(secret)  # refuse a malformed secret before storing it
    cur.execute(sql.INSERT_ENDPOINT, {
        "partner_id": partner_id, "url": url,
        "secret_sealed": keys.data.seal(secret, secret_context(partner_id)),
    })


def schedule_delivery(cur, event, now=None):
    """Record the webhook offering a new referral, due at once. Returns the delivery id, or None when
    this referral already has one."""
    data = event.data
    now = now or datetime.now(timezone.utc)
    delivery_id = uuid.uuid4()
    cur.execute(sql.INSERT_DELIVERY, {
        "id": delivery_id,
        "webhook_id": f"msg_{data['referral_id'].hex}",
        "referral_id": data["referral_id"],
        "case_id": data["case_id"],
        "partner_id": data["partner_id"],
        "lane": event.lane,
        "payload": json.dumps(payloads.referral_offered(data, now)),
        "now": now,
    })
    row = cur.fetchone()
    return row and row["id"]


def claim(pool, claim_sql, params, now=None):
    with pool.transaction() as cur:
        cur.execute(claim_sql, {**params, "now": now or datetime.now(timezone.utc), "lease": LEASE_SECONDS})
        return cur.fetchall()


def claim_one(pool, delivery_id):
    return claim(pool, sql.CLAIM_BY_ID, {"id": delivery_id})


def claim_due(pool, lane):
    return claim(pool, sql.CLAIM_DUE, {"lane": lane, "limit": SWEEP_BATCH})


def attempt(pool, outbox, keys, delivery, post, now=datetime.now, rand=random.random):
    """Send one claimed delivery, record the attempt and what comes next, and announce it."""
    if not delivery["enabled"]:
        result, latency_ms, excerpt = policy.Result(None, "endpoint_disabled"), 0.0, ""
    else:
        secret = keys.data.open(delivery["secret_sealed"], secret_context(delivery["partner_id"]))
        body = json.dumps(delivery["payload"], ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(now(timezone.utc).timestamp())
        headers = webhooks.signed_headers([secret], delivery["webhook_id"], timestamp, body)
        result, latency_ms, excerpt = post(delivery["url"], body, headers)
    attempted_at = now(timezone.utc)
    next_at = policy.next_attempt_at(result, delivery["attempts"], attempted_at, rand)
    outcome = policy.outcome(result, next_at)
    with pool.transaction() as cur:
        cur.execute(sql.FINISH_ATTEMPT, {
            "delivery_id": delivery["id"], "attempt": delivery["attempts"], "attempted_at": attempted_at,
            "next_attempt_at": next_at,
            "status": {"delivered": "delivered", "retrying": "pending", "failed": "failed"}[outcome],
        })
        if cur.fetchone() is None:
            return None  # the lease ran out and another worker took this delivery over
        cur.execute(sql.INSERT_ATTEMPT, {
            "delivery_id": delivery["id"], "attempt": delivery["attempts"], "attempted_at": attempted_at,
            "outcome": outcome, "status_code": result.status_code, "error": result.error,
            "latency_ms": latency_ms, "response_excerpt": excerpt or None,
        })
        outbox.add(cur, new_event("delivery.attempted", {
            "delivery_id": delivery["id"], "webhook_id": delivery["webhook_id"],
            "referral_id": delivery["referral_id"], "case_id": delivery["case_id"],
            "partner_id": delivery["partner_id"], "attempt": delivery["attempts"], "outcome": outcome,
            "status_code": result.status_code, "latency_ms": latency_ms, "attempted_at": attempted_at,
            "next_attempt_at": next_at,
        }, producer=PRODUCER, correlation_id=delivery["case_id"]))
    return outcome
