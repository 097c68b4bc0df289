"""What a partner or the supervisors' pager receives: the minimum needed to act, in the Standard Webhooks
payload shape ({"type", "timestamp", "data"}). Never the narrative; a name, a phone or safe-contact
instructions only when the victim consented and the partner's agreement allows it (a `Disclosure`).
Anything more the partner fetches through the authenticated partner API, where each fetch is audited.
"""
import json
from dataclasses import dataclass, field
from datetime import datetime

MAX_BYTES = 20 * 1024
MAX_SHARED_FIELDS = 8
MAX_SHARED_VALUE_CHARS = 200
MAX_SAFE_CONTACT_CHARS = 1000


class PayloadTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Disclosure:
    """What this partner may see beyond the minimum, already opened from its sealed fields.

    The events do not carry consented disclosures yet: until referral sends them (sealed) and the
    partner's agreement is recorded, callers pass None and the webhook carries nothing personal."""
    shared: dict = field(default_factory=dict)  # e.g. {"first_name": ...}: only what the victim agreed to
    safe_contact: str | None = None             # how and when the victim can be reached safely


def referral_offered(referral: dict, now: datetime, public_url: str, disclosure: Disclosure | None = None) -> dict:
    """The webhook offering a referral to a partner."""
    referral_id = str(referral["referral_id"])
    data = {
        "referral_id": referral_id,
        "case_reference": referral["reference"],
        "risk_level": referral["level"],
        "service": referral["service"],
        "governorate": referral["governorate"],
        "details_url": f"{public_url.rstrip('/')}/partner/v1/referrals/{referral_id}",
    }
    if disclosure is not None:
        shared = {str(key)[:64]: str(value)[:MAX_SHARED_VALUE_CHARS]
                  for key, value in list(disclosure.shared.items())[:MAX_SHARED_FIELDS]}
        if shared:
            data["consented_to_share"] = shared
        if disclosure.safe_contact:
            data["safe_contact"] = disclosure.safe_contact[:MAX_SAFE_CONTACT_CHARS]
    return {"type": "referral.offered", "timestamp": now.isoformat(), "data": data}


def referral_escalated(escalation: dict, now: datetime) -> dict:
    """The page to the on-duty supervisors: which case, how urgent, what is wrong. Nothing personal."""
    return {
        "type": "referral.escalated",
        "timestamp": now.isoformat(),
        "data": {
            "case_reference": escalation["reference"],
            "risk_level": escalation["level"],
            "service": escalation["service"],
            "governorate": escalation["governorate"],
            "reason": escalation["reason"],
            "step": escalation["step"],
        },
    }


def encode(payload: dict) -> bytes:
    """The exact bytes sent and signed: compact UTF-8 JSON, refused above 20 KB."""
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if len(body) > MAX_BYTES:
        raise PayloadTooLarge(f"a webhook body is at most {MAX_BYTES} bytes, this one {len(body)}")
    return body
