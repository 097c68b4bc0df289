"""Pure rules of the case record: references, checklist facts, and the status shown to operators."""
import re
import secrets

from services.intake.vocabulary import AGE_BANDS

# Crockford's base32 without I, L, O, U: easy to read out over a phone line.
REFERENCE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
REFERENCE_PREFIX = "SND"
ADULT_AGE = 18
FACT_FIELDS = ("victim_age", "material_published", "deadline_hours", "suicidal_thoughts", "threat_of_violence")


def new_reference(randbelow=secrets.randbelow) -> str:
    """A short human reference such as SND-7K3Q-9F2M (about 10^12 possibilities)."""
    chars = "".join(REFERENCE_ALPHABET[randbelow(len(REFERENCE_ALPHABET))] for _ in range(8))
    return f"{REFERENCE_PREFIX}-{chars[:4]}-{chars[4:]}"


def facts_of(case: dict) -> dict:
    return {name: case.get(name) for name in FACT_FIELDS}


# Reasons that send a case to triage's critical lane whatever its level: the checklist's two questions
# about a life in danger, or the same read in the note (services/intake/screen.py). An earlier attempt and
# the caller's own suicidal talk read as past go too: the first reading can take present words for history
# ("tried last year and says she will tonight"), and a previous attempt is the strongest predictor of the
# next, so a miss costs more than a busier critical lane. Hopelessness goes too: triage counts it as
# ideation ("ما اكدر اعيش بعد هيج" - I can't live after this), as hopelessness.yaml explains.
DANGER_TO_LIFE = frozenset({"suicidal_thoughts", "violence_threat", "prior_attempt", "past_suicidality",
                            "hopelessness"})


def triage_lane(facts: dict, level: str | None = None, reasons=frozenset()) -> str:
    """The lane a new case travels to triage on: critical when the checklist says suicidal thoughts or a
    threat of violence, or when a first reading of the note (`level`, `reasons`) finds a critical risk or
    either danger. Triage's critical process then assesses it, never behind a backlog of others."""
    if facts.get("suicidal_thoughts") or facts.get("threat_of_violence"):
        return "critical"
    return "critical" if level == "critical" or DANGER_TO_LIFE & set(reasons) else "normal"


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


# Phones and ages ---------------------------------------------------------------------------------------

# Arabic-Indic and Persian digits, as Iraqi keyboards type them.
_DIGITS = str.maketrans("٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹", "0123456789" * 2)
_PHONE_PUNCTUATION = re.compile(r"[\s\-().\u200e\u200f]")


def canonical_phone(raw: str):
    """One spelling per phone number, so a repeat caller's number hashes the same however it was typed:
    "0770 123 4567", "+964 770 123 4567", "00964-770-1234567" and "٠٧٧٠١٢٣٤٥٦٧" are all +9647701234567.
    None when the text is not a phone number."""
    text = _PHONE_PUNCTUATION.sub("", raw.translate(_DIGITS))
    if text.startswith("00"):
        text = "+" + text[2:]
    if re.fullmatch(r"07\d{9}", text):  # an Iraqi mobile written nationally
        text = "+964" + text[1:]
    if re.fullmatch(r"\+?\d{7,15}", text):
        return text
    return None


def age_band_of(age: int) -> str:
    for band, (youngest, oldest) in AGE_BANDS.items():
        if age >= youngest and (oldest is None or age <= oldest):
            return band
    raise ValueError(age)


def age_for_triage(age, band):
    """The age triage is told. An exact age as given; for a band of minors its oldest age, so a child
    stays a child to triage without claiming more precision than a band has; otherwise unknown."""
    if age is not None:
        return age
    if band is not None:
        youngest, oldest = AGE_BANDS[band]
        if oldest is not None and oldest < ADULT_AGE:
            return oldest
    return None


def deadline_hours_at(deadline_at, now):
    """Hours from `now` to a deadline, 0 for one already passed: the threat may be carried out now."""
    return max(0.0, (deadline_at - now).total_seconds() / 3600)
