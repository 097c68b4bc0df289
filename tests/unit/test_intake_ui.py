"""The UI's pure parts: one catalogue with both languages for every string and every code the pages show,
escaping by default, field errors in the user's language, the role rules, and an OpenAPI file that
documents every /api route the service serves."""
import json
import re
from pathlib import Path

import pytest
from marshmallow import ValidationError

from sanad.contracts.vocabulary import CHANNELS, ESCALATION_REASONS, GOVERNORATES, REFERRAL_STATUSES, RISK_LEVELS
from sanad.contracts.vocabulary import SERVICE_TYPES
from services.intake import i18n, permissions, vocabulary
from services.intake.markup import Safe, esc, render
from services.intake.schemas import NewCase

SERVICE_FILE = Path(__file__).resolve().parents[2] / "services" / "intake" / "service.py"
PAGES_FILE = SERVICE_FILE.with_name("pages.py")
SCRIPT_FILE = SERVICE_FILE.with_name("static") / "app.js"


def test_every_catalogue_entry_has_arabic_and_english_and_they_differ():
    for key, entry in i18n.catalogue().items():
        assert set(entry) == {"ar", "en"}, key
        assert entry["ar"].strip() and entry["en"].strip(), key
        assert re.findall(r"\{\d\}", entry["ar"]) == re.findall(r"\{\d\}", entry["en"]), key


@pytest.mark.parametrize("group,codes", [
    ("channel", CHANNELS), ("governorate", GOVERNORATES), ("service", SERVICE_TYPES), ("risk", RISK_LEVELS),
    ("referral_status", REFERRAL_STATUSES), ("escalation", ESCALATION_REASONS),
    ("caller_relation", vocabulary.CALLER_RELATIONS), ("gender", vocabulary.GENDERS),
    ("age_band", vocabulary.AGE_BANDS), ("district", vocabulary.DHI_QAR_DISTRICTS),
    ("extortion_type", vocabulary.EXTORTION_TYPES), ("platform", vocabulary.PLATFORMS),
    ("perpetrator", vocabulary.PERPETRATORS), ("demand", vocabulary.DEMANDS), ("currency", vocabulary.CURRENCIES),
    ("role", ("operator", "counsellor", "supervisor", "admin")),
    ("status", ("awaiting_triage", "referring", "referred", "needs_supervisor", "triaged_no_referral_consent")),
])
def test_every_code_a_page_shows_has_a_label_in_both_languages(group, codes):
    for code in codes:
        assert f"{group}.{code}" in i18n.catalogue(), f"{group}.{code}"


def test_every_field_of_the_case_form_has_a_label():
    names = set(NewCase().fields) | {f"safe_contact.{name}" for name in ("name", "phone", "safe_times", "code_word",
                                                                           "no_messages")}
    assert {name for name in names if f"field.{name}" not in i18n.catalogue()} == set()


def test_every_string_key_used_in_code_exists_in_the_catalogue():
    used = set()
    for path in (PAGES_FILE, SERVICE_FILE):
        used |= set(re.findall(r'\bt\("([a-z_.]+)"', path.read_text()))
    used |= set(re.findall(r'\bt\("([a-z_.]+)"', SCRIPT_FILE.read_text()))
    assert {key for key in used if key not in i18n.catalogue()} == set()


def test_field_errors_come_in_the_users_language_flattened_by_field():
    with pytest.raises(ValidationError) as raised:
        NewCase().load({"channel": "fax", "governorate": "dhi_qar", "narrative": "x",
                        "safe_contact": {"phone": "not a phone"}, "needs": ["counselling", "magic"],
                        "consents": []})
    messages = raised.value.messages
    assert i18n.field_errors(messages, "en") == {
        "channel": ["Choose one from the list."], "safe_contact.phone": [
            "Not a valid phone number (for example 07701234567)."], "needs": ["Choose one from the list."]}
    assert i18n.field_errors(messages, "ar")["channel"] == ["اختر من القائمة."]


def test_a_consent_error_names_the_services_in_the_users_language():
    assert i18n.error_message("consent_without_need:legal_aid,shelter", "en") == \
        "Consent given for a service not needed: Legal aid, Safe shelter."
    assert "مأوى آمن" in i18n.error_message("consent_without_need:legal_aid,shelter", "ar")


def test_the_language_is_the_cookie_then_the_browser_then_arabic():
    assert i18n.preferred_language("en", "ar") == "en"
    assert i18n.preferred_language(None, "fr-FR,en;q=0.7,ar;q=0.3") == "en"
    assert i18n.preferred_language("klingon", "de") == "ar"


@pytest.mark.parametrize("value", ["<script>alert(1)</script>", '" onfocus="alert(1)', "' OR 1=1; --", "&amp;"])
def test_values_are_escaped_in_text_and_in_attributes(value):
    html = render('<input value="{v}"><p>{v}</p>', v=value)
    assert "<script>" not in html and '" onfocus' not in html and "'" not in html.replace("&#x27;", "")
    assert html.count(str(esc(value))) == 2


def test_markup_built_here_is_not_escaped_twice():
    inner = render("<b>{v}</b>", v="<i>")
    assert render("<p>{inner}</p>", inner=inner) == Safe("<p><b>&lt;i&gt;</b></p>")


@pytest.mark.parametrize("role,current,new,allowed", [
    ("operator", "medium", "critical", True), ("operator", "critical", "high", False),
    ("counsellor", "low", "high", True), ("counsellor", "high", "medium", False),
    ("supervisor", "critical", "low", True), ("admin", "low", "critical", False),
])
def test_anyone_who_works_cases_may_raise_a_level_and_only_a_supervisor_may_lower_it(role, current, new, allowed):
    assert permissions.may_override(role, current, new) is allowed


def test_an_operator_may_take_only_an_open_case_and_only_for_themselves():
    me, other = object(), object()
    assert permissions.may_assign("operator", me, None, me)
    assert not permissions.may_assign("operator", me, None, other)
    assert not permissions.may_assign("operator", me, other, me)
    assert permissions.may_assign("supervisor", me, other, None)


def test_the_openapi_file_documents_every_api_route_the_service_serves():
    spec = json.loads(SERVICE_FILE.with_name("openapi.json").read_text())
    assert spec["openapi"].startswith("3.")
    served = set()
    for method, url in re.findall(r'@http\("([A-Z]+)", "(/api/[^"]+)"\)', SERVICE_FILE.read_text()):
        if url in ("/api/openapi.json", "/api/<path:rest>"):
            continue
        served.add((method.lower(), re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", url)))
    documented = {(method, path) for path, item in spec["paths"].items() for method in item}
    assert served == documented
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert any(code.startswith("4") for code in operation["responses"]), (method, path)


@pytest.mark.parametrize("asked,kept", [
    ("/cases/new", "/cases/new"), ("//evil.example/x", "/queue"), ("/\\evil.example", "/queue"),
    ("https://evil.example", "/queue"), (None, "/queue"), ("/" + "a" * 400, "/queue"),
    # a browser drops tabs and line breaks from an address, so these would be "//evil.example"; a line
    # break in a Location header is refused by werkzeug (a 500 after the login had been committed)
    ("/\t/evil.example", "/queue"), ("/\n/evil.example", "/queue"), ("/\r\nSet-Cookie: x=1", "/queue"),
    ("/ /evil.example", "/queue"), ("/cases/1?lang=en", "/cases/1?lang=en"),
])
def test_a_return_address_is_only_ever_a_path_on_this_site(asked, kept):
    from services.intake.service import _safe_next
    assert _safe_next(asked) == kept
