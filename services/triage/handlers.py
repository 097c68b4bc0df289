"""Triage's use cases, each taking its dependencies as arguments."""
import json
from datetime import datetime, timezone

from sanad.contracts.events import new_event, no_preferences, particulars, seal_particulars
from sanad.contracts.sealing import evidence_context, narrative_context, override_reason_context, preferences_context
from sanad.contracts.vocabulary import lane_for
from sanad.platform.reseal import BATCH as RESEAL_BATCH
from sanad.platform.reseal import reseal_rows
from services.triage import sql
from services.triage.assessment import LEVEL_CEILING, LEVEL_FLOOR, Assessment, CaseFacts, Reason

ASSESSMENT_FAILED = "assessment_failed"
OVERRIDE_REASON = {"code": "override", "source": "override"}

PRODUCER = "triage"


def assess_or_escalate(assessor, facts):
    """The assessment, or, if the model fails on this note, a critical one saying so: missing a life in
    danger is the worst error this system can make, so a case nobody could score goes to a person now."""
    try:
        return assessor.assess(facts)
    except Exception:  # noqa: BLE001 -- any failure of the model on one note means the same thing
        return Assessment(level="critical", score=100, lexicon_version=assessor.lexicon_version,
                          reasons=(Reason(code=ASSESSMENT_FAILED, evidence=(), source="text"),))


class Assessments:
    """Stores a transaction's assessments. Alone, an assessment is inserted in a round trip that says
    whether the case was assessed already (its case.received replayed under another event id). A batch's
    cases are looked up together first (`read`, handle_batch's `prepare`), and each new assessment then
    goes to PostgreSQL with the next statement, the COMMIT: a round trip a case was most of triage's round
    trips in a flood (docs/performance.md, item 47). A case assessed by another process between the read
    and the COMMIT fails the batch on the table's key, and the consumer hands the batch over again one
    event at a time. One instance a transaction."""

    def __init__(self):
        self._assessed = None  # case ids assessed before or in this transaction, once read

    def read(self, cur, events):
        cur.execute(sql.ASSESSED_AMONG, {"case_ids": [event.data["case_id"] for event in events]})
        self._assessed = {row["case_id"] for row in cur.fetchall()}

    def store(self, cur, row) -> bool:
        """Insert the assessment `row`; False, and nothing stored, if its case was assessed already."""
        if self._assessed is None:
            cur.execute(sql.INSERT_ASSESSMENT, row)
            return cur.fetchone() is not None
        if row["case_id"] in self._assessed:
            return False
        self._assessed.add(row["case_id"])
        cur.later(sql.INSERT_NEW_ASSESSMENT, row)
        return True


def triage_case(cur, event, outbox, keys, assessor, assessments=None, now=None):
    """Assess a received case, store the assessment (through `assessments`, an Assessments of the
    transaction) and announce it on the lane its level calls for."""
    data = event.data
    case_id = data["case_id"]
    narrative = keys.transport.open(data["sealed_narrative"], narrative_context(case_id))
    received = particulars(event, keys.transport)
    assessment = assess_or_escalate(assessor, CaseFacts(narrative=narrative, **received["facts"]))
    reasons = [{"code": r.code, "source": r.source} for r in assessment.reasons]
    evidence = {r.code: list(r.evidence) for r in assessment.reasons if r.evidence}
    evidence_json = json.dumps(evidence, ensure_ascii=False) if evidence else None
    preferences = received["preferences"]
    stored = (assessments or Assessments()).store(cur, {
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
        "governorate": data["governorate"],
        "needs": data["needs"],
        "consents": data["consents"],
        "preferences_sealed": keys.data.seal(json.dumps(preferences), preferences_context(case_id)),
    })
    if not stored:
        return None
    outbox.add(cur, new_event("case.triaged", {
        "case_id": case_id,
        "reference": data["reference"],
        "received_at": data["received_at"],
        "level": assessment.level,
        "score": assessment.score,
        "sealed_particulars": seal_particulars("case.triaged", {"reasons": reasons, "preferences": preferences},
                                               keys.transport, case_id),
        "sealed_evidence": keys.transport.seal_optional(evidence_json, evidence_context(case_id)),
        "lexicon_version": assessment.lexicon_version,
        "governorate": data["governorate"],
        "needs": data["needs"],
        "consents": data["consents"],
    }, producer=PRODUCER, correlation_id=event.correlation_id, lane=lane_for(assessment.level)))
    return assessment.level


class NotYetAssessed(Exception):
    """An override arrived for a case triage has not assessed (or assessed before overrides were kept).
    Raised so the inbox returns the event to the queue and tries again."""


def override_case(cur, event, outbox, keys, now=None):
    """Record a staff override of a case's risk level, keeping the original assessment, and announce the
    new level as case.triaged on the lane it calls for: the original reasons stay, with one more,
    {code: override, source: override}; the score is the original moved into the new level's range."""
    data = event.data
    case_id = data["case_id"]
    cur.execute(sql.ASSESSMENT_OF_CASE, {"case_id": case_id})
    assessment = cur.fetchone()
    if assessment is None or assessment["governorate"] is None:
        raise NotYetAssessed(str(case_id))
    context = override_reason_context(case_id)
    reason = keys.transport.open(data["sealed_reason"], context)
    cur.execute(sql.INSERT_OVERRIDE, {
        "event_id": event.id, "case_id": case_id, "previous_level": data["previous_level"], "level": data["level"],
        "reason_sealed": keys.data.seal(reason, context), "overridden_by": data["overridden_by"],
        "role": data["role"], "overridden_at": data["overridden_at"],
        "recorded_at": now or datetime.now(timezone.utc),
    })
    level = data["level"]
    reasons = [r for r in assessment["reasons"] if r != OVERRIDE_REASON] + [OVERRIDE_REASON]
    evidence = keys.data.open_optional(assessment["evidence_sealed"], evidence_context(case_id))
    outbox.add(cur, new_event("case.triaged", {
        "case_id": case_id,
        "reference": assessment["reference"],
        "received_at": assessment["received_at"],
        "level": level,
        "score": min(LEVEL_CEILING[level], max(LEVEL_FLOOR[level], assessment["score"])),
        "sealed_particulars": seal_particulars("case.triaged", {
            "reasons": reasons,
            "preferences": _kept_preferences(assessment, keys),
        }, keys.transport, case_id),
        "sealed_evidence": keys.transport.seal_optional(evidence, evidence_context(case_id)),
        "lexicon_version": assessment["lexicon_version"],
        "governorate": assessment["governorate"],
        "needs": assessment["needs"],
        "consents": assessment["consents"],
    }, producer=PRODUCER, correlation_id=event.correlation_id, lane=lane_for(level), now=now))
    return level


def _kept_preferences(assessment, keys) -> dict:
    """What the victim asked of her helpers, as the assessment keeps it: sealed, or in the clear in a row
    assessed before migration 0004 and not resealed since, or not at all before migration 0003."""
    if assessment["preferences_sealed"]:
        return json.loads(keys.data.open(assessment["preferences_sealed"],
                                         preferences_context(assessment["case_id"])))
    return assessment["preferences"] or no_preferences()


def reseal(pool, ring, batch=RESEAL_BATCH) -> dict:
    """Triage's sealed values under `ring`'s primary key, and the preferences kept in the clear before
    migration 0004 sealed (`sanad keys reseal`)."""
    return {
        "assessments": reseal_rows(pool, ring, sql.ASSESSMENTS_TO_RESEAL, sql.UPDATE_ASSESSMENT_SEAL,
                                   {"evidence_sealed": lambda row: evidence_context(row["case_id"]),
                                    "preferences_sealed": lambda row: preferences_context(row["case_id"])},
                                   key="case_id", batch=batch,
                                   in_the_clear={"preferences_sealed": "preferences"}),
        "overrides": reseal_rows(pool, ring, sql.OVERRIDES_TO_RESEAL, sql.UPDATE_OVERRIDE_SEAL,
                                 {"reason_sealed": lambda row: override_reason_context(row["case_id"])},
                                 key="event_id", batch=batch),
    }
