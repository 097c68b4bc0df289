"""The log formatter, the privacy filter and the worker's log context (sanad.platform.logs), on records and
workers made here: no process, no I/O."""
import json
import logging
import uuid

import pytest
from nameko.messaging import Consumer

from sanad.contracts import routing
from sanad.platform.logs import JsonFormatter, LogContext, PlainFormatter, PrivacyFilter, event_context, mask

CASE_ID = "4f1c2a3b-1234-4567-8901-123456789012"


def record(msg, args=(), exc_info=None, name="sanad.test", level=logging.INFO, **extra):
    made = logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(made, key, value)
    return made


def formatted(made):
    PrivacyFilter().filter(made)
    return json.loads(JsonFormatter().format(made))


@pytest.mark.parametrize("text, expected", [
    ("call +964 770 123 4567 now", "call [number] now"),
    ("رقمها ٠٧٧٠١٢٣٤٥٦٧", "[arabic text]"),  # Arabic-Indic digits are Arabic script too
    ("07701234567", "[number]"),
    ("write to fatima.k@example.iq", "write to [email]"),
    ('"GET /api/cases?phone=0770&name=Fatima HTTP/1.1" 200', '"GET /api/cases?[query] HTTP/1.1" 200'),
    ("يهددها ينشر صورها said the caller", "[arabic text] said the caller"),
])
def test_mask_hides_phone_numbers_emails_arabic_text_and_query_strings(text, expected):
    assert mask(text) == expected


@pytest.mark.parametrize("text", [
    f"case {CASE_ID} handled",
    "reference SND-1234-5678",
    "at 2026-11-28 12:53:43",
    "<WorkerContext [intake.get_case] at 0x7f3a2b1c4d50>",
    "queue referral.case_triaged.critical",
    "is it ok? yes",
    '"POST /api/cases HTTP/1.1" 201 338 0.007239',
])
def test_mask_leaves_identifiers_dates_and_ordinary_text_alone(text):
    assert mask(text) == text


def test_an_exception_is_logged_as_its_type_and_frames_never_its_message():
    try:
        try:
            raise KeyError("Fatima Kadhim")
        except KeyError as inner:
            raise ValueError("phone 07701234567 already exists") from inner
    except ValueError as exc:
        made = record("could not save %s: %s", ("the case", exc), exc_info=(type(exc), exc, exc.__traceback__))
    entry = formatted(made)
    text = json.dumps(entry, ensure_ascii=False)
    assert "Fatima" not in text and "0770" not in text
    assert entry["message"] == "could not save the case: ValueError"
    assert entry["exception"]["type"] == "ValueError"
    assert entry["exception"]["caused_by"] == ["KeyError"]
    assert any("test_an_exception_is_logged" in frame for frame in entry["exception"]["frames"])


def test_a_json_line_carries_level_logger_service_and_only_the_allowed_extras():
    made = record("handled %s", ("case.triaged",), duration_ms=12.5, outcome="ok", narrative="secret words")
    entry = formatted(made)
    assert entry["message"] == "handled case.triaged"
    assert entry["level"] == "INFO" and entry["logger"] == "sanad.test" and entry["service"]
    assert entry["duration_ms"] == 12.5 and entry["outcome"] == "ok"
    assert "narrative" not in entry


def test_the_formatter_alone_renders_as_safely_as_with_the_filter():
    made = record("refused %s", (ValueError("Fatima Kadhim"),))
    assert json.loads(JsonFormatter().format(made))["message"] == "refused ValueError"


def test_a_malformed_format_string_still_gives_one_json_line():
    entry = formatted(record("broken %s %s", ("only one",)))
    assert entry["message"] == "broken %s %s"


def test_plain_lines_show_the_context_and_hide_exception_messages():
    try:
        raise RuntimeError("Fatima Kadhim")
    except RuntimeError as exc:
        made = record("failed", exc_info=(type(exc), exc, exc.__traceback__), event_type="case.received")
    PrivacyFilter().filter(made)
    made.event_type = "case.received"
    line = PlainFormatter().format(made)
    assert "Fatima" not in line and "RuntimeError" in line and "event_type=case.received" in line


def test_event_context_takes_type_correlation_id_and_reference_from_a_valid_envelope():
    correlation_id = uuid.uuid4()
    body = {"type": "case.triaged", "correlation_id": str(correlation_id), "data": {"reference": "SND-7K3Q-9F2M"}}
    assert event_context(body) == {
        "event_type": "case.triaged", "correlation_id": str(correlation_id), "case_reference": "SND-7K3Q-9F2M",
    }


@pytest.mark.parametrize("body", [
    {"type": "Fatima Kadhim 07701234567", "correlation_id": "not a uuid", "data": {"reference": "Fatima"}},
    {"type": ["case.received"], "data": "a narrative"},
    "a body that is not an object",
    None,
])
def test_event_context_keeps_nothing_from_a_malformed_body(body):
    assert event_context(body) == {}


@pytest.mark.parametrize("line, kept", [
    ('127.0.0.1 - - [28/Nov/2026 12:53:43] "GET /metrics HTTP/1.1" 200 5120 0.003', False),
    ('127.0.0.1 - - [28/Nov/2026 12:53:43] "GET /ready HTTP/1.1" 200 177 0.030', False),
    ('127.0.0.1 - - [28/Nov/2026 12:53:43] "GET /ready HTTP/1.1" 503 190 0.030', True),
    ('127.0.0.1 - - [28/Nov/2026 12:53:44] "POST /api/cases HTTP/1.1" 201 338 0.007', True),
])
def test_successful_scrapes_and_health_checks_leave_no_access_line_and_everything_else_does(line, kept):
    assert PrivacyFilter().filter(record(line, name="nameko.web.server")) is kept


class _Worker:
    """What LogContext reads of a nameko worker context: the entrypoint and the arguments."""

    def __init__(self, bodies):
        self.entrypoint = Consumer(queue=routing.INTAKE_CASE_STATUS)
        self.entrypoint.method_name = "on_case_status"
        self.args, self.kwargs = (bodies,), {}


def test_each_event_of_a_batch_gets_its_own_handled_line_with_its_correlation_id(caplog):
    bodies = [{"type": event_type, "correlation_id": str(uuid.uuid4()), "data": {"reference": "SND-7K3Q-9F2M"}}
              for event_type in ("case.triaged", "delivery.attempted")]
    context, worker = LogContext(), _Worker(bodies)
    caplog.handler.addFilter(PrivacyFilter())  # as on every handler: it reads the context as a line is logged
    context.worker_setup(worker)
    with caplog.at_level(logging.INFO, logger="sanad.platform.logs"):
        context.worker_result(worker)
    context.worker_teardown(worker)

    lines = [json.loads(JsonFormatter().format(made)) for made in caplog.records]
    assert [(line["message"], line["event_type"], line["correlation_id"]) for line in lines] == [
        (f"handled {body['type']}", body["type"], body["correlation_id"]) for body in bodies]
    assert all(line["outcome"] == "ok" for line in lines)
