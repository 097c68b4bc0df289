"""The quick path through the event contracts (sanad.contracts.quick) against marshmallow itself.

What must hold: whatever the quick path accepts, marshmallow accepts too and returns the very same values,
types included; whatever marshmallow refuses, the quick path refuses and leaves to marshmallow. And the
quick path must actually be taken for what our producers write, or it buys nothing.
"""
import json
import math
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from marshmallow import EXCLUDE, INCLUDE, RAISE, Schema, ValidationError, fields, post_load, validate

from sanad.contracts.events import _DATA_SCHEMAS, _ENVELOPE, SCHEMAS, Envelope
from sanad.contracts.quick import QuickSchema
from tests.unit.test_properties_contracts import EXAMPLES, json_values, strategy_for_schema

GAVE_UP = object()


def _quick(step, value, **kwargs):
    try:
        return step(value, **kwargs)
    except Exception:  # noqa: BLE001 - any exception is the quick path giving up
        return GAVE_UP


def _marshmallow(step, value, **kwargs):
    try:
        return step(value, **kwargs)
    except ValidationError:
        return GAVE_UP


def _same(left, right):
    """Equal and of the same types all the way down: 1 == 1.0 == True, but not for a contract."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right))
    if isinstance(left, datetime):
        return left == right and left.utcoffset() == right.utcoffset()
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return left == right


def _schemas_and_nested():
    found = {"Envelope": Envelope()}
    pending = [schema() for schema in SCHEMAS.values()]
    while pending:
        schema = pending.pop()
        found.setdefault(type(schema).__name__, schema)
        for field in schema.fields.values():
            field = field.inner if isinstance(field, fields.List) else field
            if isinstance(field, fields.Nested):
                pending.append(field.schema)
    return found


ALL_SCHEMAS = _schemas_and_nested()
NAMES = sorted(ALL_SCHEMAS)


def for_every_schema(test):
    """Run `test(name, data)` for every schema, nested ones included, with Hypothesis drawing from `data`."""
    return pytest.mark.parametrize("name", NAMES)(EXAMPLES(given(data=st.data())(test)))


@st.composite
def damaged(draw, value, depth=0):
    """`value` (a JSON object) with some fields, at any depth, replaced, removed or added."""
    if not isinstance(value, dict) or not value:
        return value
    value = dict(value)
    for name in sorted(value):
        action = draw(st.sampled_from(["keep", "keep", "keep", "replace", "remove", "descend"]))
        if action == "replace":
            value[name] = draw(json_values | st.sampled_from([True, 1.5, float("nan"), "2026-12-07T01:00:00",
                                                               str(uuid.uuid4()), [None], {}]))
        elif action == "remove":
            del value[name]
        elif action == "descend" and depth < 3:
            inner = value[name]
            if isinstance(inner, list):
                value[name] = [draw(damaged(item, depth + 1) | json_values) for item in inner + [None]]
            else:
                value[name] = draw(damaged(inner, depth + 1))
    if draw(st.booleans()):
        value[draw(st.text(max_size=8))] = draw(json_values)
    return value


def _wire(schema, payload):
    return json.loads(json.dumps(schema.dump(payload)))


def _damaged_message(data, schema):
    """A valid message for `schema`, as it arrives off the wire, then damaged."""
    return data.draw(damaged(_wire(schema, data.draw(strategy_for_schema(schema)))))


def test_every_contract_and_the_envelope_take_the_quick_path():
    assert _ENVELOPE.compiled is not None
    assert all(schema.compiled is not None for schema in _DATA_SCHEMAS.values())
    assert all(QuickSchema(schema).compiled is not None for schema in ALL_SCHEMAS.values())


@for_every_schema
def test_what_a_producer_writes_is_read_quickly_and_exactly_as_marshmallow_reads_it(name, data):
    schema = ALL_SCHEMAS[name]
    wire = _wire(schema, data.draw(strategy_for_schema(schema)))

    quick = _quick(QuickSchema(schema).quick_load, wire)

    assert quick is not GAVE_UP
    assert _same(quick, schema.load(wire))


@for_every_schema
def test_the_quick_path_never_accepts_what_marshmallow_refuses_nor_reads_it_otherwise(name, data):
    schema = ALL_SCHEMAS[name]
    message = _damaged_message(data, schema)
    unknown = data.draw(st.sampled_from([None, RAISE, EXCLUDE, INCLUDE]))

    quick = _quick(QuickSchema(schema).quick_load, message, unknown=unknown)
    expected = _marshmallow(schema.load, message, unknown=unknown)

    if quick is not GAVE_UP:
        assert expected is not GAVE_UP
        assert _same(quick, expected)


@for_every_schema
def test_load_and_validate_answer_as_marshmallow_does_errors_included(name, data):
    schema = ALL_SCHEMAS[name]
    message = _damaged_message(data, schema)
    quick_schema = QuickSchema(schema)

    assert quick_schema.validate(message) == schema.validate(message)
    try:
        expected = schema.load(message)
    except ValidationError as exc:
        with pytest.raises(ValidationError) as refused:
            quick_schema.load(message)
        assert refused.value.messages == exc.messages
    else:
        assert _same(quick_schema.load(message), expected)


python_values = json_values | st.uuids() | st.datetimes(timezones=st.just(timezone.utc)) | st.datetimes() \
    | st.tuples(st.integers()) | st.just(b"bytes")


@st.composite
def damaged_objects(draw, value):
    """A producer's object with some top-level values swapped for arbitrary Python values."""
    value = dict(value)
    for name in sorted(value):
        if draw(st.integers(0, 4)) == 0:
            value[name] = draw(python_values)
    return value


@for_every_schema
def test_the_quick_dump_writes_what_marshmallow_writes_or_leaves_it_to_marshmallow(name, data):
    schema = ALL_SCHEMAS[name]
    payload = data.draw(strategy_for_schema(schema))
    quick_schema = QuickSchema(schema)

    quick = _quick(quick_schema.quick_dump, payload)
    assert quick is not GAVE_UP
    assert _same(quick, schema.dump(payload))

    odd = data.draw(damaged_objects(payload))
    quick = _quick(quick_schema.quick_dump, odd)
    try:
        expected = schema.dump(odd)
    except Exception:  # noqa: BLE001 - marshmallow's dump does not check, so odd values may crash it
        assert quick is GAVE_UP
    else:
        assert quick is GAVE_UP or _same(quick, expected)


def test_a_whole_number_given_for_a_float_is_written_as_a_float_as_marshmallow_writes_it():
    attempted = _DATA_SCHEMAS[("delivery.attempted", 1)]
    payload = {"latency_ms": 12, "attempt": 1}

    written = attempted.quick_dump(payload)

    assert _same(written, attempted.schema.dump(payload))
    assert type(written["latency_ms"]) is float


def _envelope(**changes):
    message = {
        "id": str(uuid.uuid4()), "type": "case.received", "version": 1,
        "occurred_at": "2026-12-07T01:00:00+03:00", "producer": "intake", "correlation_id": str(uuid.uuid4()),
        "lane": "normal", "data": {},
    }
    message.update(changes)
    return message


@pytest.mark.parametrize("changes", [
    {"version": True},
    {"version": 1.0},
    {"occurred_at": "2026-12-07T01:00:00"},
    {"id": "not-a-uuid"},
    {"lane": "express"},
    {"data": None},
    {"stowaway": 1},
], ids=["bool-version", "float-version", "naive-time", "bad-uuid", "unknown-lane", "null-data", "unknown-key"])
def test_an_envelope_marshmallow_refuses_is_refused_with_marshmallows_words(changes):
    message = _envelope(**changes)

    assert _quick(_ENVELOPE.quick_load, message) is GAVE_UP
    with pytest.raises(ValidationError) as refused:
        _ENVELOPE.load(message)
    assert refused.value.messages == _marshmallow_messages(Envelope(), message)


def _marshmallow_messages(schema, message):
    with pytest.raises(ValidationError) as refused:
        schema.load(message)
    return refused.value.messages


def test_a_float_that_is_not_finite_is_refused_where_marshmallow_refuses_it():
    facts = QuickSchema(SCHEMAS[("case.received", 1)]().fields["facts"].schema)

    for value in (float("nan"), float("inf"), float("-inf"), 10 ** 400):
        with pytest.raises(ValidationError):
            facts.load({"deadline_hours": value})
    assert facts.load({"deadline_hours": 3})["deadline_hours"] == 3.0


class _WithHook(Schema):
    name = fields.String(required=True)

    @post_load
    def shout(self, data, **kwargs):
        return {"name": data["name"].upper()}


class _WithDecimal(Schema):
    amount = fields.Decimal(required=True)


class _WithDataKey(Schema):
    name = fields.String(data_key="full_name", required=True)


class _WithDictMethodName(Schema):
    items = fields.List(fields.String(), required=True)


class _WithOwnTruth(Schema):
    agreed = fields.Boolean(truthy={"yes"}, falsy={"no"})


@pytest.mark.parametrize("schema,message,expected", [
    (_WithHook(), {"name": "amira"}, {"name": "AMIRA"}),
    (_WithDecimal(), {"amount": "1.50"}, {"amount": Decimal("1.50")}),
    (_WithDataKey(), {"full_name": "amira"}, {"name": "amira"}),
    (_WithDictMethodName(), {"items": ["a"]}, {"items": ["a"]}),
])
def test_a_schema_the_quick_path_does_not_know_is_left_whole_to_marshmallow(schema, message, expected):
    quick_schema = QuickSchema(schema)

    assert quick_schema.compiled is None
    assert quick_schema.load(message) == expected


def test_a_boolean_with_its_own_truth_values_is_read_by_marshmallow():
    quick_schema = QuickSchema(_WithOwnTruth())

    assert quick_schema.compiled is None
    assert quick_schema.load({"agreed": "yes"}) == {"agreed": True}
    with pytest.raises(ValidationError):
        quick_schema.load({"agreed": True})


def test_unknown_keys_are_dropped_where_the_caller_excludes_them_but_not_inside_a_nested_schema():
    received = _DATA_SCHEMAS[("case.received", 1)]
    wire = _wire(received.schema, {
        "case_id": uuid.uuid4(), "reference": "SND-1", "received_at": datetime.now(timezone.utc),
        "channel": "phone", "governorate": "dhi_qar", "needs": ["counselling"], "consents": [],
        "facts": {}, "sealed_narrative": "x",
    })

    assert "added_later" not in received.load({**wire, "added_later": 1}, unknown=EXCLUDE)
    with pytest.raises(ValidationError) as refused:
        received.load({**wire, "facts": {"added_later": 1}}, unknown=EXCLUDE)
    assert refused.value.messages == {"facts": {"added_later": ["Unknown field."]}}


def test_a_validator_inside_a_list_is_run():
    schema = QuickSchema(type("Needs", (Schema,), {
        "needs": fields.List(fields.String(validate=validate.OneOf(["legal_aid"])), required=True),
    })())

    assert schema.compiled is not None
    assert schema.load({"needs": ["legal_aid"]}) == {"needs": ["legal_aid"]}
    with pytest.raises(ValidationError) as refused:
        schema.load({"needs": ["legal_aid", "astrology"]})
    assert 1 in refused.value.messages["needs"]
