"""Notify's use cases, each taking its dependencies as arguments."""
import json
import logging
import os
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial

from sanad import webhooks
from sanad.contracts.events import new_event
from sanad.platform.pool import CONNECTION_ERRORS, PLAIN_INDEX_SCANS
from sanad.platform.reseal import BATCH as RESEAL_BATCH
from sanad.platform.reseal import reseal_rows
from services.notify import payloads, policy, sql, urls
from services.notify.dispatch import GroupRecorder
from services.notify.settings import NotifySettings, from_environment

log = logging.getLogger(__name__)

PRODUCER = "notify"
PARTNER, ONCALL = "partner", "oncall"
RECORD_RETRY_PAUSE = 0.5


@dataclass(frozen=True)
class Dispatch:
    """What an attempt needs from the outside: settings, the HTTP sender and DNS, the attempt pool, and
    what records attempts' results in groups."""
    settings: NotifySettings
    send: object     # send(url, body, headers) -> (policy.Result, latency ms, excerpt)
    resolve: object  # resolve(host, port) -> [address, ...]
    pool: object     # dispatch.AttemptPool
    recorder: GroupRecorder = field(default_factory=GroupRecorder)


@dataclass(frozen=True)
class Attempted:
    """What one attempt came to, for the service's metrics."""
    outcome: str             # delivered, retrying, failed
    target: str              # partner or oncall
    endpoint_disabled: bool  # this failure disabled the endpoint
    attempts: int            # attempts made in this round, this one included


def secret_context(endpoint_id) -> str:
    return f"endpoint:{endpoint_id}:secret"


def _utc_now():
    return datetime.now(timezone.utc)


# Endpoints ---------------------------------------------------------------------------------------------------

def check_url_for_registration(url, url_policy=None, resolve=None):
    """Refuse (urls.UnsafeUrl) a URL notify would never send to. A host that does not resolve yet is
    accepted: it is checked again before every send, when it must resolve to a public address."""
    if url_policy is None:
        url_policy = from_environment(os.environ).urls
    if resolve is None:
        from services.notify.sender import Sender
        resolve = Sender.resolve
    try:
        urls.check_url(url, url_policy, resolve)
    except urls.UnresolvableHost:
        log.warning("registered a webhook URL whose host does not resolve yet")


def register_endpoint(cur, keys, partner_id, url, secret, url_policy=None, resolve=None, now=None):
    """Record where a partner receives webhooks, with its first secret sealed at rest."""
    webhooks.secret_bytes(secret)  # refuse a malformed secret before storing it
    check_url_for_registration(url, url_policy, resolve)
    cur.execute(sql.INSERT_ENDPOINT, {"partner_id": partner_id, "url": url})
    _add_secret(cur, keys, partner_id, secret, now or _utc_now())


def register_oncall_endpoint(cur, keys, url, secret, name=None, url_policy=None, resolve=None, now=None):
    """Record an endpoint the on-duty supervisors are paged at. Returns its id."""
    webhooks.secret_bytes(secret)
    check_url_for_registration(url, url_policy, resolve)
    endpoint_id = uuid.uuid4()
    cur.execute(sql.INSERT_ONCALL_ENDPOINT, {"id": endpoint_id, "name": name, "url": url})
    _add_secret(cur, keys, endpoint_id, secret, now or _utc_now())
    return endpoint_id


def rotate_secret(cur, keys, endpoint_id, secret, overlap, now=None):
    """Sign with `secret` from now on, and with the secrets in use until `overlap` (a timedelta) has
    passed, so the partner can switch without losing a webhook. Returns when the old secrets expire."""
    now = now or _utc_now()
    webhooks.secret_bytes(secret)
    cur.execute(sql.ENDPOINT, {"id": endpoint_id})
    if cur.fetchone() is None:
        raise LookupError(f"no webhook endpoint {endpoint_id}")
    until = now + overlap
    cur.execute(sql.EXPIRE_SECRETS, {"endpoint_id": endpoint_id, "until": until})
    _add_secret(cur, keys, endpoint_id, secret, now)
    return until


def _add_secret(cur, keys, endpoint_id, secret, now):
    cur.execute(sql.INSERT_SECRET, {
        "endpoint_id": endpoint_id, "secret_sealed": keys.data.seal(secret, secret_context(endpoint_id)),
        "now": now,
    })


def reseal(pool, ring, batch=RESEAL_BATCH) -> dict:
    """The webhook secrets under `ring`'s primary key (`sanad keys reseal`)."""
    return {"endpoint_secrets": reseal_rows(pool, ring, sql.SECRETS_TO_RESEAL, sql.UPDATE_SECRET_SEAL,
                                            {"secret_sealed": lambda row: secret_context(row["endpoint_id"])},
                                            start=0, batch=batch)}


def set_endpoint_enabled(cur, endpoint_id, enabled, reason=None, now=None):
    """Enable or disable an endpoint by hand. Enabling a partner's endpoint forgets its failures."""
    params = {"id": endpoint_id, "enabled": enabled, "reason": reason or "disabled by hand", "now": now or _utc_now()}
    cur.execute(sql.SET_PARTNER_ENDPOINT_ENABLED, params)
    if cur.fetchone() is None:
        cur.execute(sql.SET_ONCALL_ENDPOINT_ENABLED, params)
        if cur.fetchone() is None:
            raise LookupError(f"no webhook endpoint {endpoint_id}")


# Scheduling --------------------------------------------------------------------------------------------------

def schedule_offer(cur, event, public_url, now=None):
    """Record the webhook offering a new referral to its partner, due at once. Returns [(delivery id,
    endpoint id)] (see _insert_delivery)."""
    data = event.data
    now = now or _utc_now()
    return _insert_delivery(cur, now, {
        "id": uuid.uuid4(),
        "webhook_id": f"msg_{data['referral_id'].hex}",
        "kind": "referral.offered", "target": PARTNER, "endpoint_id": data["partner_id"],
        "referral_id": data["referral_id"], "case_id": data["case_id"], "partner_id": data["partner_id"],
        "lane": event.lane,
        "payload": payloads.referral_offered(data, now, public_url),
    })


def schedule_pages(cur, event, now=None):
    """Record one page per enabled on-call endpoint for an escalation, on the escalation's lane. With no
    endpoint to page, raise an alert instead: the supervisors must hear of it somehow."""
    data = event.data
    now = now or _utc_now()
    cur.execute(sql.ENABLED_ONCALL_ENDPOINTS)
    endpoints = [row["id"] for row in cur.fetchall()]
    if not endpoints:
        raise_alert(cur, "no_pager_endpoint", now, case_reference=data["reference"],
                    detail=f"escalation ({data['reason']}, step {data['step']}) with no on-call endpoint to page")
        log.error("an escalation found no on-call endpoint to page (event %s)", event.id)
        return []
    scheduled = []
    body = payloads.referral_escalated(data, now)
    for endpoint_id in endpoints:
        scheduled += _insert_delivery(cur, now, {
            "id": uuid.uuid4(),
            # Stable for this escalation and endpoint, so a redelivered event cannot page twice.
            "webhook_id": f"msg_{uuid.uuid5(event.id, str(endpoint_id)).hex}",
            "kind": "referral.escalated", "target": ONCALL, "endpoint_id": endpoint_id,
            "referral_id": data["referral_id"], "case_id": data["case_id"], "partner_id": None,
            "lane": event.lane, "payload": body,
        })
    return scheduled


def referral_status_changed(cur, event, now=None):
    """A referral referral withdrew is no longer offered: the webhook offering it stops being tried (its
    delivery is cancelled), is never replayed, and is not made should it come after this. Pages about the
    referral still go. Other status changes concern notify not. Returns the deliveries cancelled."""
    data = event.data
    if data["status"] != "withdrawn":
        return []
    cur.later(sql.WITHDRAWAL_OF_REFERRAL_LOCKED, {"referral_id": str(data["referral_id"])})
    cur.execute(sql.CANCEL_WITHDRAWN_OFFER, {"referral_id": data["referral_id"], "now": now or _utc_now()})
    cancelled = [row["id"] for row in cur.fetchall()]
    if cancelled:
        log.info("referral %s was withdrawn: its offer's delivery is cancelled", data["referral_id"])
    return cancelled


def _insert_delivery(cur, now, row):
    """[(delivery id, endpoint id)] of the delivery `row`, which goes to PostgreSQL with the transaction's
    next statement (the claim of it, if the pool has room for its attempt; else the COMMIT, with the
    batch's other deliveries): a round trip of its own was one of the four a critical webhook took in
    notify (docs/performance.md, item 43).
    Where the event was handled before, its webhook id is taken and nothing is inserted; claiming the id
    returned then finds nothing. An offer waits for a withdrawal of its referral under way, and is then
    not made (sql.OFFER_OF_REFERRAL_LOCKED)."""
    payloads.encode(row["payload"])  # refuse an oversized body here, not at every attempt
    if row["kind"] == "referral.offered":
        cur.later(sql.OFFER_OF_REFERRAL_LOCKED, {"referral_id": str(row["referral_id"])})
    cur.later(sql.INSERT_DELIVERY, {**row, "payload": json.dumps(row["payload"]), "now": now})
    return [(row["id"], row["endpoint_id"])]


# Claiming ----------------------------------------------------------------------------------------------------

def claim(cur, delivery_id, settings, now=None):
    """The delivery, leased for an attempt, if it is due and nobody holds it; else nothing ([])."""
    cur.execute(sql.CLAIM_BY_ID, {"id": delivery_id, "now": now or _utc_now(), "lease": settings.lease_seconds,
                                  "pending": sql.PENDING})
    return cur.fetchall()


def claim_due(pool, lane, limit, in_flight, settings, now=None):
    """Up to `limit` due deliveries of `lane`, oldest first, none beyond what an endpoint may hold
    (`settings.held_per_endpoint`, less the attempts it holds now: `in_flight`)."""
    if limit <= 0:
        return []
    with pool.transaction() as cur:
        cur.execute(sql.CLAIM_DUE, {
            "lane": lane, "limit": limit, "in_flight": json.dumps(in_flight),
            "held_per_endpoint": settings.held_per_endpoint, "now": now or _utc_now(), "lease": settings.lease_seconds,
            "pending": sql.PENDING,
        })
        return cur.fetchall()


# Attempting --------------------------------------------------------------------------------------------------

def attempt(pool, outbox, keys, delivery, dispatch, request_ended=lambda: None, now=_utc_now,
            rand=random.random, pause=time.sleep) -> Attempted | None:
    """Send one claimed delivery, record the attempt and what comes next, and announce it. After the last
    attempt: a dead letter, `notification.exhausted` (partners) or an alert (the pager), and a partner's
    endpoint that keeps failing, or answers 410 Gone, is disabled. Returns None when the lease was lost
    meanwhile, or too little of it is left to send.
    `request_ended()` is called once the partner has answered (or the request failed), before recording.

    The webhook has gone out when its result is recorded, so a database that blinks then is retried for
    as long as the lease lasts: giving up sooner would send the same webhook again."""
    settings = dispatch.settings
    if now() + timedelta(seconds=settings.attempt_deadline) >= delivery["lease_until"]:
        # It waited for its endpoint so long that its request could outlast the lease, and another worker
        # might send the same webhook meanwhile: the sweep takes it up again when the lease runs out.
        log.warning("attempt %s of delivery %s waited too long for its endpoint; it is tried again when its "
                    "lease runs out", delivery["attempts"], delivery["id"])
        return None
    result, latency_ms, excerpt = _send(keys, delivery, dispatch, now)
    request_ended()
    attempted_at = now()
    round_attempt = delivery["attempts"] - delivery["round_start"]
    next_at = policy.next_attempt_at(result, round_attempt, attempted_at, rand, settings.retry)
    outcome = policy.outcome(result, next_at)
    tried = Tried(result, outcome, latency_ms, excerpt, attempted_at, next_at)
    record_all = partial(record_attempts, pool, outbox, settings)
    while True:
        try:
            return dispatch.recorder.record(record_all, (delivery, tried))
        except CONNECTION_ERRORS:
            if now() + timedelta(seconds=RECORD_RETRY_PAUSE) >= delivery["lease_until"]:
                raise
            log.warning("database unavailable while recording attempt %s of delivery %s; trying again",
                        delivery["attempts"], delivery["id"])
            pause(RECORD_RETRY_PAUSE)


@dataclass(frozen=True)
class Tried:
    """One attempt's result and what follows from it, before it is recorded."""
    result: policy.Result
    outcome: str
    latency_ms: float
    excerpt: str
    attempted_at: datetime
    next_at: datetime | None


def record_attempts(pool, outbox, settings, attempts) -> list:
    """Record (delivery, Tried) pairs in one transaction; their Attempted (or None), in order. Every
    delivery is finished by one statement, and the rest goes with COMMIT: two round trips however many
    attempts end together. Each delivery is this process's by its lease, so another transaction waits
    for one of them only when it took the delivery over after the lease ran out; the endpoints' rows are
    written in the order of endpoint, so two such transactions never wait for each other in a circle
    there."""
    with pool.transaction() as cur:
        cur.execute(sql.FINISH_ATTEMPTS, {
            "finished": json.dumps([_finishing(delivery, tried) for delivery, tried in attempts]),
            "ids": [delivery["id"] for delivery, _ in attempts], "pending": sql.PENDING,
        })
        finished = {(row["id"], row["attempts"]) for row in cur.fetchall()}
        results = [None] * len(attempts)
        for i in sorted(range(len(attempts)), key=lambda i: str(attempts[i][0]["endpoint_id"])):
            delivery, tried = attempts[i]
            results[i] = _record(cur, outbox, delivery, tried, settings,
                                 finished=(delivery["id"], delivery["attempts"]) in finished)
    return results


def _finishing(delivery, tried) -> dict:
    """How an attempt leaves its delivery, as FINISH_ATTEMPTS reads it."""
    return {
        "id": str(delivery["id"]), "attempt": delivery["attempts"], "attempted_at": tried.attempted_at.isoformat(),
        "status": {"delivered": "delivered", "retrying": "pending", "failed": "failed"}[tried.outcome],
        "next_attempt_at": tried.next_at and tried.next_at.isoformat(),
    }


def _record(cur, outbox, delivery, tried, settings, finished) -> Attempted | None:
    result, outcome = tried.result, tried.outcome
    attempt_row = {
        "delivery_id": delivery["id"], "endpoint_id": delivery["endpoint_id"], "attempt": delivery["attempts"],
        "attempted_at": tried.attempted_at, "outcome": outcome, "status_code": result.status_code,
        "error": result.error, "latency_ms": tried.latency_ms, "response_excerpt": tried.excerpt or None,
    }
    disabled = False
    if not finished:
        # The lease ran out and another worker took this delivery over: the try is kept on record,
        # and the delivery is left to the worker that holds it now.
        cur.later(sql.INSERT_ATTEMPT, {**attempt_row, "outcome": "superseded"})
        log.warning("attempt %s of delivery %s finished after its lease ran out; another worker has it",
                    delivery["attempts"], delivery["id"])
        return None
    cur.later(sql.INSERT_ATTEMPT, attempt_row)
    if delivery["target"] == PARTNER:
        _announce_attempt(cur, outbox, delivery, result, outcome, tried.latency_ms, tried.attempted_at,
                          tried.next_at)
    if outcome == "delivered" and delivery["target"] == PARTNER:
        cur.later(sql.RESET_EXHAUSTED, {"endpoint_id": delivery["endpoint_id"]})
    if outcome == "failed":
        disabled = _bury(cur, outbox, delivery, result, tried.attempted_at, settings)
    return Attempted(outcome, delivery["target"], disabled, delivery["attempts"] - delivery["round_start"])


def _send(keys, delivery, dispatch, now):
    if delivery["url"] is None:
        return policy.Result(None, "no_endpoint"), 0.0, ""
    if not delivery["enabled"]:
        return policy.Result(None, "endpoint_disabled"), 0.0, ""
    try:
        urls.check_url(delivery["url"], dispatch.settings.urls, dispatch.resolve)
    except urls.UnsafeUrl:
        return policy.Result(None, "url_refused"), 0.0, ""
    except urls.UnresolvableHost:
        return policy.Result(None, "connection_error"), 0.0, ""
    secrets = [keys.data.open(sealed, secret_context(delivery["endpoint_id"]))
               for sealed in delivery["secrets_sealed"]]
    if not secrets:
        return policy.Result(None, "no_secret"), 0.0, ""
    body = payloads.encode(delivery["payload"])
    timestamp = int(now().timestamp())
    headers = webhooks.signed_headers(secrets, delivery["webhook_id"], timestamp, body)
    return dispatch.send(delivery["url"], body, headers)


def _announce_attempt(cur, outbox, delivery, result, outcome, latency_ms, attempted_at, next_at):
    outbox.add(cur, new_event("delivery.attempted", {
        "delivery_id": delivery["id"], "webhook_id": delivery["webhook_id"],
        "referral_id": delivery["referral_id"], "case_id": delivery["case_id"],
        "partner_id": delivery["partner_id"], "attempt": delivery["attempts"], "outcome": outcome,
        "status_code": result.status_code, "latency_ms": latency_ms, "attempted_at": attempted_at,
        "next_attempt_at": next_at,
    }, producer=PRODUCER, correlation_id=delivery["case_id"], lane=delivery["lane"]))


def _bury(cur, outbox, delivery, result, now, settings) -> bool:
    """The last attempt failed. Returns True when this disabled the partner's endpoint."""
    last_error = policy.failure_summary(result)
    cur.later(sql.INSERT_DEAD_DELIVERY, {
        "delivery_id": delivery["id"], "attempts": delivery["attempts"], "last_error": last_error, "now": now,
    })
    reference = delivery["payload"]["data"].get("case_reference")
    if delivery["target"] == ONCALL:
        raise_alert(cur, "pager_exhausted", now, endpoint_id=delivery["endpoint_id"], delivery_id=delivery["id"],
                    case_reference=reference,
                    detail=f"page not delivered after {delivery['attempts']} attempts ({last_error})")
        log.error("page %s to on-call endpoint %s not delivered after %s attempts (%s)",
                  delivery["id"], delivery["endpoint_id"], delivery["attempts"], last_error)
        return False
    outbox.add(cur, new_event("notification.exhausted", {
        "delivery_id": delivery["id"], "webhook_id": delivery["webhook_id"],
        "referral_id": delivery["referral_id"], "case_id": delivery["case_id"],
        "partner_id": delivery["partner_id"], "attempts": delivery["attempts"],
        "last_status_code": result.status_code, "last_error": result.error, "exhausted_at": now,
    }, producer=PRODUCER, correlation_id=delivery["case_id"], lane=delivery["lane"]))
    log.warning("delivery %s to partner endpoint %s exhausted after %s attempts (%s)",
                delivery["id"], delivery["endpoint_id"], delivery["attempts"], last_error)
    cur.execute(sql.COUNT_EXHAUSTED, {"endpoint_id": delivery["endpoint_id"]})
    counted = cur.fetchone()
    if counted is None or not counted["enabled"]:
        return False
    if policy.is_gone(result):
        reason = "the endpoint answered 410 Gone: it asks for no more webhooks"
    elif policy.should_disable(counted["consecutive_exhausted"], settings.disable_after):
        reason = f"{counted['consecutive_exhausted']} deliveries in a row exhausted; last: {last_error}"
    else:
        return False
    cur.execute(sql.DISABLE_ENDPOINT, {"endpoint_id": delivery["endpoint_id"], "reason": reason, "now": now})
    if cur.fetchone() is None:
        return False
    raise_alert(cur, "endpoint_disabled", now, endpoint_id=delivery["endpoint_id"], delivery_id=delivery["id"],
                case_reference=reference, detail=f"partner endpoint disabled: {reason}")
    log.error("disabled partner webhook endpoint %s: %s", delivery["endpoint_id"], reason)
    return True


# Alerts ------------------------------------------------------------------------------------------------------

def raise_alert(cur, kind, now, detail, endpoint_id=None, delivery_id=None, case_reference=None):
    cur.execute(sql.INSERT_ALERT, {
        "kind": kind, "endpoint_id": endpoint_id, "delivery_id": delivery_id, "case_reference": case_reference,
        "detail": detail, "now": now,
    })
    return cur.fetchone()["id"]


FAILING_AFTER = 3  # failed attempts in a row that make an endpoint "failing" on the dashboard


def endpoint_states(pool, now=None) -> dict:
    """{"enabled": n, "disabled": n, "failing": n} for partner endpoints; failing ones are enabled ones
    whose last FAILING_AFTER attempts all failed."""
    with pool.transaction() as cur:
        cur.later(PLAIN_INDEX_SCANS)  # each endpoint's last attempts, not all of them then a sort
        cur.execute(sql.ENDPOINT_STATES, {"failing_after": FAILING_AFTER, "now": now or _utc_now()})
        return dict(cur.fetchone())


def open_alerts_by_kind(pool) -> dict:
    with pool.transaction() as cur:
        cur.execute(sql.OPEN_ALERTS_BY_KIND)
        return {row["kind"]: row["open"] for row in cur.fetchall()}


def acknowledge_alert(cur, alert_id, by, now=None) -> bool:
    cur.execute(sql.ACKNOWLEDGE_ALERT, {"id": alert_id, "by": by, "now": now or _utc_now()})
    return cur.fetchone() is not None


def list_alerts(cur, include_acknowledged=False):
    cur.execute(sql.LIST_ALERTS, {"all": include_acknowledged})
    return cur.fetchall()


# Replay ------------------------------------------------------------------------------------------------------

WITHDRAWN = "referral withdrawn: the partner no longer has this offer"


def replay(cur, dead=False, chosen=(), now=None):
    """Send again, under their own webhook-ids, every dead delivery not yet replayed (`dead`) or the
    deliveries chosen by delivery id or webhook-id. Each starts a fresh round of attempts, taken up by
    the notify process of its lane within a second. An offer of a referral since withdrawn is never sent
    again. Returns (replayed, skipped): rows with id, webhook_id and lane; skipped ones also say why
    (still being tried, referral withdrawn, endpoint disabled, unknown), and those `dead` passed over
    (a withdrawn referral's) have "dead": True."""
    now = now or _utc_now()
    replayed = []
    if dead:
        cur.execute(sql.REPLAY_DEAD, {"now": now})
        replayed += cur.fetchall()
    chosen = [str(value) for value in chosen]
    if chosen:
        cur.execute(sql.REPLAY_CHOSEN, {"ids": chosen, "now": now})
        replayed += cur.fetchall()
    replayed_ids = [row["id"] for row in replayed]
    cur.execute(sql.MARK_REPLAYED, {"delivery_ids": replayed_ids, "now": now})
    skipped = []
    if dead:
        cur.execute(sql.DEAD_BUT_WITHDRAWN)
        skipped += [{**row, "why": WITHDRAWN, "dead": True} for row in cur.fetchall()]
    if chosen:
        cur.execute(sql.NOT_REPLAYED, {"ids": chosen, "replayed": replayed_ids})
        for row in cur.fetchall():
            if any(row["id"] == other["id"] for other in skipped):
                continue
            why = "still being tried" if row["status"] == "pending" else WITHDRAWN if row["referral_withdrawn"] \
                else "endpoint disabled or removed" if not row["endpoint_enabled"] else "not replayable"
            skipped.append({**row, "why": why})
        found = {str(row["id"]) for row in replayed + skipped} | {row["webhook_id"] for row in replayed + skipped}
        skipped += [{"id": None, "webhook_id": None, "asked": value, "why": "no such delivery"}
                    for value in chosen if value not in found]
    return replayed, skipped


def list_dead(cur):
    cur.execute(sql.LIST_DEAD)
    return cur.fetchall()


def list_endpoints(cur, target=None, now=None):
    cur.execute(sql.LIST_ENDPOINTS, {"target": target, "now": now or _utc_now()})
    return cur.fetchall()
