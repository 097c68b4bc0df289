"""Closed vocabularies that cross service boundaries. Codes are stable; labels live in the UI."""

RISK_LEVELS = ("low", "medium", "high", "critical")

# The critical lane carries only critical work; everything else shares the normal lane.
LANES = ("normal", "critical")

CHANNELS = ("phone", "whatsapp", "walk_in", "web", "referral")

# Referral service types: what a partner can offer and what a victim may need and consent to.
SERVICE_TYPES = (
    "counselling",
    "legal_aid",
    "police_cybercrime",
    "content_removal",
    "shelter",
    "medical",
    "mediation",  # tribal or religious mediation: never without the victim's explicit request
)

GOVERNORATES = (
    "dhi_qar", "baghdad", "basra", "maysan", "muthanna", "qadisiyyah", "wasit", "babil", "karbala",
    "najaf", "anbar", "diyala", "saladin", "kirkuk", "nineveh", "erbil", "sulaymaniyah", "duhok", "halabja",
)

# A partner serving every governorate lists this instead of a governorate.
NATIONWIDE = "nationwide"


def lane_for(level: str) -> str:
    return "critical" if level == "critical" else "normal"

# A referral's life: offered -> accepted or declined -> in_progress -> completed or closed.
# "withdrawn" is Sanad taking an offer back (re-offered elsewhere after a missed deadline).
REFERRAL_STATUSES = ("offered", "accepted", "declined", "in_progress", "completed", "closed", "withdrawn")

# Why a referral or case was escalated to the next partner and the on-duty supervisor.
ESCALATION_REASONS = ("ack_timeout", "declined", "delivery_exhausted", "no_match", "refer_anyway")

# What notification.exhausted says of a partner's endpoint. An endpoint that answers 410 Gone asks for no
# more webhooks (notify disables it); these errors mean a delivery could not even be tried.
ENDPOINT_GONE = 410
UNREACHABLE_ERRORS = ("endpoint_disabled", "no_endpoint")


def partner_unreachable(last_status_code, last_error) -> bool:
    """Whether a dead delivery says the partner cannot be reached at all, rather than that it failed."""
    return last_error in UNREACHABLE_ERRORS or last_status_code == ENDPOINT_GONE
