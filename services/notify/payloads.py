"""What a partner receives: the minimum it needs to act, never the narrative, a name or a phone."""
from datetime import datetime


def referral_offered(referral: dict, now: datetime) -> dict:
    """The body of the webhook that offers a referral, in the Standard Webhooks payload shape."""
    return {
        "type": "referral.offered",
        "timestamp": now.isoformat(),
        "data": {
            "referral_id": str(referral["referral_id"]),
            "case_reference": referral["reference"],
            "risk_level": referral["level"],
            "service": referral["service"],
            "governorate": referral["governorate"],
        },
    }
