"""A referral's life and who may move it along. Pure.

    offered -> accepted | declined (with a reason) | withdrawn (Sanad takes the offer back)
    accepted -> in_progress | closed (with an outcome) | withdrawn
    in_progress -> completed | closed (each with an outcome)

declined, completed, closed and withdrawn are final. Reasons and outcomes are codes, never free text:
they travel in events to other services, and free text invites a caller's name.
"""
from dataclasses import dataclass

DECLINE_REASONS = (
    "no_capacity", "outside_expertise", "outside_area", "conflict_of_interest", "safety_concern", "other",
)
COMPLETION_OUTCOMES = (
    "support_given", "content_removed", "legal_action_taken", "sheltered", "treated", "mediated", "other",
)
CLOSING_OUTCOMES = (
    "victim_unreachable", "victim_withdrew", "referred_elsewhere", "duplicate", "other",
)
WITHDRAWAL_REASONS = ("ack_timeout", "delivery_exhausted", "reassigned")
NOTE_CODES = {"declined": DECLINE_REASONS, "completed": COMPLETION_OUTCOMES, "closed": CLOSING_OUTCOMES,
              "withdrawn": WITHDRAWAL_REASONS}
# A missed deadline and a webhook given up on are the system's reasons (escalation); a person withdrawing
# an offer says why as a person, so the trail never shows staff claiming the system's.
STAFF_WITHDRAWAL_REASONS = ("reassigned",)

NEXT = {
    "offered": ("accepted", "declined", "withdrawn"),
    "accepted": ("in_progress", "closed", "withdrawn"),
    "in_progress": ("completed", "closed"),
}
FINAL = ("declined", "completed", "closed", "withdrawn")
OPEN = ("offered", "accepted", "in_progress")

# Withdrawing is Sanad's decision (a missed deadline, a supervisor reassigning), never a partner's.
MAY_SET = {
    "partner": ("accepted", "declined", "in_progress", "completed", "closed"),
    "staff": ("accepted", "declined", "in_progress", "completed", "closed", "withdrawn"),
    "system": ("withdrawn",),
}


class TransitionRefused(Exception):
    def __init__(self, code, field, message):
        super().__init__(message)
        self.code = code
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Change:
    previous: str
    status: str
    note_code: str


def change(current, requested, actor, note_code=None):
    """The change `actor` asks for, None when the referral already has that status (a repeated call),
    or TransitionRefused saying which field is wrong."""
    if requested not in MAY_SET.get(actor, ()):
        raise TransitionRefused("status_not_allowed", "status",
                                f"Must be one of: {', '.join(MAY_SET.get(actor, ()))}.")
    allowed_codes = NOTE_CODES.get(requested)
    if (requested, actor) == ("withdrawn", "staff"):
        allowed_codes = STAFF_WITHDRAWAL_REASONS
    if allowed_codes is None and note_code is not None:
        raise TransitionRefused("note_not_allowed", "note_code", f"A {requested} referral takes no note code.")
    if allowed_codes is not None and note_code not in allowed_codes:
        raise TransitionRefused("note_code_required", "note_code", f"Must be one of: {', '.join(allowed_codes)}.")
    if requested == current:
        return None
    if requested not in NEXT.get(current, ()):
        raise TransitionRefused("invalid_transition", "status",
                                f"A referral that is {current} cannot become {requested}.")
    return Change(previous=current, status=requested, note_code=note_code)


def acknowledges(status) -> bool:
    """A partner that accepted or declined has answered the offer: its deadline no longer runs."""
    return status in ("accepted", "declined")
