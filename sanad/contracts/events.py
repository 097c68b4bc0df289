"""The envelope every event travels in, and the versioned schema of each event's data.

Rules: an event type is "<entity>.<past participle>"; within a version changes are additive; a new
version comes with an upcaster from the previous one, so consumers always handle the current version.
Nothing personal travels in plaintext: fields named sealed_* hold values sealed with the transport key
ring (sanad.crypto). Besides the narrative and other text, that is what the operator learned of the victim
(her age, what she fears, what she asked of whoever helps her) and what triage read in it: an event's
`sealed_particulars`, sealed and opened with `seal_particulars` and `particulars`.
"""
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate

from sanad.contracts.quick import QuickSchema
from sanad.contracts.sealing import particulars_context
from sanad.contracts.vocabulary import (
    CHANNELS, ESCALATION_REASONS, GOVERNORATES, LANES, REFERRAL_STATUSES, RISK_LEVELS, SERVICE_TYPES,
)


class ContractError(Exception):
    """An event that does not meet its contract. `errors` maps each offending field to its messages."""

    def __init__(self, errors):
        super().__init__(f"event breaks its contract: {errors}")
        self.errors = errors


def _one_of(values):
    return validate.OneOf(values)


class Envelope(Schema):
    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.Length(min=3, max=100))
    version = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True)
    producer = fields.String(required=True, validate=validate.Length(min=1, max=50))
    correlation_id = fields.UUID(required=True)
    lane = fields.String(required=True, validate=_one_of(LANES))
    data = fields.Dict(required=True)


class CaseFactsSchema(Schema):
    """The checklist an operator ticks; any may be unknown (null)."""
    victim_age = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0, max=120))
    material_published = fields.Boolean(allow_none=True, load_default=None)
    deadline_hours = fields.Float(allow_none=True, load_default=None, validate=validate.Range(min=0))
    suicidal_thoughts = fields.Boolean(allow_none=True, load_default=None)
    threat_of_violence = fields.Boolean(allow_none=True, load_default=None)


class PreferencesSchema(Schema):
    """What the victim asked of whoever helps her. Absent means no preference and, for the family, never."""
    family_contact = fields.Boolean(load_default=False)  # partners may contact her family
    staff_gender = fields.String(allow_none=True, load_default=None, validate=_one_of(("female", "male")))
    victim_age = fields.Integer(allow_none=True, load_default=None, validate=validate.Range(min=0, max=120))


def no_preferences():
    return {"family_contact": False, "staff_gender": None, "victim_age": None}


class CaseReceivedV1(Schema):
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    received_at = fields.AwareDateTime(required=True)
    channel = fields.String(required=True, validate=_one_of(CHANNELS))
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    needs = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    consents = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    facts = fields.Nested(CaseFactsSchema, required=True)
    sealed_narrative = fields.String(required=True)
    preferences = fields.Nested(PreferencesSchema, load_default=no_preferences)  # added within v1


class CaseReceivedV2(Schema):
    """Version 2 seals the checklist's facts and the victim's preferences (sealed_particulars:
    ReceivedParticulars), which version 1 carried in plaintext."""
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    received_at = fields.AwareDateTime(required=True)
    channel = fields.String(required=True, validate=_one_of(CHANNELS))
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    needs = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    consents = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    sealed_narrative = fields.String(required=True)
    sealed_particulars = fields.String(required=True)


class ReceivedParticulars(Schema):
    facts = fields.Nested(CaseFactsSchema, required=True)
    preferences = fields.Nested(PreferencesSchema, load_default=no_preferences)


class ReasonSchema(Schema):
    code = fields.String(required=True)
    source = fields.String(required=True, validate=_one_of(("text", "checklist", "override")))


class CaseTriagedV1(Schema):
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    received_at = fields.AwareDateTime(required=True)
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    score = fields.Integer(required=True, validate=validate.Range(min=0, max=100))
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    # The words that triggered each reason quote the narrative, so they travel sealed.
    sealed_evidence = fields.String(required=True, allow_none=True)
    lexicon_version = fields.String(required=True)
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    needs = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    consents = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    preferences = fields.Nested(PreferencesSchema, load_default=no_preferences)  # added within v1


class CaseTriagedV2(Schema):
    """Version 2 seals the reasons and the victim's preferences (sealed_particulars: TriagedParticulars),
    which version 1 carried in plaintext. The level travels in the clear: the lanes are routed by it."""
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    received_at = fields.AwareDateTime(required=True)
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    score = fields.Integer(required=True, validate=validate.Range(min=0, max=100))
    sealed_particulars = fields.String(required=True)
    # The words that triggered each reason quote the narrative, so they travel sealed.
    sealed_evidence = fields.String(required=True, allow_none=True)
    lexicon_version = fields.String(required=True)
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    needs = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)
    consents = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)


class TriagedParticulars(Schema):
    reasons = fields.List(fields.Nested(ReasonSchema), required=True)
    preferences = fields.Nested(PreferencesSchema, load_default=no_preferences)


class ReferralCreatedV1(Schema):
    referral_id = fields.UUID(required=True)
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    partner_id = fields.UUID(required=True)
    partner_name = fields.String(required=True)
    service = fields.String(required=True, validate=_one_of(SERVICE_TYPES))
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    created_at = fields.AwareDateTime(required=True)


class CaseUnmatchedV1(Schema):
    """The consented needs of a case no partner can take now, all of them: a supervisor must act. Sent again
    when the case is triaged again, empty once every need announced before has found a partner."""
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    services = fields.List(fields.String(validate=_one_of(SERVICE_TYPES)), required=True)


class DeliveryAttemptedV1(Schema):
    delivery_id = fields.UUID(required=True)
    webhook_id = fields.String(required=True)
    referral_id = fields.UUID(required=True)
    case_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    attempt = fields.Integer(required=True, validate=validate.Range(min=1))
    outcome = fields.String(required=True, validate=_one_of(("delivered", "retrying", "failed")))
    status_code = fields.Integer(required=True, allow_none=True)
    latency_ms = fields.Float(required=True)
    attempted_at = fields.AwareDateTime(required=True)
    next_attempt_at = fields.AwareDateTime(required=True, allow_none=True)


class ReferralStatusChangedV1(Schema):
    referral_id = fields.UUID(required=True)
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    partner_id = fields.UUID(required=True)
    status = fields.String(required=True, validate=_one_of(REFERRAL_STATUSES))
    previous_status = fields.String(required=True, validate=_one_of(REFERRAL_STATUSES))
    # A code for why (a decline reason, a closing outcome), never free text: it may reach other services.
    note_code = fields.String(required=True, allow_none=True, validate=validate.Length(max=64))
    changed_at = fields.AwareDateTime(required=True)
    changed_by = fields.String(required=True, validate=_one_of(("partner", "staff", "system")))


class ReferralEscalatedV1(Schema):
    """A referral (or a case nobody matched) that needs the next partner and the on-duty supervisor."""
    referral_id = fields.UUID(required=True, allow_none=True)  # None when no partner matched at all
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    service = fields.String(required=True, validate=_one_of(SERVICE_TYPES))
    governorate = fields.String(required=True, validate=_one_of(GOVERNORATES))
    reason = fields.String(required=True, validate=_one_of(ESCALATION_REASONS))
    step = fields.Integer(required=True, validate=validate.Range(min=1))
    reoffered_to = fields.UUID(required=True, allow_none=True)  # the next partner, if one was found
    escalated_at = fields.AwareDateTime(required=True)


class NotificationExhaustedV1(Schema):
    """Every attempt to deliver a webhook failed: the partner did not get it."""
    delivery_id = fields.UUID(required=True)
    webhook_id = fields.String(required=True)
    referral_id = fields.UUID(required=True)
    case_id = fields.UUID(required=True)
    partner_id = fields.UUID(required=True)
    attempts = fields.Integer(required=True, validate=validate.Range(min=1))
    last_status_code = fields.Integer(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    exhausted_at = fields.AwareDateTime(required=True)


class CaseRiskOverriddenV1(Schema):
    """Staff set a case's risk level by hand; the original assessment is kept."""
    case_id = fields.UUID(required=True)
    reference = fields.String(required=True)
    previous_level = fields.String(required=True, allow_none=True, validate=_one_of(RISK_LEVELS))
    level = fields.String(required=True, validate=_one_of(RISK_LEVELS))
    sealed_reason = fields.String(required=True)  # staff's words may quote the caller
    overridden_by = fields.UUID(required=True)
    role = fields.String(required=True)
    overridden_at = fields.AwareDateTime(required=True)


# (type, version) -> schema. The highest version of a type is the one producers emit.
SCHEMAS = {
    ("case.received", 1): CaseReceivedV1,
    ("case.received", 2): CaseReceivedV2,
    ("case.triaged", 1): CaseTriagedV1,
    ("case.triaged", 2): CaseTriagedV2,
    ("case.unmatched", 1): CaseUnmatchedV1,
    ("referral.created", 1): ReferralCreatedV1,
    ("delivery.attempted", 1): DeliveryAttemptedV1,
    ("referral.status_changed", 1): ReferralStatusChangedV1,
    ("referral.escalated", 1): ReferralEscalatedV1,
    ("notification.exhausted", 1): NotificationExhaustedV1,
    ("case.risk_overridden", 1): CaseRiskOverriddenV1,
}


def _particulars_kept_plain(names):
    """An upcaster to version 2 of an event whose version 1 carried `names` in plaintext. It cannot seal
    them (it holds no key), nor need it: they were read off the broker already. It keeps them as they
    came, under the key "particulars", which `particulars` returns in place of opening the sealed ones.
    No message puts them there: parse drops a key its schema does not know."""
    def upcast(data):
        kept = {key: value for key, value in data.items() if key not in names}
        return {**kept, "sealed_particulars": None, "particulars": {name: data[name] for name in names}}
    return upcast


# (type, version) -> function turning that version's data into the next version's data.
UPCASTERS = {
    ("case.received", 1): _particulars_kept_plain(("facts", "preferences")),
    ("case.triaged", 1): _particulars_kept_plain(("reasons", "preferences")),
}
# The schema of each event's sealed_particulars, once opened.
PARTICULARS = {"case.received": ReceivedParticulars, "case.triaged": TriagedParticulars}

CURRENT_VERSION = {}
for _type, _version in SCHEMAS:
    CURRENT_VERSION[_type] = max(_version, CURRENT_VERSION.get(_type, 0))

# Built once: a marshmallow schema copies all its fields when it is made, which cost more than the
# load or dump itself on every message. Instances hold no state between calls. Each goes through
# QuickSchema, which reads and writes the plain form producers write without marshmallow's machinery,
# and hands anything else to marshmallow.
_ENVELOPE = QuickSchema(Envelope())
_DATA_SCHEMAS = {key: QuickSchema(schema()) for key, schema in SCHEMAS.items()}
_PARTICULARS = {event_type: QuickSchema(schema()) for event_type, schema in PARTICULARS.items()}


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    type: str
    version: int
    occurred_at: datetime
    producer: str
    correlation_id: uuid.UUID
    lane: str
    data: dict = field(repr=False)
    # The data as it travels, when the producer has already dumped it to check it (new_event).
    dumped_data: dict | None = field(default=None, repr=False, compare=False)

    @property
    def routing_key(self) -> str:
        return f"{self.type}.{self.lane}"

    def to_message(self) -> dict:
        """The JSON-ready body published to the broker: the Envelope schema's dump, written out, since
        every field of the envelope is a plain value or one with a fixed text form."""
        data = self.dumped_data
        if data is None:
            data = _DATA_SCHEMAS[(self.type, self.version)].dump(self.data)
        return {
            "id": str(self.id), "type": self.type, "version": self.version,
            "occurred_at": self.occurred_at.isoformat(), "producer": self.producer,
            "correlation_id": str(self.correlation_id), "lane": self.lane, "data": data,
        }


def new_event(event_type, data, producer, correlation_id=None, lane="normal", now=None) -> Event:
    """Build an event at its type's current version; invalid data fails here, at the producer."""
    if event_type not in CURRENT_VERSION:
        raise ContractError({"type": [f"unknown event type {event_type!r}"]})
    version = CURRENT_VERSION[event_type]
    schema = _DATA_SCHEMAS[(event_type, version)]
    dumped = schema.dump(data)
    errors = schema.validate(dumped)
    if lane not in LANES:
        errors["lane"] = [f"Must be one of: {', '.join(LANES)}."]
    if errors:
        raise ContractError(errors)
    event_id = uuid.uuid4()
    return Event(
        id=event_id, type=event_type, version=version, occurred_at=now or datetime.now(timezone.utc),
        producer=producer, correlation_id=correlation_id or event_id, lane=lane, data=data, dumped_data=dumped,
    )


def parse(message) -> Event:
    """Validate a message body and return its event, upcast to the current version of its type."""
    if not isinstance(message, dict):
        raise ContractError({"_schema": ["message body must be a JSON object"]})
    try:
        envelope = _ENVELOPE.load(message)
    except ValidationError as exc:
        raise ContractError(exc.messages) from None
    event_type, version, data = envelope["type"], envelope["version"], envelope["data"]
    if event_type not in CURRENT_VERSION:
        raise ContractError({"type": [f"unknown event type {event_type!r}"]})
    if (event_type, version) not in SCHEMAS:
        raise ContractError({"version": [f"unknown version {version} of {event_type}"]})
    try:
        # Fields added within a version by a newer producer are ignored, so producers can deploy first.
        data = _DATA_SCHEMAS[(event_type, version)].load(data, unknown=EXCLUDE)
    except ValidationError as exc:
        raise ContractError({"data": exc.messages}) from None
    while version < CURRENT_VERSION[event_type]:
        data = UPCASTERS[(event_type, version)](data)
        version += 1
    return Event(
        id=envelope["id"], type=event_type, version=version, occurred_at=envelope["occurred_at"],
        producer=envelope["producer"], correlation_id=envelope["correlation_id"], lane=envelope["lane"],
        data=data,
    )


def seal_particulars(event_type, values: dict, ring, case_id) -> str:
    """The sealed_particulars of an `event_type` event of case `case_id`: `values` (the fields of
    PARTICULARS[event_type]) checked against their schema, written as JSON and sealed with `ring` (the
    transport key ring). Invalid values fail here, at the producer, as new_event's data does."""
    schema = _PARTICULARS[event_type]
    dumped = schema.dump(values)
    errors = schema.validate(dumped)
    if errors:
        raise ContractError({"sealed_particulars": errors})
    return ring.seal(json.dumps(dumped, ensure_ascii=False, separators=(",", ":")), particulars_context(case_id))


def particulars(event: Event, ring) -> dict:
    """The particulars `event` carries sealed, opened with `ring` and loaded with their schema (those of
    an upcast version 1 event as they came). ContractError if they do not meet it."""
    data = event.data
    if data["sealed_particulars"] is None:
        return data["particulars"]
    opened = ring.open(data["sealed_particulars"], particulars_context(data["case_id"]))
    try:
        values = json.loads(opened)
    except ValueError:
        raise ContractError({"sealed_particulars": ["Not valid JSON."]}) from None
    try:
        return _PARTICULARS[event.type].load(values, unknown=EXCLUDE)
    except ValidationError as exc:
        raise ContractError({"sealed_particulars": exc.messages}) from None
