"""JSON over HTTP for nameko services: one place maps errors to responses, and no stack trace or
exception text ever reaches a client."""
import ipaddress
import json
import logging

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map
from werkzeug.wrappers import Response

from sanad.platform.pool import CONNECTION_ERRORS

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
RETRY_AFTER_SECONDS = 2


# What every 401 says a client may authenticate with (RFC 9110 asks each to say it): both APIs take an
# API key or token as a bearer credential.
BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sanad"'}


class ApiError(Exception):
    """An error the client can act on. `fields` maps each offending field to its messages."""

    def __init__(self, status, code, message, fields=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}


# Every JSON answer, errors included: no cache on the way or in the client keeps it (a partner's referrals,
# a case), and no browser reads it as anything but JSON.
JSON_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def json_response(status, payload, headers=None):
    return Response(
        json.dumps(payload, ensure_ascii=False, default=str),
        status=status,
        headers={**JSON_HEADERS, **(headers or {})},
        mimetype="application/json",
    )


def error_payload(code, message, fields=None):
    payload = {"error": {"code": code, "message": message}}
    if fields:
        payload["error"]["fields"] = fields
    return payload


def http_exception_response(exc):
    """werkzeug's HTTP error (404, 405, 413, ...) as a JSON error; a 405 keeps its Allow header."""
    headers = {name: value for name, value in exc.get_headers() if name.lower() == "allow"}
    return json_response(exc.code, error_payload(exc.name.lower().replace(" ", "_"), exc.description), headers)


class JsonWebServer(WebServer):
    """nameko's web server, answering a request no route takes in JSON like every other error, not with
    werkzeug's HTML page: 404 for an address no route serves, 405 with an Allow header naming the methods
    its routes take. A fallback route (`http(..., fallback=True)`, intake's JSON 404 in the operator's
    language for any other /api address) answers only addresses no other route serves: a method a route
    does not take is still a 405, and Allow never names the fallback's methods. A fallback cannot cover
    every address itself: werkzeug's path converter does not match a path holding a newline (%0A). A body
    sent in chunks is read like any other, up to the same limit."""

    def get_wsgi_app(self):
        app = super().get_wsgi_app()
        routes = Map([provider.get_url_rule() for provider in self._providers if not provider.fallback])

        def unmatched_in_json(environ, start_response):
            if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
                # eventlet's server reads a chunked body to its last chunk (as it decides, by this same
                # header); without this werkzeug reads such a body as empty, and a JSON one is refused.
                environ["wsgi.input_terminated"] = True
            try:
                routes.bind_to_environ(environ).match()
            except MethodNotAllowed as exc:
                return http_exception_response(exc)(environ, start_response)
            except NotFound as exc:
                if not _matches(app.url_map, environ):  # nor does a fallback serve it, with any method
                    return http_exception_response(exc)(environ, start_response)
            except HTTPException:
                pass  # a redirect to the canonical address: nameko's app answers it
            return app(environ, start_response)
        return unmatched_in_json


def _matches(url_map, environ) -> bool:
    try:
        url_map.bind_to_environ(environ).match()
    except (NotFound, MethodNotAllowed):
        return False
    except HTTPException:
        pass  # a redirect
    return True


class JsonHttpHandler(HttpRequestHandler):
    """nameko's http entrypoint, with errors rendered as JSON by one table instead of echoing the
    exception's text (which could quote personal data) with a blanket 500."""

    server = JsonWebServer()

    def __init__(self, method, url, fallback=False, **kwargs):
        super().__init__(method, url, **kwargs)
        self.fallback = fallback

    def handle_request(self, request):
        request.max_content_length = MAX_BODY_BYTES
        return super().handle_request(request)

    def response_from_exception(self, exc):
        if isinstance(exc, ApiError):
            return json_response(exc.status, error_payload(exc.code, exc.message, exc.fields),
                                 BEARER_CHALLENGE if exc.status == 401 else None)
        if isinstance(exc, HTTPException):
            return http_exception_response(exc)
        if isinstance(exc, CONNECTION_ERRORS):
            # The database is restarting or out of reach: a client should try again, not give up. Whether
            # a write that failed at its commit was kept cannot be known, so resending is made safe instead.
            log.warning("database unavailable in %s (%s)", self.method_name, type(exc).__name__)
            return json_response(503, error_payload(
                "unavailable", "The service is briefly unavailable and this may not have been saved. "
                "Send it again; with the same Idempotency-Key it is recorded only once."),
                {"Retry-After": str(RETRY_AFTER_SECONDS)})
        log.error("unexpected %s in %s", type(exc).__name__, self.method_name, exc_info=exc)
        return json_response(500, error_payload("internal_error", "Something went wrong; nothing was saved."))


def http(method, url, **kwargs):
    """nameko's @http, answering in JSON. ApiError, werkzeug's HTTP errors (a body over the limit, a client
    gone) and a database outage count as expected: nameko logs them as warnings, not errors, and the
    answer says what to do."""
    kwargs.setdefault("expected_exceptions", (ApiError, HTTPException, *CONNECTION_ERRORS))
    return JsonHttpHandler.decorator(method, url, **kwargs)


def client_address(request, trusted_proxies=()) -> str:
    """Who sent a request: its peer's address, unless that peer is one of `trusted_proxies` (networks:
    sanad.settings.Settings.trusted_proxies); then the nearest address in X-Forwarded-For that is not one
    of them, read from the right, since a client can write anything to the left of what its proxies added."""
    peer = request.remote_addr
    if not _within(peer, trusted_proxies):
        return peer
    for address in reversed([part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]):
        if _address(address) is None:
            break  # a header garbled on the way: the proxy's address is all that is known
        if not _within(address, trusted_proxies):
            return address
    return peer


def _address(text):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(address, networks) -> bool:
    parsed = _address(address)
    return parsed is not None and any(parsed in network for network in networks)


def read_json(request):
    """The request body as a JSON object, or an ApiError saying what is wrong with it."""
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type", "Send the body as application/json.")
    raw = request.get_data(cache=False)
    if request.content_length is None and len(raw) >= (request.max_content_length or float("inf")):
        raise RequestEntityTooLarge()  # a body sent in chunks: werkzeug stops reading it at the limit, silently
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_encoding", "The body is not valid UTF-8.") from None
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    field = _field_with_broken_text(body)
    if field is not None:
        raise ApiError(422, "invalid_text", "Some text is not valid Unicode.",
                       {field: ["Not valid Unicode text (an unpaired surrogate escape)."]})
    return body


def _field_with_broken_text(body):
    """The dotted path of the first string (or key) that cannot be text: JSON lets "\ud800" through, but
    no database, encryption or log can take it, so it is refused here, naming its field, not at a 500."""
    pending = [("", body)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            if not _is_text(value):
                return path or "_body"
        elif isinstance(value, dict):
            for key, item in value.items():
                name = key if _is_text(key) else key.encode("utf-8", "backslashreplace").decode()
                child = f"{path}.{name}" if path else name
                if not _is_text(key):
                    return child
                pending.append((child, item))
        elif isinstance(value, list):
            pending.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))
    return None


def _is_text(value):
    try:
        value.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False
