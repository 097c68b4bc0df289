"""What the partner API and the admin API accept. Unknown fields are refused, naming them."""
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from sanad.contracts.vocabulary import GOVERNORATES, NATIONWIDE, RISK_LEVELS, SERVICE_TYPES
from sanad.platform.fields import StrictBoolean
from services.referral import lifecycle
from services.referral.directory import MAX_TEXT, STAFF_GENDERS, ServiceTerms
from services.referral.handlers import REFER_ANYWAY_REASONS
from services.referral.matching import END_OF_DAY, Hours, Preferences

ALL_NOTE_CODES = sorted({code for codes in lifecycle.NOTE_CODES.values() for code in codes})


def _text(max_length=MAX_TEXT, **kwargs):
    """Free text an admin types; PostgreSQL's text cannot hold NUL, so it is refused here, naming the field."""
    return fields.String(validate=[validate.Length(max=max_length),
                                   validate.Regexp(r"^[^\x00]*$", error="Must not contain a NUL character.")],
                         **kwargs)


class StatusChangeSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(lifecycle.MAY_SET["staff"]))
    note_code = fields.String(load_default=None, allow_none=True, validate=validate.OneOf(ALL_NOTE_CODES))


class CapacitySchema(Schema):
    accepting = StrictBoolean(required=True)


class ReferralListSchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(lifecycle.OPEN + lifecycle.FINAL))
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    before = fields.UUID(load_default=None)  # the last referral of the page before


class ClosingTime(fields.Time):
    """HH:MM, or 24:00 for a period that lasts to midnight (directory.END_OF_DAY)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if value == "24:00":
            return END_OF_DAY
        return super()._deserialize(value, attr, data, **kwargs)


class HoursSchema(Schema):
    weekday = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=6))
    opens = fields.Time(required=True, format="%H:%M")
    closes = ClosingTime(required=True, format="%H:%M")

    @validates_schema
    def opens_before_closing(self, data, **kwargs):
        if data["opens"] >= data["closes"]:
            raise ValidationError("Must come after opens.", "closes")


class ServiceTermsSchema(Schema):
    governorates = fields.List(fields.String(validate=validate.OneOf(GOVERNORATES + (NATIONWIDE,))), required=True,
                               validate=validate.Length(min=1, max=len(GOVERNORATES) + 1))
    languages = fields.List(fields.String(validate=validate.Regexp(r"^[a-z]{2}$")), load_default=["ar"],
                            validate=validate.Length(min=1, max=10))
    staff_genders = fields.List(fields.String(validate=validate.OneOf(STAFF_GENDERS)), load_default=[],
                                validate=validate.Length(max=2))
    always_open = StrictBoolean(load_default=False)
    hours = fields.List(fields.Nested(HoursSchema), load_default=[], validate=validate.Length(max=50))
    min_age = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=120))
    max_age = fields.Integer(load_default=None, allow_none=True, strict=True, validate=validate.Range(min=0, max=120))
    eligibility = _text(load_default="")
    contacts_family = StrictBoolean(load_default=False)


def service_terms(service, body) -> ServiceTerms:
    """ServiceTerms from an admin API body; ValidationError names each offending field."""
    data = ServiceTermsSchema().load(body)
    terms = ServiceTerms(
        service=service, governorates=tuple(data["governorates"]), languages=tuple(data["languages"]),
        staff_genders=tuple(data["staff_genders"]), always_open=data["always_open"],
        hours=tuple(Hours(h["weekday"], h["opens"], h["closes"]) for h in data["hours"]),
        min_age=data["min_age"], max_age=data["max_age"], eligibility=data["eligibility"],
        contacts_family=data["contacts_family"],
    )
    problems = terms.problems()
    if problems:
        raise ValidationError(problems)
    return terms


class PartnerPatchSchema(Schema):
    description = _text()
    address = _text(allow_none=True)
    confidential_address = StrictBoolean()
    phone = _text(100, allow_none=True)
    email = _text(200, allow_none=True)
    website = _text(allow_none=True)
    active = StrictBoolean()
    accepting = StrictBoolean()


class PolicySchema(Schema):
    ack_seconds = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=7 * 24 * 3600))
    max_reoffers = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=20))


class ReferAnywaySchema(Schema):
    service = fields.String(required=True, validate=validate.OneOf(SERVICE_TYPES))
    partner_id = fields.UUID(required=True)
    reason_code = fields.String(required=True, validate=validate.OneOf(REFER_ANYWAY_REASONS))
    note = _text(1000, load_default=None, allow_none=True)  # sealed at rest: it may name the caller


class MatchQuerySchema(Schema):
    service = fields.String(required=True, validate=validate.OneOf(SERVICE_TYPES))
    governorate = fields.String(required=True, validate=validate.OneOf(GOVERNORATES))
    staff_gender = fields.String(load_default=None, validate=validate.OneOf(STAFF_GENDERS))
    language = fields.String(load_default=None, validate=validate.Regexp(r"^[a-z]{2}$"))
    victim_age = fields.Integer(load_default=None, validate=validate.Range(min=0, max=120))
    family_contact = fields.Boolean(load_default=False)
    at = fields.AwareDateTime(load_default=None)


def preferences(query) -> Preferences:
    return Preferences(staff_gender=query["staff_gender"], language=query["language"],
                       victim_age=query["victim_age"], family_contact=query["family_contact"])
