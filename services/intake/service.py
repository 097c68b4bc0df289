"""Intake: the operators' UI and the JSON API it uses, which records cases and shows them to the staff
allowed to see them; and, in a second process, the status of each case as the other services report it.

Every /api endpoint needs a staff session (cookie) or an API token (Authorization: Bearer), else it answers
401 in JSON. A write from a session must carry its CSRF token (X-CSRF-Token header, or a csrf_token form
field). Every read and change of a case is audited in the transaction that reads or changes it.
"""
import json
import logging
import re
from datetime import datetime, timezone
from functools import cache, partial
from pathlib import Path
from typing import NamedTuple

from marshmallow import ValidationError
from prometheus_client import Counter, Histogram
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sanad import settings
from sanad.contracts import routing
from sanad.platform.database import Database
from sanad.platform.http import ApiError, client_address, http, json_response, read_json
from sanad.platform.inbox import consume_batches, handle_batch
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.intake import auth, callers, handlers, i18n, pages, permissions, schemas, sql
from services.intake.queue_views import QueueViews
from services.intake.screen import LaneScreen
from services.intake.slots import RecordingSlots

log = logging.getLogger(__name__)

CASES_RECEIVED = Counter(
    "sanad_cases_received_total", "Cases recorded by intake.", ["channel", "governorate"],
)
CASE_TIME_TO_STAGE = Histogram(
    "sanad_case_time_to_stage_seconds",
    "Time from a case's receipt to the first news of each stage: triaged, referred, first_delivery, acknowledged.",
    ["stage", "level"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600, 72 * 3600),
)
LOGINS = Counter("sanad_logins_total", "Staff login attempts, by outcome.", ["outcome"])
MAX_IDEMPOTENCY_KEY = 200
RECORD_TRIES = 5  # a reference drawn twice (one in about 10^12) is drawn again, within this many tries
STATUS_LINGER = 0.05  # seconds intake-status waits to fill a batch
MAX_QUEUE_LIMIT = 500
LANGUAGE_COOKIE = "sanad_lang"
POLL_HEADER = "X-Sanad-Poll"  # set by the queue's background refresh: not activity, see auth.py
STATIC_DIR = Path(__file__).with_name("static")
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
OPENAPI_FILE = Path(__file__).with_name("openapi.json")
REFUSAL_STATUS = {"not_found": 404, "forbidden": 403, "conflict": 409}

# No framing, no inline script, nothing from elsewhere; pages and answers holding personal data are
# never cached, so the Back button on a shared machine shows nothing after logout or quick exit.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
                               "object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _now():
    return datetime.now(timezone.utc)


def _secured(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _json(status, payload, headers=None):
    return _secured(json_response(status, payload, headers))


def _html(page, status=200):
    return _secured(Response(str(page), status=status, mimetype="text/html"))


def _redirect(location, status=303):
    return _secured(Response("", status=status, headers={"Location": location}))


# A path on this site, and its query: the characters an address's path and query may hold (RFC 3986), so
# no backslash, space, tab or line break, which browsers drop or turn into "/" (making "/\t/evil" into
# "//evil", another site) and which would break the Location header; and not "//", another site too.
SAFE_NEXT = re.compile(r"/(?!/)[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]{0,298}")


def _safe_next(path, default="/queue"):
    """The address to go on to after logging in or switching language: only a path on this site."""
    if isinstance(path, str) and SAFE_NEXT.fullmatch(path):
        return path
    return default


def _presented(request):
    """Which kind of credential a request carries: "token", "session" or "none"."""
    credential = callers.presented(request)
    return credential.partition(":")[0] if credential else "none"


def _api_error(status, code, lang, fields=None):
    return ApiError(status, code, i18n.error_message(code, lang), fields)


def _refusal(exc, lang):
    status = 422 if exc.kind == "conflict" and exc.field else REFUSAL_STATUS[exc.kind]
    message = i18n.error_message(exc.code, lang)
    return ApiError(status, exc.code, message, {exc.field: [message]} if exc.field else None)


def _invalid(exc, lang):
    return ApiError(422, "invalid_request", i18n.t("error.request_invalid", lang),
                    i18n.field_errors(exc.messages, lang))


class NewCase(NamedTuple):
    """A new case's body as read: its fields, lane and fingerprint (handlers.submission_fingerprint), or
    the error that refused it."""
    fields: dict | None = None
    lane: str | None = None
    error: Exception | None = None
    fingerprint: str | None = None


class IntakeService(Observable):
    name = "intake"

    db = Database("intake")
    outbox = Outbox()
    keys = KeyFile()
    lane_of = LaneScreen()
    recent_callers = callers.Callers()
    recording_slots = RecordingSlots()
    queue_views = QueueViews()

    # Who is asking ----------------------------------------------------------------------------------

    @staticmethod
    def _lang(request):
        return i18n.preferred_language(request.cookies.get(LANGUAGE_COOKIE), request.headers.get("Accept-Language"))

    @staticmethod
    def _ip(request):
        """The client's address, for the audit log and the login limit: behind a trusted proxy, the one
        the proxy forwarded, so that one client's failed logins do not lock out everyone behind it."""
        return client_address(request, settings.trusted_proxies())

    def _principal(self, cur, request, now):
        """Who is asking: the account of an API token (Authorization: Bearer) or of a session cookie. A
        credential that fails is never outweighed by another: a request that shows an Authorization header
        is the token's or nobody's, and one that also shows a session cookie is someone's only if the
        session is live and the same account's."""
        activity = request.headers.get(POLL_HEADER) != "1"
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        header = request.headers.get("Authorization")
        if header is None:
            return auth.session_principal(cur, cookie, now, activity)
        scheme, _, bearer = header.partition(" ")
        principal = auth.token_principal(cur, bearer.strip(), now) if scheme == "Bearer" else None
        if principal is not None and cookie is not None:
            session = auth.session_principal(cur, cookie, now, activity=False)
            if session is None or session.id != principal.id:
                return None
        return principal

    def _require(self, request, now, lang, write=False, allowed=None, case_id=None):
        """The staff member making an API request, checked in a transaction of its own. ApiError 401 without
        a live session or token; 403 for a write from a session without its CSRF token, or for a role that
        `allowed` refuses. A refusal is audited before it is raised, since the request changes nothing."""
        with self.db.transaction() as cur:
            principal, refusal = self._authorise(cur, request, now, write, allowed, case_id)
        if refusal is not None:
            raise _api_error(*refusal, lang)
        return principal

    def _authorise(self, cur, request, now, write=False, allowed=None, case_id=None):
        """(the staff member, None), or (whoever it is if known, (status, code) of the refusal) with the
        refusal audited in the caller's transaction, which must commit it."""
        principal = self._principal(cur, request, now)
        refusal = self._access_refusal(request, principal, write, allowed)
        if refusal is not None:
            self._audit_access_refused(cur, request, principal, refusal[1], now, case_id)
        self._note_caller(request, principal, refusal)
        return principal, refusal

    def _note_caller(self, request, principal, refusal):
        """A credential just allowed, of someone who may record cases, vouches for a while for reading their
        next case before their check; one just refused, for nothing (services/intake/callers.py)."""
        credential = callers.presented(request)
        if refusal is not None:
            self.recent_callers.forget(credential)
        elif permissions.may_record_cases(principal.role):
            self.recent_callers.remember(credential)

    @staticmethod
    def _access_refusal(request, principal, write, allowed):
        """(status, code) of the refusal a request gets, or None if it may go on."""
        if principal is None:
            return 401, "unauthenticated"
        if write and principal.via == "session":
            sent = request.headers.get("X-CSRF-Token") or (
                request.form.get("csrf_token") if request.mimetype == "application/x-www-form-urlencoded" else None)
            if not auth.same_secret(sent, principal.csrf_token):
                return 403, "csrf_failed"
        if allowed is not None and not allowed(principal.role):
            return 403, "forbidden"
        return None

    def _page_access(self, request, now, lang, allowed=None, case_id=None):
        """(principal, None) for a page its staff member may see; else (principal, the answer instead): the
        login form without a live session, a 403 page for a role `allowed` refuses. Refusals are audited,
        except a visit with no session at all: that is how everyone arrives at the login form."""
        with self.db.transaction() as cur:
            principal = self._principal(cur, request, now)
            refusal = self._access_refusal(request, principal, False, allowed)
            if refusal is not None and (principal is not None or _presented(request) != "none"):
                self._audit_access_refused(cur, request, principal, refusal[1], now, case_id)
            self._note_caller(request, principal, refusal)
        if principal is None:
            return None, self._to_login(request)
        if refusal is not None:
            return principal, _html(pages.error_page(lang, principal, "error.forbidden"), 403)
        return principal, None

    def _audit_access_refused(self, cur, request, principal, code, now, case_id=None):
        """Who was turned away (if known; else which kind of credential was shown, never the credential
        itself), from which endpoint, from where. The case asked for is recorded when it exists, so it shows
        in that case's trail."""
        if case_id is not None:
            cur.execute(sql.CASE_EXISTS, {"id": case_id})
            case_id = case_id if cur.fetchone() is not None else None
        detail = {"code": code, "presented": _presented(request), "method": request.method,
                  "path": request.path[:200]}
        handlers.audit(cur, principal, "access_refused", case_id, detail, self._ip(request), now,
                       via=principal.via if principal else "anonymous")

    @staticmethod
    def _to_login(request):
        return _redirect(f"/login?next={request.full_path.rstrip('?')}" if request.method == "GET" else "/login")

    # The JSON API ------------------------------------------------------------------------------------

    @http("POST", "/api/session")
    def api_login(self, request):
        lang, now = self._lang(request), _now()
        body = read_json(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not isinstance(password, str):
            message = i18n.error_message("required", lang)
            raise ApiError(422, "invalid_request", i18n.t("error.request_invalid", lang),
                           {name: [message] for name in ("username", "password")
                            if not isinstance(body.get(name), str)})
        with self.db.transaction() as cur:
            outcome = auth.attempt_login(cur, self.keys, username, password, self._ip(request), now)
            if outcome.user is not None:
                cookie, csrf_token = auth.start_session(cur, outcome.user["id"], self._ip(request), now)
                principal = auth.session_principal(cur, cookie, now)
                handlers.audit(cur, principal, "login", ip=self._ip(request), now=now)
        if outcome.locked or outcome.busy:
            LOGINS.labels(outcome="locked").inc()
            raise _api_error(429, "login_busy" if outcome.busy else "locked", lang)
        if outcome.user is None:
            LOGINS.labels(outcome="failed").inc()
            raise _api_error(401, "login_failed", lang)
        LOGINS.labels(outcome="succeeded").inc()
        response = _json(200, {"user": self._user_json(principal), "csrf_token": csrf_token})
        self._set_session_cookie(response, cookie)
        return response

    @http("DELETE", "/api/session")
    def api_logout(self, request):
        lang = self._lang(request)
        principal = self._require(request, _now(), lang, write=True)
        if principal.via == "session":
            with self.db.transaction() as cur:
                auth.end_session(cur, request.cookies.get(auth.SESSION_COOKIE))
                handlers.audit(cur, principal, "logout", ip=self._ip(request))
        response = _json(200, {"logged_out": True})
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    @http("GET", "/api/me")
    def api_me(self, request):
        principal = self._require(request, _now(), self._lang(request))
        return _json(200, {"user": self._user_json(principal), "csrf_token": principal.csrf_token})

    @http("GET", "/api/me/draft-key")
    def api_draft_key(self, request):
        principal = self._require(request, _now(), self._lang(request), allowed=permissions.may_record_cases)
        with self.db.transaction() as cur:
            key = handlers.draft_key(cur, self.keys, principal.id)
        return _json(200, {"key": key, "algorithm": "AES-GCM", "user_id": str(principal.id)})

    @http("POST", "/api/cases")
    def create_case(self, request):
        """Who is asking is checked in the transaction that records the case: one transaction, not two,
        since every round trip to PostgreSQL waits its turn among the other requests, and a critical case
        waits that turn once per round trip. The body is read once the caller is known and allowed; or
        first, when this process allowed the same credential lately (services/intake/callers.py), so that
        a critical case goes first from its first round trip. A refusal wins over anything in the body.
        The case goes with the COMMIT (handlers.record_case): when its Idempotency-Key turns out to be
        taken by a case the same account sent with the same body, the answer is that case, and by another
        case of that account, a 422 naming the key (another account's keys are its own); when its
        reference is taken, it is recorded again under another. A normal case read first waits for one
        of the process's recording slots (services/intake/slots.py) before its transaction."""
        lang, now = self._lang(request), _now()
        key = request.headers.get("Idempotency-Key")
        new_case = cache(partial(self._new_case, request, key, now, lang))  # the body is read once, when asked
        read_first = self.recent_callers.vouch(callers.presented(request))
        with self.recording_slots.held_for(new_case().lane if read_first else None):
            for tried in range(1, RECORD_TRIES + 1):
                try:
                    created, error = self._record_once(request, key, now, lang, new_case)
                    break
                except Exception as exc:
                    taken = handlers.taken_by_another(exc)
                    if taken == "idempotency_key":
                        with self.db.transaction() as cur:
                            earlier = handlers.case_recorded_under(cur, self._principal(cur, request, now), key)
                        if earlier is not None:
                            return self._replayed(earlier, new_case(), lang)
                    if taken is None or tried == RECORD_TRIES:
                        raise
        if error is not None:
            raise error
        fields = new_case().fields
        CASES_RECEIVED.labels(channel=fields["channel"], governorate=fields["governorate"]).inc()
        body = self._created_body(created)
        return _json(201, body, {"Location": body["status_url"]})

    def _record_once(self, request, key, now, lang, new_case):
        """One try at recording the case, in one transaction that checks the caller first: (the case
        recorded, None) or (None, the ApiError to answer). `new_case()` reads the body, or gives it as
        read before. A refusal is audited, and committed with the transaction."""
        with self.db.transaction() as cur:
            principal, refusal = self._authorise(cur, request, now, write=True, allowed=permissions.may_record_cases)
            if refusal is not None:
                return None, _api_error(*refusal, lang)
            read = new_case()
            if read.error is not None:
                return None, read.error
            created = handlers.record_case(cur, self.outbox, self.keys, read.fields, read.lane, principal,
                                           idempotency_key=key, fingerprint=read.fingerprint, ip=self._ip(request),
                                           now=now)
            return created, None

    def _replayed(self, earlier, new_case, lang):
        """The answer to a case sent under an Idempotency-Key a case already holds: that case if this is
        the same submission again, else a 422 naming the key (nothing recorded either way)."""
        if not handlers.same_submission(earlier, new_case.fingerprint):
            message = i18n.error_message("idempotency_key_reused", lang)
            raise ApiError(422, "idempotency_key_reused", message, {"Idempotency-Key": [message]})
        return _json(200, self._created_body(earlier), {"Idempotent-Replayed": "true"})

    def _new_case(self, request, key, now, lang):
        """The new case's fields and lane, or the ApiError its body or Idempotency-Key earns. A critical
        case goes first among the process's requests from here on (OutboxWriter.go_first)."""
        try:
            body = read_json(request)
            fields = schemas.load_new_case(body, now)
        except (ApiError, HTTPException) as exc:  # HTTPException: a body over the limit (413), a client gone
            return NewCase(error=exc)
        except ValidationError as exc:
            return NewCase(error=_invalid(exc, lang))
        if key is not None and not (0 < len(key) <= MAX_IDEMPOTENCY_KEY):
            message = i18n.error_message("invalid_idempotency_key", lang)
            return NewCase(error=ApiError(400, "invalid_idempotency_key", message, {"Idempotency-Key": [message]}))
        lane = handlers.new_case_lane(fields, now, self.lane_of)
        if lane == "critical":
            self.outbox.go_first()
        return NewCase(fields, lane, fingerprint=handlers.submission_fingerprint(self.keys, body) if key else None)

    @http("GET", "/api/cases")
    def list_cases(self, request):
        lang = self._lang(request)
        principal = self._require(request, _now(), lang, allowed=permissions.may_see_cases)
        limit = request.args.get("limit", str(handlers.QUEUE_LIMIT))
        if not limit.isascii() or not limit.isdigit() or not 1 <= int(limit) <= MAX_QUEUE_LIMIT:
            message = i18n.error_message(f"range:1:{MAX_QUEUE_LIMIT}", lang)
            raise ApiError(422, "invalid_query", i18n.t("error.invalid_query", lang), {"limit": [message]})
        with self.db.transaction() as cur:
            rows = handlers.queue(cur, principal, int(limit))
            self._audit_queue_view(cur, request, principal, rows, _now())
        return _json(200, {"cases": rows})

    @http("GET", "/api/cases/<uuid:case_id>")
    def get_case(self, request, case_id):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, case_id=case_id)
        try:
            with self.db.transaction() as cur:
                view = handlers.case_view(cur, self.keys, case_id, principal, self._ip(request), now)
        except handlers.Refused as exc:
            self._record_refusal(request, principal, case_id, exc, now)
            raise _refusal(exc, lang) from None
        return _json(200, view)

    @http("POST", "/api/cases/<uuid:case_id>/risk-override")
    def override_risk(self, request, case_id):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, write=True, case_id=case_id)
        try:
            body = schemas.load(schemas.RiskOverride, read_json(request))
        except ValidationError as exc:
            raise _invalid(exc, lang) from None
        try:
            with self.db.transaction() as cur:
                result = handlers.override_risk(cur, self.outbox, self.keys, case_id, principal, body["level"],
                                                body["reason"], self._ip(request), now)
        except handlers.Refused as exc:
            self._record_refusal(request, principal, case_id, exc, now)
            raise _refusal(exc, lang) from None
        return _json(200, result)

    @http("PUT", "/api/cases/<uuid:case_id>/assignment")
    def assign_case(self, request, case_id):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, write=True, case_id=case_id)
        try:
            body = schemas.load(schemas.Assignment, read_json(request))
        except ValidationError as exc:
            raise _invalid(exc, lang) from None
        try:
            with self.db.transaction() as cur:
                result = handlers.assign_case(cur, case_id, principal, body["assignee"], self._ip(request), now)
        except handlers.Refused as exc:
            self._record_refusal(request, principal, case_id, exc, now)
            raise _refusal(exc, lang) from None
        return _json(200, {"assigned_to": result["assigned_to"] and str(result["assigned_to"])})

    @http("GET", "/api/cases/<uuid:case_id>/audit")
    def case_audit(self, request, case_id):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, allowed=permissions.may_see_audit, case_id=case_id)
        try:
            with self.db.transaction() as cur:
                handlers.check_visible(cur, case_id, principal)
                handlers.audit(cur, principal, "audit_viewed", case_id, ip=self._ip(request), now=now)
                trail = handlers.audit_trail(cur, case_id)
        except handlers.Refused as exc:
            self._record_refusal(request, principal, case_id, exc, now)
            raise _refusal(exc, lang) from None
        return _json(200, {"case_id": str(case_id), "entries": trail})

    @http("GET", "/api/users")
    def list_users(self, request):
        self._require(request, _now(), self._lang(request), allowed=permissions.may_manage_users)
        with self.db.transaction() as cur:
            users = handlers.list_users(cur)
        return _json(200, {"users": users})

    @http("POST", "/api/users")
    def create_user(self, request):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, write=True, allowed=permissions.may_manage_users)
        try:
            body = schemas.load(schemas.NewUser, read_json(request))
        except ValidationError as exc:
            raise _invalid(exc, lang) from None
        try:
            with self.db.transaction() as cur:
                user_id = handlers.create_user(cur, principal, body, self._ip(request), now)
        except handlers.Refused as exc:
            raise _refusal(exc, lang) from None
        return _json(201, {"id": str(user_id), "username": body["username"], "role": body["role"]})

    @http("PATCH", "/api/users/<uuid:user_id>")
    def update_user(self, request, user_id):
        lang, now = self._lang(request), _now()
        principal = self._require(request, now, lang, write=True, allowed=permissions.may_manage_users)
        body = read_json(request)
        if set(body) != {"active"} or not isinstance(body["active"], bool):
            fields = {name: [i18n.error_message("unknown_field", lang)] for name in body if name != "active"}
            if not isinstance(body.get("active"), bool):
                fields["active"] = [i18n.error_message("invalid_boolean", lang)]
            raise ApiError(422, "invalid_request", i18n.t("error.request_invalid", lang), fields)
        try:
            with self.db.transaction() as cur:
                handlers.set_user_active(cur, principal, user_id, body["active"], self._ip(request), now)
        except handlers.Refused as exc:
            raise _refusal(exc, lang) from None
        return _json(200, {"id": str(user_id), "active": body["active"]})

    @http("GET", "/api/openapi.json")
    def openapi(self, request):
        return _secured(Response(OPENAPI_FILE.read_bytes(), mimetype="application/json",
                                 headers={"Cache-Control": "no-cache"}))

    @http("GET,POST,PUT,PATCH,DELETE", "/api/<path:rest>", fallback=True)
    def api_not_found(self, request, rest):
        """Any other /api address (a malformed case id, say) answers in JSON, in the caller's language, like
        the rest of the API. A method an address's own route does not take is answered 405 before this
        (sanad.platform.http.JsonWebServer)."""
        raise _api_error(404, "not_found", self._lang(request))

    # The pages --------------------------------------------------------------------------------------

    @http("GET", "/")
    def home(self, request):
        with self.db.transaction() as cur:
            principal = self._principal(cur, request, _now())
        if principal is None:
            return _redirect("/login")
        return _redirect("/users" if principal.role == "admin" else "/queue")

    @http("GET", "/login")
    def login_form(self, request):
        lang = self._lang(request)
        csrf = auth.new_secret()
        message = "login.expired" if request.args.get("expired") else None
        response = _html(pages.login_page(lang, csrf, _safe_next(request.args.get("next")), message))
        self._set_cookie(response, auth.LOGIN_CSRF_COOKIE, csrf, path="/login")
        return response

    @http("POST", "/login")
    def login_submit(self, request):
        lang, now = self._lang(request), _now()
        form = request.form
        next_path = _safe_next(form.get("next"))
        username = form.get("username", "")[:100]
        if not auth.same_secret(form.get("csrf_token"), request.cookies.get(auth.LOGIN_CSRF_COOKIE)):
            return self._login_again(lang, next_path, "error.csrf_failed", username, 403)
        with self.db.transaction() as cur:
            outcome = auth.attempt_login(cur, self.keys, username, form.get("password", ""), self._ip(request), now)
            if outcome.user is not None:
                cookie, _ = auth.start_session(cur, outcome.user["id"], self._ip(request), now)
                handlers.audit(cur, auth.session_principal(cur, cookie, now), "login", ip=self._ip(request), now=now)
        if outcome.user is None:
            throttled = outcome.locked or outcome.busy
            LOGINS.labels(outcome="locked" if throttled else "failed").inc()
            message = "login.busy" if outcome.busy else "login.locked" if outcome.locked else "login.failed"
            return self._login_again(lang, next_path, message, username, 429 if throttled else 401)
        LOGINS.labels(outcome="succeeded").inc()
        if outcome.user["role"] == "admin" and next_path == "/queue":
            next_path = "/users"
        response = _redirect(next_path)
        self._set_session_cookie(response, cookie)
        response.delete_cookie(auth.LOGIN_CSRF_COOKIE, path="/login")
        return response

    def _login_again(self, lang, next_path, message_key, username, status):
        csrf = auth.new_secret()
        response = _html(pages.login_page(lang, csrf, next_path, message_key, username), status)
        self._set_cookie(response, auth.LOGIN_CSRF_COOKIE, csrf, path="/login")
        return response

    @http("POST", "/logout")
    def logout(self, request):
        now = _now()
        with self.db.transaction() as cur:
            principal = auth.session_principal(cur, request.cookies.get(auth.SESSION_COOKIE), now, activity=False)
            if principal is not None and auth.same_secret(request.form.get("csrf_token"), principal.csrf_token):
                auth.end_session(cur, request.cookies.get(auth.SESSION_COOKIE))
                handlers.audit(cur, principal, "logout", ip=self._ip(request), now=now)
        response = _redirect("/login")
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    @http("GET", "/exit")
    def quick_exit(self, request):
        """Quick exit ends the session here too, whatever the page's script managed first (its logout can
        fail, on a page whose CSRF token an older session gave it). Safe as a GET: the session cookie is
        SameSite=Strict, so no other site can send a browser here with it."""
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        if cookie:
            now = _now()
            with self.db.transaction() as cur:
                principal = auth.session_principal(cur, cookie, now, activity=False)
                if principal is not None:
                    auth.end_session(cur, cookie)
                    handlers.audit(cur, principal, "logout", ip=self._ip(request), now=now)
        response = _html(pages.exit_page(self._lang(request)))
        response.headers["Clear-Site-Data"] = '"cache"'
        response.delete_cookie(auth.SESSION_COOKIE, path="/")
        return response

    @http("GET", "/lang/<string:code>")
    def switch_language(self, request, code):
        response = _redirect(_safe_next(request.args.get("next"), "/"))
        self._set_cookie(response, LANGUAGE_COOKIE, i18n.language(code), max_age=365 * 24 * 3600)
        return response

    @http("GET", "/queue")
    def queue_page(self, request):
        lang, now = self._lang(request), _now()
        principal, refused = self._page_access(request, now, lang, permissions.may_see_cases)
        if refused is not None:
            return refused
        with self.db.transaction() as cur:
            rows = handlers.queue(cur, principal)
            self._audit_queue_view(cur, request, principal, rows, now)
        return _html(pages.queue_page(lang, principal, json.loads(json.dumps(rows, default=str))))

    @http("GET", "/cases/new")
    def new_case_page(self, request):
        lang = self._lang(request)
        principal, refused = self._page_access(request, _now(), lang, permissions.may_record_cases)
        if refused is not None:
            return refused
        return _html(pages.new_case_page(lang, principal))

    @http("GET", "/cases/<uuid:case_id>")
    def case_page(self, request, case_id):
        lang, now = self._lang(request), _now()
        principal, refused = self._page_access(request, now, lang, case_id=case_id)
        if refused is not None:
            return refused
        try:
            with self.db.transaction() as cur:
                view = handlers.case_view(cur, self.keys, case_id, principal, self._ip(request), now)
                trail, assignees = None, ()
                if permissions.may_see_audit(principal.role):
                    handlers.audit(cur, principal, "audit_viewed", case_id, ip=self._ip(request), now=now)
                    trail = handlers.audit_trail(cur, case_id)
                    assignees = [u for u in handlers.list_users(cur)
                                 if u["active"] and permissions.may_record_cases(u["role"])]
        except handlers.Refused as exc:
            self._record_refusal(request, principal, case_id, exc, now)
            return _html(pages.error_page(lang, principal, "error.case_not_found"), 404)
        view = json.loads(json.dumps(view, default=str))
        for user in assignees:
            user["id"] = str(user["id"])
        return _html(pages.case_page(lang, principal, view, trail, assignees))

    @http("GET", "/users")
    def users_page(self, request):
        lang = self._lang(request)
        principal, refused = self._page_access(request, _now(), lang, permissions.may_manage_users)
        if refused is not None:
            return refused
        with self.db.transaction() as cur:
            users = handlers.list_users(cur)
        return _html(pages.users_page(lang, principal, users))

    @http("GET", "/static/<string:name>")
    def static(self, request, name):
        path = STATIC_DIR / name
        if path.suffix not in STATIC_TYPES or path.parent != STATIC_DIR or not path.is_file():
            raise ApiError(404, "not_found", "No such file.")
        return _secured(Response(path.read_bytes(), mimetype=STATIC_TYPES[path.suffix],
                                 headers={"Cache-Control": "no-cache"}))

    # Helpers ----------------------------------------------------------------------------------------

    def _audit_queue_view(self, cur, request, principal, rows, now):
        """Which cases a read of the queue showed; a background refresh only when they changed
        (services/intake/queue_views.py)."""
        case_ids = [str(row["id"]) for row in rows]
        changed = self.queue_views.changed(principal.id, case_ids)
        if changed or request.headers.get(POLL_HEADER) != "1":
            handlers.audit(cur, principal, "queue_viewed", None, {"case_ids": case_ids}, self._ip(request), now)

    def _record_refusal(self, request, principal, case_id, refusal, now):
        """A refused request rolls back; its audit entry must survive it, so it gets a transaction of its own
        (written when the case exists: someone reached for a case not theirs)."""
        with self.db.transaction() as cur:
            cur.execute(sql.CASE_EXISTS, {"id": case_id})
            if cur.fetchone() is not None:
                action = "case_read_denied" if refusal.kind == "not_found" else "case_change_refused"
                handlers.audit(cur, principal, action, case_id, {"code": refusal.code}, self._ip(request), now)

    def _set_cookie(self, response, name, value, path="/", max_age=None):
        response.set_cookie(name, value, path=path, max_age=max_age, httponly=True, samesite="Strict",
                            secure=not settings.from_environment().is_development)

    def _set_session_cookie(self, response, cookie):
        """A cookie of the browser's session only (no Max-Age): closing the browser on a shared computer
        forgets it, and the server ends the session itself after the shift or an idle hour (auth.py)."""
        self._set_cookie(response, auth.SESSION_COOKIE, cookie)

    @staticmethod
    def _user_json(principal):
        return {"id": str(principal.id), "username": principal.username, "display_name": principal.display_name,
                "role": principal.role, "partner_id": principal.partner_id and str(principal.partner_id)}

    @staticmethod
    def _created_body(case):
        return {"id": str(case["id"]), "reference": case["reference"], "status_url": f"/api/cases/{case['id']}"}


class IntakeStatusService(Observable):
    """Keeps what operators see of each case (its risk, referrals, deliveries) up to date with what the
    other services report. A process of its own, beside the API's: a case brings three to five reports,
    and during a surge the API must answer calls at once while this catches up. Reports are recorded in
    batches, one commit for all those waiting (sanad.platform.inbox.BatchEventConsumer): in a surge they
    were a third of all the commits PostgreSQL made. A batch that is not full waits STATUS_LINGER for
    more: the news comes from four services, a few events at a time, and recording them as they came cost
    this process half as much CPU a case again (docs/performance.md, item 37). What operators see comes
    that much later; nothing else waits for it."""
    name = "intake_status"

    db = Database("intake")
    keys = KeyFile()

    @consume_batches(routing.INTAKE_CASE_STATUS, requeue_on_error=True, linger=STATUS_LINGER)
    def on_case_status(self, bodies):
        stages = handlers.StagesReached()
        handler = partial(handlers.record_status, keys=self.keys, stages=stages)
        for reached in handle_batch(self.db, routing.INTAKE_CASE_STATUS.name, bodies, handler, prepare=stages.read):
            if reached:
                stage, level, seconds = reached
                CASE_TIME_TO_STAGE.labels(stage=stage, level=level).observe(seconds)
