"""Realistic events for the service tier, built through the real contracts."""
import uuid
from datetime import datetime, timezone

from sanad.contracts.events import new_event, seal_particulars
from sanad.contracts.sealing import narrative_context
from sanad.contracts.vocabulary import lane_for

NO_FACTS = {"victim_age": None, "material_published": None, "deadline_hours": None,
            "suicidal_thoughts": None, "threat_of_violence": None}


def case_received(keys, narrative, needs=("counselling",), consents=("counselling",), preferences=None, **facts):
    case_id = uuid.uuid4()
    return new_event("case.received", {
        "case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-TEST",
        "received_at": datetime.now(timezone.utc), "channel": "phone", "governorate": "dhi_qar",
        "needs": list(needs), "consents": list(consents),
        "sealed_narrative": keys.transport.seal(narrative, narrative_context(case_id)),
        "sealed_particulars": seal_particulars("case.received", {
            "facts": {**NO_FACTS, **facts}, **({"preferences": preferences} if preferences else {}),
        }, keys.transport, case_id),
    }, producer="intake")


def case_triaged(keys, level="medium", needs=("counselling",), consents=("counselling",), governorate="dhi_qar",
                 preferences=None, reasons=()):
    case_id = uuid.uuid4()
    return new_event("case.triaged", {
        "case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-TEST",
        "received_at": datetime.now(timezone.utc), "level": level, "score": 50,
        "sealed_particulars": seal_particulars("case.triaged", {
            "reasons": list(reasons), **({"preferences": preferences} if preferences else {}),
        }, keys.transport, case_id),
        "sealed_evidence": None, "lexicon_version": "test", "governorate": governorate,
        "needs": list(needs), "consents": list(consents),
    }, producer="triage", lane=lane_for(level))


def referral_created(partner_id, level="medium", service="counselling"):
    referral_id, case_id = uuid.uuid4(), uuid.uuid4()
    return new_event("referral.created", {
        "referral_id": referral_id, "case_id": case_id, "reference": f"SND-{case_id.hex[:4].upper()}-TEST",
        "partner_id": partner_id, "partner_name": "Centre", "service": service, "level": level,
        "governorate": "dhi_qar", "created_at": datetime.now(timezone.utc),
    }, producer="referral", lane=lane_for(level))


def referral_withdrawn(created, reason="ack_timeout"):
    """referral.status_changed withdrawing the referral `created` (a referral.created event) announced."""
    data = created.data
    return new_event("referral.status_changed", {
        "referral_id": data["referral_id"], "case_id": data["case_id"], "reference": data["reference"],
        "partner_id": data["partner_id"], "status": "withdrawn", "previous_status": "offered", "note_code": reason,
        "changed_at": datetime.now(timezone.utc), "changed_by": "system",
    }, producer="referral", correlation_id=created.correlation_id, lane=created.lane)
