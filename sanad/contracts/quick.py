"""A quicker way through a marshmallow schema for events in the form our producers write them.

The schemas in events.py stay the contract. Each is compiled here, once, into a reader and a writer that
accept only each field's plain form: a UUID as text (or a UUID when writing), a time as ISO 8601 text with
an offset (or an aware datetime), JSON numbers, booleans, strings, lists and objects. On such input they
return exactly what marshmallow's load or dump would, field by field, and run the field's own validators.
On anything else (a missing required field, a wrong type, a failed validator, a key the schema does not
know where it refuses unknown keys) they give up, and marshmallow reads the whole input again: it alone
decides what is wrong and words the errors. So the quick path can only be slower to refuse, never more
lenient, and what it accepts is what marshmallow accepts.

Why: marshmallow's general machinery (error stores, per-field closures, partial loading) cost 40 to 80 µs
each time an event was made or read, and a case's events are made or read about ten times on its way to
a partner (docs/performance.md, item 51).
"""
import math
import uuid
from datetime import datetime

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, missing
from marshmallow.validate import Validator


class _Unsure(Exception):
    """The quick path cannot vouch for this input: marshmallow must read it."""


class NotCompilable(Exception):
    """The schema uses something the quick path does not know; marshmallow does all its work."""


# What goes wrong when input is not in its plain form; each sends the input to marshmallow.
_GIVE_UP = (_Unsure, ValidationError, ValueError, TypeError, OverflowError, AttributeError)


def _read_uuid(value):
    if type(value) is not str:
        raise _Unsure
    return uuid.UUID(value)


# Text, booleans and JSON objects are the same read as written.
def _text(value):
    if type(value) is not str:
        raise _Unsure
    return value


def _read_integer(value):
    if type(value) is not int:
        raise _Unsure
    return value


def _any_float(value):
    if type(value) is not float and type(value) is not int:
        raise _Unsure
    return float(value)


def _finite_float(value):
    value = _any_float(value)
    if not math.isfinite(value):
        raise _Unsure
    return value


def _boolean(value):
    if value is not True and value is not False:
        raise _Unsure
    return value


def _read_aware_time(value):
    if type(value) is not str:
        raise _Unsure
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None or moment.tzinfo.utcoffset(moment) is None:
        raise _Unsure
    return moment


def _object(value):
    if type(value) is not dict:
        raise _Unsure
    return dict(value)


def _write_uuid(value):
    if type(value) is not uuid.UUID and type(value) is not str:
        raise _Unsure
    return str(value)


def _write_number(kind):
    def write(value):
        if type(value) is not int and type(value) is not float:
            raise _Unsure
        return kind(value)
    return write


def _write_time(value):
    if type(value) is not datetime:
        raise _Unsure
    return value.isoformat()


def _converters(field):
    """(read, write) for one field, each taking a value that is neither missing nor None."""
    kind = type(field)
    if kind is fields.UUID:
        return _read_uuid, _write_uuid
    if kind is fields.String:
        return _text, _text
    if kind is fields.Integer and not field.as_string:
        return _read_integer, _write_number(int)
    if kind is fields.Float and not field.as_string:
        return (_any_float if field.allow_nan else _finite_float), _write_number(float)
    if kind is fields.Boolean and field.truthy is fields.Boolean.truthy and field.falsy is fields.Boolean.falsy:
        return _boolean, _boolean
    if kind is fields.AwareDateTime and field.format in (None, "iso") and field.default_timezone is None:
        return _read_aware_time, _write_time
    if kind is fields.Dict and field.key_field is None and field.value_field is None:
        return _object, _object
    if kind is fields.List:
        read_item, write_item = _converters(field.inner)
        read_item = _validated(read_item, field.inner.validators)

        def read_list(value):
            if type(value) is not list:
                raise _Unsure
            return [None if item is None and field.inner.allow_none else read_item(item) for item in value]

        def write_list(value):
            if type(value) is not list:
                raise _Unsure
            return [None if item is None else write_item(item) for item in value]
        return read_list, write_list
    if kind is fields.Nested and not field.many and field.unknown is None:
        nested = QuickSchema(field.schema)
        if nested.compiled is None:
            raise NotCompilable(f"nested schema {type(field.schema).__name__}")
        return nested.quick_load, nested.quick_dump
    raise NotCompilable(f"{kind.__name__} field")


def _validated(read, validators):
    if not validators:
        return read

    def read_and_check(value):
        value = read(value)
        for validator in validators:
            if validator(value) is False and not isinstance(validator, Validator):
                raise _Unsure
        return value
    return read_and_check


class _Field:
    """One field compiled: its name, what to do when it is missing or None, and its converters."""

    def __init__(self, name, field):
        # marshmallow looks a key up on a dict, then as an attribute: a key named like a dict method
        # would reach the method.
        if field.data_key is not None or field.attribute is not None or hasattr(dict, name):
            raise NotCompilable(f"{name}: data_key, attribute or a name dict has")
        self.name = name
        self.required = field.required
        self.allow_none = field.allow_none
        self.load_default = field.load_default
        self.dump_default = field.dump_default
        read, self.write = _converters(field)
        self.read = _validated(read, field.validators)


class QuickSchema:
    """A marshmallow schema with a quick path in front of load, validate and dump."""

    def __init__(self, schema: Schema):
        self.schema = schema
        try:
            self.compiled = self._compile(schema)
        except NotCompilable:
            self.compiled = None
        self.known = frozenset(schema.fields)

    @staticmethod
    def _compile(schema):
        if any(schema._hooks.values()) or schema.only is not None or schema.exclude or schema.many:
            raise NotCompilable("hooks or options")
        if schema.load_only or schema.dump_only or schema.unknown not in (RAISE, EXCLUDE):
            raise NotCompilable("load_only, dump_only or unknown")
        return [_Field(name, field) for name, field in schema.fields.items()]

    def load(self, data, unknown=None):
        """What `schema.load(data, unknown=unknown)` returns; it raises marshmallow's ValidationError."""
        if self.compiled is not None:
            try:
                return self.quick_load(data, unknown)
            except _GIVE_UP:
                pass
        return self.schema.load(data, unknown=unknown)

    def validate(self, data) -> dict:
        """What `schema.validate(data)` returns: {} when valid, else the errors by field."""
        if self.compiled is not None:
            try:
                self.quick_load(data)
                return {}
            except _GIVE_UP:
                pass
        return self.schema.validate(data)

    def dump(self, obj):
        """What `schema.dump(obj)` returns."""
        if self.compiled is not None:
            try:
                return self.quick_dump(obj)
            except _GIVE_UP:
                pass
        return self.schema.dump(obj)

    def quick_load(self, data, unknown=None):
        """The quick path alone: what marshmallow's load returns, or one of _GIVE_UP raised."""
        unknown = self.schema.unknown if unknown is None else unknown
        if type(data) is not dict or unknown not in (RAISE, EXCLUDE):
            raise _Unsure
        loaded = {}
        for field in self.compiled:
            value = data.get(field.name, missing)
            if value is missing:
                if field.required:
                    raise _Unsure
                default = field.load_default
                if default is not missing:
                    loaded[field.name] = default() if callable(default) else default
            elif value is None:
                if not field.allow_none:
                    raise _Unsure
                loaded[field.name] = None
            else:
                loaded[field.name] = field.read(value)
        if unknown == RAISE and not self.known.issuperset(data):
            raise _Unsure
        return loaded

    def quick_dump(self, obj):
        """The quick path alone: what marshmallow's dump returns, or one of _GIVE_UP raised."""
        if type(obj) is not dict:
            raise _Unsure
        dumped = {}
        for field in self.compiled:
            value = obj.get(field.name, missing)
            if value is missing:
                default = field.dump_default
                value = default() if callable(default) else default
                if value is missing:
                    continue
            dumped[field.name] = None if value is None else field.write(value)
        return dumped
