"""Triage's use cases, each taking its dependencies as arguments."""
import json
from datetime import datetime, timezone

from sanad.contracts.events import new_event
from sanad.contracts.sealing import evidence_context, narrative_context
from sanad.contracts.vocabulary import lane_for
from services.triage import sql
from services.triage.assessment import Assessment, CaseFacts, Reason

ASSESSMENT_FAILED = "assessment_failed"

PRODUCER = "triage"


def assess_or_escalate(assessor, facts):
    """The assessment, or, if the model fails on this note, a critical one saying so: missing a life in
    danger is the worst error this system can make, so a case nobody could score goes to a person now."""
    try:
        return assessor.assess(facts)
    except Exception:  # noqa: BLE001 -- any failure of the model on one note means the same thing
        return Assessment(level="critical", score=100, lexicon_version=assessor.lexicon_version,
                          reasons=(Reason(code=ASSESSMENT_FAILED, evidence=(), source="text"),))


def triage_case(cur, event, outbox, keys, assessor, now=None):
    """Assess a received case, store the assessment and announce it on the lane its level calls for."""
    data = event.data
    case_id = data["case_id"]
    narrative = keys.transport.open(data["sealed_narrative"], narrative_context(case_id))
    assessment = assess_or_escalate(assessor, CaseFacts(narrative=narrative, **data["facts"]))
    reasons = [{"code": r.code, "source": r.source} for r in assessment.reasons]
    evidence = {r.code: list(r.evidence) for r in assessment.reasons if r.evidence}
    evidence_json = json.dumps(evidence, ensure_ascii=False) if evidence else None
    cur.execute(sql.INSERT_ASSESSMENT, {
        "case_id": case_id,
        "reference": data["reference"],
        "event_id": event.id,
        "level": assessment.level,
        "score": assessment.score,
        "reasons": json.dumps(reasons),
        "evidence_sealed": keys.data.seal_optional(evidence_json, evidence_context(case_id)),
        "lexicon_version": assessment.lexicon_version,
        "received_at": data["received_at"],
        "assessed_at": now or datetime.now(timezone.utc),
    })
    if cur.fetchone() is None:
        return None  # already assessed under another event id (a replayed case.received)
    outbox.add(cur, new_event("case.triaged", {
        "case_id": case_id,
        "reference": data["reference"],
        "received_at": data["received_at"],
        "level": assessment.level,
        "score": assessment.score,
        "reasons": reasons,
        "sealed_evidence": keys.transport.seal_optional(evidence_json, evidence_context(case_id)),
        "lexicon_version": assessment.lexicon_version,
        "governorate": data["governorate"],
        "needs": data["needs"],
        "consents": data["consents"],
    }, producer=PRODUCER, correlation_id=event.correlation_id, lane=lane_for(assessment.level)))
    return assessment.level
