"""Contexts under which sealed event fields are bound to their case (see sanad.crypto).

Producer and consumer must agree on them, so they are part of the contract.
"""


def narrative_context(case_id) -> str:
    return f"case:{case_id}:narrative"


def particulars_context(case_id) -> str:
    """What an event says of the victim beyond the narrative (sanad.contracts.events.seal_particulars)."""
    return f"case:{case_id}:particulars"


def preferences_context(case_id) -> str:
    """What the victim asked of her helpers (her exact age among it), as triage and referral keep it at
    rest, sealed with the data ring."""
    return f"case:{case_id}:preferences"


def evidence_context(case_id) -> str:
    """The words of the narrative that triggered a case's risk reasons."""
    return f"case:{case_id}:evidence"


def override_reason_context(case_id) -> str:
    """Staff's reason for overriding a case's risk level."""
    return f"case:{case_id}:override_reason"
