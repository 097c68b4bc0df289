"""The one catalogue of user-visible strings (catalogue.yaml), in Arabic (default) and English, and the
rendering of validation error codes as messages in the user's language."""
from functools import lru_cache
from pathlib import Path

import yaml

LANGUAGES = ("ar", "en")
DEFAULT_LANGUAGE = "ar"
DIRECTION = {"ar": "rtl", "en": "ltr"}
CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")


@lru_cache(maxsize=1)
def catalogue() -> dict:
    return yaml.safe_load(CATALOGUE_FILE.read_text(encoding="utf-8"))


def language(value) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def preferred_language(cookie, accept_language) -> str:
    """The language cookie set by the switch, else the first of ours the browser asks for, else Arabic."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()[:2]
        if tag in LANGUAGES:
            return tag
    return DEFAULT_LANGUAGE


def t(key, lang, *params) -> str:
    """The string for `key` in `lang`, placeholders filled; the key itself if the catalogue lacks it, so a
    missing string shows as a visible code rather than breaking a page."""
    entry = catalogue().get(key)
    text = entry[language(lang)] if entry else key
    return text.format(*params) if params else text


def label(group, code, lang) -> str:
    """The label of a vocabulary code ("risk", "critical" -> "حرجة"); the code if none is catalogued."""
    if code is None:
        return t("case.none", lang)
    entry = catalogue().get(f"{group}.{code}")
    return entry[language(lang)] if entry else str(code)


def strings(prefix, lang) -> dict:
    """Every string whose key starts with `prefix`, for the browser's script."""
    return {key: entry[language(lang)] for key, entry in catalogue().items() if key.startswith(prefix)}


def error_message(coded, lang) -> str:
    """One error code from the schemas ("range:0:120", "consent_without_need:legal_aid,mediation") as a
    sentence in `lang`."""
    code, _, args = str(coded).partition(":")
    params = args.split(":") if args else []
    if code == "consent_without_need":
        separator = "، " if language(lang) == "ar" else ", "
        params = [separator.join(label("service", s, lang) for s in args.split(","))]
    if f"error.{code}" not in catalogue():
        return t("error.invalid", lang)
    return t(f"error.{code}", lang, *params)


def field_errors(messages, lang, prefix="") -> dict:
    """marshmallow's nested error messages, flattened to {"safe_contact.phone": [sentence, ...]} with each
    code rendered in `lang`. Errors of list items are reported on the list."""
    flat = {}
    if isinstance(messages, (list, tuple)):
        flat.setdefault(prefix or "_schema", []).extend(error_message(m, lang) for m in messages)
        return flat
    for key, value in messages.items():
        if isinstance(key, int):
            name = prefix
        else:
            name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            nested = field_errors(value, lang, name)
        else:
            nested = {name or "_schema": [error_message(m, lang) for m in value]}
        for field, texts in nested.items():
            merged = flat.setdefault(field, [])
            merged.extend(text for text in texts if text not in merged)
    return flat
