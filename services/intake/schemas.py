"""What the intake API accepts. Unknown fields are refused; every error names its field. A field takes what
the API's document (openapi.json) says it takes and nothing that merely resembles it: a flag true or false
(not 1 or "yes"), a choice one of its values (not a blank string), a number a JSON number (not "5"), and
free text within its limits as sent, before it is trimmed.

Error messages are codes ("required", "range:0:120", "consent_without_need:legal_aid"), never English
prose and never the value sent: the API renders them in the user's language from the catalogue
(services.intake.i18n), and a value echoed back could be personal data.
"""
import functools
import re
from datetime import timedelta

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from sanad.contracts.vocabulary import CHANNELS, GOVERNORATES, RISK_LEVELS, SERVICE_TYPES
from sanad.platform.fields import StrictBoolean, StrictFloat
from services.intake import accounts, cases
from services.intake.vocabulary import (
    AGE_BANDS, CALLER_RELATIONS, CURRENCIES, DEMANDS, DHI_QAR_DISTRICTS, EXTORTION_TYPES, GENDERS, PERPETRATORS,
    PLATFORMS,
)

MAX_NARRATIVE_CHARS = 20_000
MAX_SHORT_TEXT = 200
MAX_DEADLINE_AHEAD = timedelta(days=365)
MAX_DEADLINE_PAST = timedelta(days=30)
MAX_AMOUNT = 10 ** 12
MAX_OVERRIDE_REASON = 2_000

# Every built-in marshmallow message, as a code.
CODES = {
    "required": "required", "null": "required", "validator_failed": "invalid", "type": "invalid_object",
    "unknown": "unknown_field", "special": "invalid_number", "too_large": "invalid_number",
    "invalid_utf8": "invalid_string", "invalid_awareness": "invalid_datetime", "format": "invalid_datetime",
}


class Amount(fields.Decimal):
    """A sum of money: a JSON number, or a string of digits with at most two decimals ("300", "12.50"), as
    the web form's number box sends it; not "1e3", " 12" or "12.345", which marshmallow's Decimal takes."""
    TEXT = re.compile(r"[0-9]+(\.[0-9]{1,2})?")

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not self.TEXT.fullmatch(value):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)


KIND_OF = {
    fields.String: "invalid_string", fields.Integer: "invalid_integer", StrictFloat: "invalid_number",
    Amount: "invalid_number", StrictBoolean: "invalid_boolean", fields.List: "invalid_list",
    fields.AwareDateTime: "invalid_datetime", fields.Nested: "invalid_object", fields.UUID: "invalid_uuid",
}


def coded(field_class, *args, **kwargs):
    """A marshmallow field whose errors are codes."""
    kwargs["error_messages"] = {**CODES, "invalid": KIND_OF[field_class], **kwargs.get("error_messages", {})}
    return field_class(*args, **kwargs)


def one_of(values):
    return validate.OneOf(values, error="not_one_of")


def length(maximum, minimum=None):
    if minimum:
        return validate.Length(min=minimum, max=maximum, error="length:{min}:{max}")
    return validate.Length(max=maximum, error="too_long:{max}")


def choice(values, **kwargs):
    return coded(fields.String, validate=one_of(values), allow_none=True, load_default=None, **kwargs)


def choices(values):
    return coded(fields.List, coded(fields.String, validate=one_of(values)), load_default=list,
                 validate=validate.Length(max=len(values), error="too_many:{max}"))


def no_nul(value):
    """PostgreSQL text cannot hold NUL; refuse it as bad text rather than fail at the database."""
    if "\x00" in value:
        raise ValidationError("invalid_string")


def not_blank(value):
    """Text of nothing but spaces counts as missing."""
    if not value.strip():
        raise ValidationError("required")


def free_text(*validators, required=False, **kwargs):
    """Text a person types: checked as sent, its length included, then stored trimmed (CodedSchema.
    trim_free_text). Blank, it counts as missing where the field is required and as not given (null)
    where it is not, as a form's empty box does. Only free text is read so: a choice or an id is taken
    as sent."""
    validators = [*validators, not_blank] if required else list(validators)
    return coded(fields.String, required=required, validate=validators, metadata={"free_text": True}, **kwargs)


def short_text(maximum=MAX_SHORT_TEXT):
    return free_text(length(maximum), no_nul, allow_none=True, load_default=None)


def flag(default=None):
    return coded(StrictBoolean, allow_none=default is None, load_default=default)


class CodedSchema(Schema):
    class Meta:
        unknown = RAISE

    error_messages = {"unknown": "unknown_field", "type": "invalid_object"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._free_text = [name for name, field in self.fields.items() if field.metadata.get("free_text")]

    @post_load
    def trim_free_text(self, data, **kwargs):
        """Free text is stored trimmed, and blank free text that may be left out is not given."""
        for name in self._free_text:
            if isinstance(data.get(name), str):
                data[name] = data[name].strip() or None
        return data


class SafeContact(CodedSchema):
    """How to reach the victim without endangering her. Sealed at rest, all of it."""
    name = short_text(100)
    phone = short_text(40)
    safe_times = short_text()
    code_word = short_text(100)
    no_messages = flag(default=True)

    @validates_schema
    def phone_is_a_phone_number(self, data, **kwargs):
        if data.get("phone") is not None and cases.canonical_phone(data["phone"]) is None:
            raise ValidationError("invalid_phone", "phone")


class NewCase(CodedSchema):
    narrative = free_text(length(MAX_NARRATIVE_CHARS, minimum=1), required=True)
    channel = coded(fields.String, required=True, validate=one_of(CHANNELS))
    caller_relation = choice(CALLER_RELATIONS)
    victim_age = coded(fields.Integer, strict=True, allow_none=True, load_default=None,
                       validate=validate.Range(min=0, max=120, error="range:{min}:{max}"))
    victim_age_band = choice(tuple(AGE_BANDS))
    victim_gender = choice(GENDERS)
    governorate = coded(fields.String, required=True, validate=one_of(GOVERNORATES))
    district = choice(DHI_QAR_DISTRICTS)
    extortion_types = choices(EXTORTION_TYPES)
    platforms = choices(PLATFORMS)
    perpetrator = choice(PERPETRATORS)
    demands = choices(DEMANDS)
    demand_amount = coded(Amount, allow_none=True, load_default=None, allow_nan=False, places=2,
                          validate=validate.Range(min=0, max=MAX_AMOUNT, min_inclusive=False,
                                                  error="amount_range:{max}"))
    demand_currency = choice(CURRENCIES)
    deadline_at = coded(fields.AwareDateTime, allow_none=True, load_default=None)
    deadline_hours = coded(StrictFloat, allow_none=True, load_default=None, allow_nan=False,
                           validate=validate.Range(min=0, max=24 * 365, error="range:{min}:{max}"))
    material_published = flag()
    published_on = choices(PLATFORMS)
    needs = choices(SERVICE_TYPES)
    consents = choices(SERVICE_TYPES)
    family_contact_allowed = flag(default=False)
    tribe_contact_allowed = flag(default=False)
    suicidal_thoughts = flag()
    threat_of_violence = flag()
    anonymous = flag(default=False)
    safe_contact = coded(fields.Nested, SafeContact, allow_none=True, load_default=None)

    @validates_schema
    def fields_agree(self, data, **kwargs):
        errors = {}
        stray = sorted(set(data.get("consents") or ()) - set(data.get("needs") or ()))
        if stray:
            errors["consents"] = [f"consent_without_need:{','.join(stray)}"]
        age, band = data.get("victim_age"), data.get("victim_age_band")
        if age is not None and band is not None and cases.age_band_of(age) != band:
            errors["victim_age_band"] = ["age_band_disagrees"]
        if data.get("district") and data.get("governorate") != "dhi_qar":
            errors["district"] = ["district_outside_dhi_qar"]
        if data.get("demand_amount") is not None:
            if "money" not in (data.get("demands") or ()):
                errors["demand_amount"] = ["amount_without_money"]
            elif data.get("demand_currency") is None:
                errors["demand_currency"] = ["currency_required"]
        if data.get("published_on") and data.get("material_published") is not True:
            errors["published_on"] = ["published_on_without_published"]
        if data.get("deadline_at") is not None and data.get("deadline_hours") is not None:
            errors["deadline_hours"] = ["one_deadline_only"]
        contact = data.get("safe_contact") or {}
        if data.get("anonymous") and (contact.get("name") or contact.get("phone")):
            errors["anonymous"] = ["anonymous_with_contact"]
        if errors:
            raise ValidationError(errors)


def load_new_case(body, now) -> dict:
    """Validated case fields, or ValidationError whose messages are keyed by field. `now` places a deadline
    given as a moment: it may lie at most a year ahead and a month behind."""
    data = _instance(NewCase).load(body)
    deadline_at = data["deadline_at"]
    if deadline_at is not None and not (now - MAX_DEADLINE_PAST <= deadline_at <= now + MAX_DEADLINE_AHEAD):
        raise ValidationError({"deadline_at": ["deadline_out_of_range"]})
    for name in ("needs", "consents", "extortion_types", "platforms", "demands", "published_on"):
        data[name] = list(dict.fromkeys(data[name]))
    data["safe_contact"] = {**_instance(SafeContact).load({}), **(data["safe_contact"] or {})}
    return data


class RiskOverride(CodedSchema):
    level = coded(fields.String, required=True, validate=one_of(RISK_LEVELS))
    reason = free_text(length(MAX_OVERRIDE_REASON, minimum=3), required=True)


class Assignment(CodedSchema):
    assignee = coded(fields.UUID, required=True, allow_none=True)


def username_shape(value):
    """Checked with the other fields, so one answer names every field at fault (not only the first)."""
    if not accounts.USERNAME_PATTERN.fullmatch(value):
        raise ValidationError("account_username")


class NewUser(CodedSchema):
    username = free_text(length(50, minimum=2), no_nul, username_shape, required=True)
    display_name = short_text(100)
    role = coded(fields.String, required=True, validate=one_of(("operator", "counsellor", "supervisor", "admin")))
    password = coded(fields.String, required=True, validate=length(200, minimum=12))  # as typed, spaces and all
    partner_id = coded(fields.UUID, allow_none=True, load_default=None)


def load(schema_class, body) -> dict:
    return _instance(schema_class).load(body)


@functools.cache
def _instance(schema_class):
    """One instance per schema: making one copies its fields (and, at first use, its nested schemas'),
    which cost several times the load itself. Instances keep no state between loads."""
    return schema_class()
