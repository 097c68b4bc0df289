"""Intake's use cases, each taking its dependencies as arguments."""
import json
import uuid
from datetime import datetime, timezone

from sanad.contracts.events import new_event
from sanad.contracts.sealing import evidence_context, narrative_context
from services.intake import cases, sql

PRODUCER = "intake"


class DuplicateSubmission(Exception):
    """The Idempotency-Key was used before; the case it created is attached."""

    def __init__(self, case):
        super().__init__("case already recorded for this idempotency key")
        self.case = case


def record_case(cur, outbox, keys, fields, idempotency_key=None, now=None):
    """Store a new case and its case.received event in the caller's transaction."""
    if idempotency_key:
        cur.execute(sql.CASE_BY_IDEMPOTENCY_KEY, {"key": idempotency_key})
        existing = cur.fetchone()
        if existing:
            raise DuplicateSubmission(existing)
    case_id = uuid.uuid4()
    received_at = now or datetime.now(timezone.utc)
    row = {
        **fields,
        "id": case_id,
        "idempotency_key": idempotency_key,
        "received_at": received_at,
        "narrative_sealed": keys.data.seal(fields["narrative"], narrative_context(case_id)),
    }
    while True:
        row["reference"] = cases.new_reference()
        cur.execute(sql.INSERT_CASE, row)
        if cur.fetchone() is not None:
            break
        if idempotency_key:  # a concurrent request with the same key may have won the race
            cur.execute(sql.CASE_BY_IDEMPOTENCY_KEY, {"key": idempotency_key})
            existing = cur.fetchone()
            if existing:
                raise DuplicateSubmission(existing)
        # otherwise the reference was taken: draw another
    outbox.add(cur, new_event("case.received", {
        "case_id": case_id,
        "reference": row["reference"],
        "received_at": received_at,
        "channel": fields["channel"],
        "governorate": fields["governorate"],
        "needs": fields["needs"],
        "consents": fields["consents"],
        "facts": cases.facts_of(fields),
        "sealed_narrative": keys.transport.seal(fields["narrative"], narrative_context(case_id)),
    }, producer=PRODUCER, correlation_id=case_id))
    return {"id": case_id, "reference": row["reference"]}


def case_view(cur, case_id):
    """What the API shows of a case: its risk, referrals and deliveries; no personal text."""
    cur.execute(sql.CASE_BY_ID, {"id": case_id})
    case = cur.fetchone()
    if case is None:
        return None
    cur.execute(sql.REFERRALS_OF_CASE, {"case_id": case_id})
    referrals = cur.fetchall()
    cur.execute(sql.DELIVERIES_OF_CASE, {"case_id": case_id})
    deliveries = cur.fetchall()
    return {
        "id": case["id"],
        "reference": case["reference"],
        "received_at": case["received_at"].isoformat(),
        "channel": case["channel"],
        "governorate": case["governorate"],
        "needs": case["needs"],
        "consents": case["consents"],
        "status": cases.case_status(case, referrals, deliveries),
        "risk": None if not case["risk_level"] else {
            "level": case["risk_level"],
            "score": case["risk_score"],
            "reasons": case["risk_reasons"],
            "lexicon_version": case["lexicon_version"],
            "assessed_at": case["triaged_at"].isoformat(),
        },
        "unmatched_services": case["unmatched_services"] or [],
        "referrals": [
            {
                "id": ref["id"],
                "partner_id": ref["partner_id"],
                "partner_name": ref["partner_name"],
                "service": ref["service"],
                "created_at": ref["created_at"].isoformat(),
                "deliveries": [
                    {
                        "webhook_id": d["webhook_id"],
                        "attempt": d["attempt"],
                        "outcome": d["outcome"],
                        "status_code": d["status_code"],
                        "latency_ms": d["latency_ms"],
                        "attempted_at": d["attempted_at"].isoformat(),
                        "next_attempt_at": d["next_attempt_at"] and d["next_attempt_at"].isoformat(),
                    }
                    for d in deliveries if d["referral_id"] == ref["id"]
                ],
            }
            for ref in referrals
        ],
    }


def record_status(cur, event, keys):
    """Keep the operators' view of a case up to date with what the other services report."""
    data = event.data
    if event.type == "case.triaged":
        context = evidence_context(data["case_id"])
        evidence = keys.transport.open_optional(data["sealed_evidence"], context)
        cur.execute(sql.RECORD_TRIAGE, {
            "case_id": data["case_id"], "level": data["level"], "score": data["score"],
            "reasons": json.dumps(data["reasons"]), "evidence_sealed": keys.data.seal_optional(evidence, context),
            "lexicon_version": data["lexicon_version"], "triaged_at": event.occurred_at,
        })
    elif event.type == "case.unmatched":
        cur.execute(sql.RECORD_UNMATCHED, {"case_id": data["case_id"], "services": data["services"]})
    elif event.type == "referral.created":
        cur.execute(sql.RECORD_REFERRAL, data)
    elif event.type == "delivery.attempted":
        cur.execute(sql.RECORD_DELIVERY_ATTEMPT, data)
