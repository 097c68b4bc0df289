"""Structured logs: one JSON object per line, with the context of the work in hand and nothing personal.

Three pieces, wired by each service's config.yaml (LOGGING):
- LogContext, a dependency every service inherits (sanad.platform.observability.Observable), records
  which event a worker is handling (type, correlation id, case reference) while it runs, and logs one
  line per event handled;
- PrivacyFilter, on the handler, renders each message once with exceptions reduced to their type, masks
  what looks like a phone number, an e-mail address, Arabic text or a query string, and attaches the
  context; it is the last line of defence, not a licence to log personal data;
- JsonFormatter writes the record as one JSON object; PlainFormatter is for a developer's terminal.
An exception is logged as its type and stack frames, never its message: psycopg2, marshmallow and our own
errors may quote the values they refused.
"""
import contextvars
import json
import logging
import re
import sys
import time
import traceback
import uuid
from datetime import datetime, timezone

from nameko.extensions import DependencyProvider
from nameko.messaging import Consumer

log = logging.getLogger(__name__)

# Set once per process by LogContext.setup(); one process runs one service.
_service = {"name": None}
_context = contextvars.ContextVar("sanad_log_context", default=None)

CONTEXT_FIELDS = ("event_type", "correlation_id", "case_reference", "entrypoint")
# Extra attributes a log call may pass (extra={...}); anything else passed is dropped.
EXTRA_FIELDS = ("duration_ms", "outcome")

EVENT_TYPE = re.compile(r"^[a-z][a-z_]{0,40}\.[a-z][a-z_]{0,40}$")
CASE_REFERENCE = re.compile(r"^[A-Z]{2,5}(?:-[0-9A-Z]{2,8}){1,3}$")

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_DIGIT = r"[0-9\u0660-\u0669\u06f0-\u06f9]"
# Nine digits or more, in groups split by one space or dash, optionally after + (a phone number, or any
# long number: an account, an ID card). Dates (8 digits), times and identifiers inside words are left alone.
_LONG_NUMBER = rf"(?<![\w.+-])\+?{_DIGIT}(?:[ -]?{_DIGIT}){{8,}}(?![\w:])"
_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_ARABIC = r"[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]+(?:\s+[\u0600-\u06ff\u0750-\u077f\u08a0-\u08ff\ufb50-\ufdff\ufe70-\ufeff]+)*"
_QUERY = r"(?P<path>/[^\s?\"]*)\?[^\s\"]*"
# UUIDs come first in the alternation so their digits are never taken for a number.
_MASKS = re.compile(rf"(?P<uuid>{_UUID})|(?P<email>{_EMAIL})|(?P<number>{_LONG_NUMBER})|(?P<arabic>{_ARABIC})"
                    rf"|(?P<query>{_QUERY})")
_REPLACEMENTS = {"email": "[email]", "number": "[number]", "arabic": "[arabic text]"}
# Scrapes and health checks answered 200: one every few seconds per process, and nothing to learn from.
_PROBE_ACCESS = re.compile(r'"GET /(?:metrics|health|ready) HTTP/[0-9.]+" 200 ')


# Most lines hold none of these: a cheap look first spares them the full pattern (every line is masked).
_MAYBE_NUMBER = re.compile(r"[0-9\u0660-\u0669\u06f0-\u06f9](?:[ -]?[0-9\u0660-\u0669\u06f0-\u06f9]){8}")


def mask(text: str) -> str:
    """`text` with phone-like numbers, e-mail addresses, Arabic text and URL query strings masked."""
    if text.isascii() and "@" not in text and "?" not in text and not _MAYBE_NUMBER.search(text):
        return text

    def replace(match):
        if match.group("uuid"):
            return match.group()
        if match.group("query"):
            return match.group("path") + "?[query]"
        return _REPLACEMENTS[match.lastgroup]
    return _MASKS.sub(replace, text)


def service_name() -> str:
    """This process's service: set by LogContext once the container is set up; before that (nameko's
    runner announcing the start) read from the `nameko run ... module:Class` the process was started with."""
    if _service["name"] is None:
        for arg in sys.argv[1:]:
            module, _, class_name = arg.partition(":")
            service_class = getattr(sys.modules.get(module), class_name, None) if class_name else None
            if isinstance(getattr(service_class, "name", None), str):
                _service["name"] = service_class.name
                break
    return _service["name"] or "sanad"


def event_context(body) -> dict:
    """What a message body says about the event it carries, keeping only values of the expected shape:
    a malformed body (set aside later by the inbox) must not put arbitrary text into the logs."""
    if not isinstance(body, dict):
        return {}
    context = {}
    event_type = body.get("type")
    if isinstance(event_type, str) and EVENT_TYPE.match(event_type):
        context["event_type"] = event_type
    correlation_id = _as_uuid(body.get("correlation_id"))
    if correlation_id:
        context["correlation_id"] = correlation_id
    data = body.get("data")
    reference = data.get("reference") if isinstance(data, dict) else None
    if isinstance(reference, str) and CASE_REFERENCE.match(reference):
        context["case_reference"] = reference
    return context


def _as_uuid(value):
    try:
        return str(uuid.UUID(str(value))) if value is not None else None
    except ValueError:
        return None


class LogContext(DependencyProvider):
    """Puts the worker's event (or HTTP route) into every log line the worker writes, and logs one line
    per event handled, each event of a batch that committed included, so that a case can be followed
    across the services by its correlation id whether its events came alone or together. The context
    lives in a contextvar, which eventlet keeps per green thread."""

    def __init__(self):
        self.started = {}

    def setup(self):
        _service["name"] = self.container.service_name

    def get_dependency(self, worker_ctx):
        return None

    def worker_setup(self, worker_ctx):
        context = {"entrypoint": worker_ctx.entrypoint.method_name}
        if isinstance(worker_ctx.entrypoint, Consumer) and worker_ctx.args:
            body = worker_ctx.args[0]
            if isinstance(body, list):  # a batch consumer's bodies: one names its event, several are counted
                body = body[0] if len(body) == 1 else {}
                context["events"] = len(worker_ctx.args[0])
            context.update(event_context(body))
        else:
            case_id = _as_uuid((worker_ctx.kwargs or {}).get("case_id"))
            if case_id:  # intake's case id is the correlation id of everything about the case
                context["correlation_id"] = case_id
        self.started[worker_ctx] = (time.perf_counter(), _context.set(context))

    def worker_result(self, worker_ctx, result=None, exc_info=None):
        started = self.started.get(worker_ctx)
        if started is None or not isinstance(worker_ctx.entrypoint, Consumer):
            return
        context = _context.get() or {}
        duration_ms = round((time.perf_counter() - started[0]) * 1000, 1)
        batch = context.get("events", 1)
        if batch > 1 and exc_info is None:
            for body in worker_ctx.args[0]:
                each = {**context, **event_context(body)}
                token = _context.set(each)
                try:
                    log.info("handled %s", each.get("event_type") or "a message",
                             extra={"duration_ms": duration_ms, "outcome": "ok"})
                finally:
                    _context.reset(token)
            return
        outcome = "ok" if exc_info is None else "requeued" if batch == 1 else "handed_over_one_at_a_time"
        what = context.get("event_type") or (f"{batch} events" if batch > 1 else "a message")
        log.info("handled %s", what, extra={"duration_ms": duration_ms, "outcome": outcome})

    def worker_teardown(self, worker_ctx):
        started = self.started.pop(worker_ctx, None)
        if started is not None:
            try:
                _context.reset(started[1])
            except ValueError:  # teardown ran outside the worker's green thread: nothing to restore
                pass


class PrivacyFilter(logging.Filter):
    """Renders the message once, safely, and attaches the service and the worker's context. Drops the
    access lines of successful scrapes and health checks."""

    def filter(self, record):
        record.msg = mask(_render(record))
        record.args = None
        if record.name == "nameko.web.server" and _PROBE_ACCESS.search(record.msg):
            return False
        record.service = service_name()
        context = _context.get() or {}
        for name in CONTEXT_FIELDS:
            setattr(record, name, context.get(name))
        return True


def _render(record):
    args = record.args
    if isinstance(args, tuple):
        args = tuple(_safe_arg(a) for a in args)
    elif isinstance(args, dict):
        args = {k: _safe_arg(v) for k, v in args.items()}
    try:
        return str(record.msg) % args if args else str(record.msg)
    except (TypeError, ValueError, KeyError):
        return str(record.msg)


def _safe_arg(value):
    """An exception's text may quote personal data: log its type only."""
    return type(value).__name__ if isinstance(value, BaseException) else value


def exception_summary(exc_info) -> dict:
    """An exception as its type, the types of its causes, and its stack frames: never its message."""
    exc_type, exc, tb = exc_info
    causes = []
    seen = exc
    while seen is not None and len(causes) < 5:
        seen = seen.__cause__ or seen.__context__
        if seen is not None:
            causes.append(_qualified_name(type(seen)))
    frames = [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in traceback.extract_tb(tb)]
    summary = {"type": _qualified_name(exc_type), "frames": frames}
    if causes:
        summary["caused_by"] = causes
    return summary


def _qualified_name(cls):
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, then the context present."""

    def format(self, record):
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
            "level": record.levelname,
            "service": getattr(record, "service", None) or service_name(),
            "logger": record.name,
            # Already rendered by PrivacyFilter on the handler; rendered the same way here when it was not.
            "message": mask(_render(record)),
        }
        for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = exception_summary(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class PlainFormatter(logging.Formatter):
    """For reading in a terminal: one line, the context in brackets, exceptions without their messages."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(service)s %(name)s: %(message)s")

    def format(self, record):
        record.service = getattr(record, "service", None) or service_name()
        line = super().format(record)
        context = " ".join(f"{name}={getattr(record, name)}" for name in (*CONTEXT_FIELDS, *EXTRA_FIELDS)
                           if getattr(record, name, None) is not None)
        return f"{line} [{context}]" if context else line

    def formatException(self, exc_info):
        summary = exception_summary(exc_info)
        return "\n".join([summary["type"], *(f"  {frame}" for frame in summary["frames"])])
