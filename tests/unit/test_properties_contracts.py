"""Property-based tests of every event contract (Hypothesis): whatever a valid producer can build comes back
unchanged from the broker's JSON (an event of an older version as its upcasters make it), and whatever
arrives, however broken, parse() either accepts or refuses with a ContractError naming what is wrong; never
another exception, which would crash a consumer instead of setting the message aside.

Strategies are derived from the marshmallow schemas themselves, so a contract added to SCHEMAS is covered
without touching this file.
"""
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import fields, validate

from sanad.contracts.events import (
    CURRENT_VERSION, SCHEMAS, UPCASTERS, ContractError, Envelope, Event, new_event, parse,
)
from sanad.contracts.vocabulary import LANES

EXAMPLES = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON as it can arrive off the wire: anything json.loads can return.
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text()
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=20)

aware_datetimes = st.datetimes(timezones=st.sampled_from([
    timezone.utc, timezone(timedelta(hours=3)), timezone(timedelta(hours=-5, minutes=-30)),
]))


def _validator(field, kind):
    return next((v for v in field.validators if isinstance(v, kind)), None)


def strategy_for(field):
    """Values that pass `field`'s type and validators."""
    one_of = _validator(field, validate.OneOf)
    value_range = _validator(field, validate.Range)
    length = _validator(field, validate.Length)
    if one_of is not None:
        base = st.sampled_from(list(one_of.choices))
    elif isinstance(field, fields.UUID):
        base = st.uuids()
    elif isinstance(field, fields.AwareDateTime):
        base = aware_datetimes
    elif isinstance(field, fields.Boolean):
        base = st.booleans()
    elif isinstance(field, fields.Integer):
        base = st.integers(min_value=value_range.min if value_range else -(2 ** 31),
                           max_value=value_range.max if value_range and value_range.max is not None else 2 ** 31)
    elif isinstance(field, fields.Float):
        base = st.floats(min_value=value_range.min if value_range else None,
                         max_value=value_range.max if value_range else None, allow_nan=False, allow_infinity=False)
    elif isinstance(field, fields.String):
        base = st.text(min_size=length.min or 0 if length else 0, max_size=length.max if length and length.max else 40)
    elif isinstance(field, fields.List):
        base = st.lists(strategy_for(field.inner), max_size=4)
    elif isinstance(field, fields.Nested):
        base = strategy_for_schema(field.schema)
    elif isinstance(field, fields.Dict):
        base = st.dictionaries(st.text(max_size=10), json_values, max_size=4)
    else:
        raise NotImplementedError(f"no strategy for {type(field).__name__}: add one")
    return st.none() | base if field.allow_none else base


def strategy_for_schema(schema):
    return st.fixed_dictionaries({name: strategy_for(field) for name, field in schema.fields.items()})


CONTRACTS = sorted(SCHEMAS)


def _over_the_wire(message):
    return json.loads(json.dumps(message))


def _made(event_type, version, payload, lane="normal"):
    """The event a producer of that version of the contract sends (new_event makes only the current one)."""
    if version == CURRENT_VERSION[event_type]:
        return new_event(event_type, payload, producer="property-test", lane=lane)
    return Event(id=uuid.uuid4(), type=event_type, version=version, occurred_at=datetime.now(timezone.utc),
                 producer="property-test", correlation_id=uuid.uuid4(), lane=lane, data=payload)


def _upcast(event_type, version, payload):
    while version < CURRENT_VERSION[event_type]:
        payload = UPCASTERS[(event_type, version)](payload)
        version += 1
    return payload


@pytest.mark.parametrize("event_type,version", CONTRACTS)
@EXAMPLES
@given(data=st.data())
def test_every_valid_event_survives_the_trip_through_json_unchanged(event_type, version, data):
    payload = data.draw(strategy_for_schema(SCHEMAS[(event_type, version)]()))
    lane = data.draw(st.sampled_from(LANES))
    event = _made(event_type, version, payload, lane)

    parsed = parse(_over_the_wire(event.to_message()))

    assert (parsed.id, parsed.type, parsed.lane) == (event.id, event.type, lane)
    assert parsed.version == CURRENT_VERSION[event_type]
    assert parsed.occurred_at == event.occurred_at and parsed.correlation_id == event.correlation_id
    assert parsed.data == _upcast(event_type, version, payload)


@EXAMPLES
@given(message=json_values)
def test_parse_refuses_arbitrary_json_only_with_a_contract_error(message):
    try:
        parse(message)
    except ContractError as exc:
        assert exc.errors
    # Anything else propagates and fails the test.


@st.composite
def damaged_messages(draw):
    """A valid message with one envelope or data field replaced by arbitrary JSON, or removed."""
    event_type, version = draw(st.sampled_from(CONTRACTS))
    payload = draw(strategy_for_schema(SCHEMAS[(event_type, version)]()))
    message = _over_the_wire(_made(event_type, version, payload).to_message())
    in_data = draw(st.booleans())
    target = message["data"] if in_data else message
    names = sorted(SCHEMAS[(event_type, version)]().fields if in_data else Envelope().fields)
    name = draw(st.sampled_from(names))
    if draw(st.booleans()):
        target.pop(name, None)
    else:
        target[name] = draw(json_values)
    return message


@EXAMPLES
@given(message=damaged_messages())
def test_parse_of_a_damaged_event_either_accepts_it_or_names_what_is_wrong(message):
    try:
        event = parse(message)
    except ContractError as exc:
        assert exc.errors and all(isinstance(field, str) for field in exc.errors)
    else:
        assert event.type == message["type"]
