"""marshmallow fields for what clients send the HTTP APIs, shared by every service that reads JSON bodies."""
from marshmallow import fields


class StrictBoolean(fields.Boolean):
    """true or false, and nothing that merely compares equal to them or reads like them: marshmallow's
    Boolean takes 1, 0.0, "yes" and "off" too, which the APIs' documents do not allow (1 == True in
    Python, so a set of allowed values cannot keep them out)."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class StrictFloat(fields.Float):
    """A JSON number, and not a string that reads as one ("5"), which marshmallow's Float takes."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid", input=value)
        return super()._deserialize(value, attr, data, **kwargs)
