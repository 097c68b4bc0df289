"""Escaping by default for server-rendered pages.

Every value put into HTML goes through `esc`, which escapes it unless it is already `Safe` (markup built
here). Templates are constants in code; only values come from people, and values are always escaped, in
text and in attributes alike (quotes included), so a name like `<script>` or `" onfocus="` is shown as text.
"""
import html
import json


class Safe(str):
    """Markup that is already escaped."""


def esc(value) -> Safe:
    if isinstance(value, Safe):
        return value
    if value is None:
        return Safe("")
    return Safe(html.escape(str(value), quote=True))


def render(template, **values) -> Safe:
    """`template` with each {name} replaced by its value, escaped."""
    return Safe(template.format(**{name: esc(value) for name, value in values.items()}))


def join(parts, separator="") -> Safe:
    return Safe(esc(separator).join(esc(part) for part in parts))


def attribute_json(value) -> Safe:
    """A JSON value for a data-* attribute, escaped for the attribute."""
    return esc(json.dumps(value, ensure_ascii=False, default=str))
