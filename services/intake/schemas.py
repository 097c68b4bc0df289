"""What the intake API accepts. Unknown fields are refused; every error names its field."""
from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from sanad.contracts.vocabulary import CHANNELS, GOVERNORATES, SERVICE_TYPES

MAX_NARRATIVE_CHARS = 20_000


class NewCase(Schema):
    class Meta:
        unknown = RAISE

    narrative = fields.String(required=True, validate=validate.Length(min=1, max=MAX_NARRATIVE_CHARS))
    channel = fields.String(required=True, validate=validate.OneOf(CHANNELS))
    governorate = fields.String(required=True, validate=validate.OneOf(GOVERNORATES))
    needs = fields.List(fields.String(validate=validate.OneOf(SERVICE_TYPES)), load_default=list,
                        validate=validate.Length(max=len(SERVICE_TYPES)))
    consents = fields.List(fields.String(validate=validate.OneOf(SERVICE_TYPES)), load_default=list,
                           validate=validate.Length(max=len(SERVICE_TYPES)))
    victim_age = fields.Integer(strict=True, allow_none=True, load_default=None,
                                validate=validate.Range(min=0, max=120))
    material_published = fields.Boolean(allow_none=True, load_default=None)
    deadline_hours = fields.Float(allow_none=True, load_default=None, allow_nan=False,
                                  validate=validate.Range(min=0, max=24 * 365))
    suicidal_thoughts = fields.Boolean(allow_none=True, load_default=None)
    threat_of_violence = fields.Boolean(allow_none=True, load_default=None)

    @validates_schema
    def consents_are_for_needs(self, data, **kwargs):
        stray = sorted(set(data.get("consents", ())) - set(data.get("needs", ())))
        if stray:
            raise ValidationError(f"Consent given for services not needed: {', '.join(stray)}.", "consents")


def load_new_case(body: dict) -> dict:
    """Validated case fields, or ValidationError whose messages are keyed by field."""
    data = NewCase().load(body)
    data["needs"] = list(dict.fromkeys(data["needs"]))
    data["consents"] = list(dict.fromkeys(data["consents"]))
    return data
