"""Closed vocabularies of the case record that stay inside intake. Codes are stable and stored;
their labels in Arabic and English live in the UI catalogue (catalogue.yaml)."""

CALLER_RELATIONS = ("self", "parent", "sibling", "spouse", "friend", "relative", "other")

GENDERS = ("female", "male", "undisclosed")

# Age bands an operator can pick when the caller will not give an exact age. The first three are minors;
# (youngest, oldest) in years, None for an open end.
AGE_BANDS = {
    "under_12": (0, 11),
    "12_14": (12, 14),
    "15_17": (15, 17),
    "18_24": (18, 24),
    "25_34": (25, 34),
    "35_plus": (35, None),
}

# Dhi Qar's five districts (qadha). The hotline serves Dhi Qar; other governorates take no district.
DHI_QAR_DISTRICTS = ("nasiriyah", "shatrah", "rifai", "suq_al_shuyukh", "chibayish")

EXTORTION_TYPES = ("sexual_images", "audio", "chats", "financial", "political", "deepfake", "hacked_account")

PLATFORMS = ("facebook", "instagram", "whatsapp", "telegram", "tiktok", "snapchat", "other")

PERPETRATORS = ("stranger", "acquaintance", "ex_partner", "relative", "hacked_account", "unknown")

DEMANDS = ("money", "more_images", "meeting", "other")

CURRENCIES = ("IQD", "USD")

# Personal fields sealed at rest, each under a context naming the field and its case.
SEALED_FIELDS = ("narrative", "victim_age", "contact_name", "contact_phone", "contact_safe_times", "contact_code_word")


def field_context(case_id, name) -> str:
    """The context a personal field of a case is sealed under: "case:<id>:<field>" (the narrative's is
    the same string as sanad.contracts.sealing.narrative_context, so one scheme covers every field)."""
    return f"case:{case_id}:{name}"
