"""Pure rules of the case record: references, checklist facts, and the status shown to operators."""
import secrets

# Crockford's base32 without I, L, O, U: easy to read out over a phone line.
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "SND"
FACT_FIELDS = ("victim_age", "material_published", "deadline_hours", "suicidal_thoughts", "threat_of_violence")


def new_reference(randbelow=secrets.randbelow) -> str:
    """A short human reference such as SND-7K3Q-9F2M (about 10^12 possibilities)."""
    chars = "".join(REFERENCE_ALPHABET[randbelow(len(REFERENCE_ALPHABET))] for _ in range(8))
    return f"{REFERENCE_PREFIX}-{chars[:4]}-{chars[4:]}"


def facts_of(case: dict) -> dict:
    return {name: case.get(name) for name in FACT_FIELDS}


def case_status(case: dict, referrals: list, deliveries: list) -> str:
    """One word for where a case stands, from the facts intake has heard about it."""
    if not case.get("risk_level"):
        return "awaiting_triage"
    if any(d["outcome"] == "delivered" for d in deliveries):
        return "referred"
    if referrals:
        return "referring"
    if case.get("unmatched_services"):
        return "needs_supervisor"
    if not case.get("consents"):
        return "triaged_no_referral_consent"
    return "referring"
