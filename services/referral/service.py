"""Referral: offers triaged cases to partner organisations and chases every offer until someone has it.

Two service classes run as separate processes: one for the normal lane and one for the critical lane,
so a critical case never waits behind a backlog of others. The normal lane refers its triaged cases as many
to a transaction as are waiting (sanad.platform.inbox.consume_batches); the critical lane one at a time.
Both serve the same partner callback API (/partner/v1, described by /partner/openapi.json) and admin API
(/admin/v1) on their own ports.

Acknowledgement deadlines are rows fired by timers, each deadline claimed with FOR UPDATE SKIP LOCKED:
the critical process fires critical deadlines; the normal process fires normal ones and, on a timer and
worker of their own, critical ones too, so critical deadlines are never queued behind normal ones and
still fire if the critical process is down.
"""
import os
import uuid
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from urllib.parse import urlencode

from marshmallow import ValidationError
from nameko.timer import timer
from prometheus_client import Counter, Gauge, Histogram
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from sanad.contracts import routing
from sanad.contracts.vocabulary import ESCALATION_REASONS, LANES, REFERRAL_STATUSES, RISK_LEVELS
from sanad.platform.database import Database
from sanad.platform.http import ApiError, JsonHttpHandler, json_response, read_json
from sanad.platform.inbox import BUSY_LINGER, consume, consume_batches, handle_batch
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from sanad.platform.pool import CONNECTION_ERRORS
from services.referral import access, handlers, lifecycle, schemas, sql
from services.referral.escalation import Policy

PARTNER_OPENAPI = Path(__file__).with_name("partner_openapi.json")
ESCALATION_TICK_SECONDS = 1.0
LOAD_FOLD_SECONDS = 1.0  # how often partners' open-referral changes are folded into their counts

PARTNER = ("partner",)
ADMIN = ("admin",)
SUPERVISION = ("supervisor", "admin")  # the directory, the policies, matching: no case in sight
CASE_WORK = ("supervisor",)  # a case's referrals, and placing its needs by hand: an admin sees no case
STAFF = ("counsellor", "supervisor")  # moving a referral along: its reference and level are in the answer

REFERRALS_CREATED = Counter(
    "sanad_referrals_created_total", "Referrals offered to partners, by service and lane.", ["service", "lane"],
)
ESCALATIONS = Counter(
    "sanad_referral_escalations_total", "Escalations to the next partner and the on-duty supervisor.",
    ["reason", "lane"],
)
# Created at zero, so Prometheus's increase() sees the first escalation of each kind (docs/operations.md).
for _reason in ESCALATION_REASONS:
    for _lane in LANES:
        ESCALATIONS.labels(reason=_reason, lane=_lane)
ESCALATION_DELAY = Histogram(
    "sanad_ack_deadline_delay_seconds", "How long after it fell due an acknowledgement deadline fired.", ["lane"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
STATUS_CHANGES = Counter(
    "sanad_referral_status_changes_total", "Referral status changes, by new status and who made them.",
    ["status", "changed_by"],
)
API_REFUSALS = Counter(
    "sanad_referral_api_refusals_total", "Partner and admin API calls refused for their credentials.", ["reason"],
)
# Measured from the tables on a timer (issue 9): what no event can keep up to date.
MEASURE_SECONDS = 5.0
OVERDUE_GRACE_SECONDS = 30
REFERRALS = Gauge("sanad_referrals", "Referrals by status and risk level, now.", ["status", "level"])
FAILED_DEADLINES = Gauge(
    "sanad_referral_deadlines_failed",
    "Acknowledgement deadlines set aside after their escalation failed again and again (normal lane; a critical "
    "one is retried instead) whose offer still stands: nobody chases it until a person does.",
    ["lane"],
)
OVERDUE = Gauge(
    "sanad_referrals_overdue",
    "Acknowledgement deadlines not fired 30 s after falling due, or whose escalation failed: the timers lag.",
    ["lane"],
)


def _partner_not_found():
    return ApiError(404, "not_found", "No partner has this id.", {"partner_id": ["Not found."]})


def api(method, url):
    return JsonHttpHandler.decorator(method, url, expected_exceptions=(ApiError, HTTPException))


def _now():
    return datetime.now(timezone.utc)


def _uuid(value, name):
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(404, "not_found", f"No {name.replace('_', ' ')} has this id.",
                       {name: ["Not a valid UUID."]}) from None


def _load(schema, data):
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(422, "invalid_request", "Some fields need correcting.", exc.messages) from None


def _body(request, schema):
    """The request's JSON body loaded by `schema`. Errors about the body as a whole name it "body"."""
    try:
        body = read_json(request)
    except ApiError as exc:
        raise ApiError(exc.status, exc.code, exc.message, exc.fields or {"body": [exc.message]}) from None
    except HTTPException as exc:  # too large, most likely
        raise ApiError(exc.code, exc.name.lower().replace(" ", "_"), exc.description,
                       {"body": [exc.description]}) from None
    return _load(schema, body)


def _query(request, schema):
    return _load(schema, request.args.to_dict(flat=True))


def _record(effects):
    for service, lane in effects.created:
        REFERRALS_CREATED.labels(service=service, lane=lane).inc()
    for reason, lane in effects.escalated:
        ESCALATIONS.labels(reason=reason, lane=lane).inc()
    for status, changed_by in effects.status_changes:
        STATUS_CHANGES.labels(status=status, changed_by=changed_by).inc()


def _transition_error(refused):
    status = 409 if refused.code == "invalid_transition" else 422
    return ApiError(status, refused.code, refused.message, {refused.field: [refused.message]})


def _rows(rows):
    return [{k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row.items()} for row in rows]


class ReferralService(Observable):
    name = "referral"
    lane = "normal"

    db = Database("referral")
    outbox = Outbox()
    keys = KeyFile()

    # Events -------------------------------------------------------------------------------------------

    @consume_batches(routing.REFERRAL_CASE_TRIAGED, requeue_on_error=True, linger_when_busy=BUSY_LINGER)
    def on_case_triaged(self, bodies):
        at_hand = handlers.CasesAtHand()
        self._handle(routing.REFERRAL_CASE_TRIAGED.name, bodies,
                     partial(handlers.refer_case, keys=self.keys, at_hand=at_hand), prepare=at_hand.read)

    @consume(routing.REFERRAL_NOTIFICATION_EXHAUSTED, requeue_on_error=True)
    def on_notification_exhausted(self, body):
        self._handle(routing.REFERRAL_NOTIFICATION_EXHAUSTED.name, [body], self._delivery_exhausted)

    def _delivery_exhausted(self, cur, event, outbox):
        return handlers.delivery_exhausted(cur, event, outbox, self.keys, fired_by=self._process())

    def _handle(self, queue, bodies, handler, prepare=None):
        for effects in handle_batch(self.db, queue, bodies, partial(handler, outbox=self.outbox), prepare=prepare):
            if effects:
                _record(effects)

    # Deadlines ----------------------------------------------------------------------------------------

    @timer(interval=ESCALATION_TICK_SECONDS)
    def escalate_critical(self):
        self._escalate(("critical",))

    @timer(interval=ESCALATION_TICK_SECONDS)
    def escalate_normal(self):
        self._escalate(("normal",))

    def _escalate(self, lanes):
        effects, delays = handlers.escalate_due(self.db, self.outbox, self.keys, lanes, fired_by=self._process())
        _record(effects)
        for lane, delay in delays:
            ESCALATION_DELAY.labels(lane=lane).observe(max(0.0, delay))

    @timer(interval=LOAD_FOLD_SECONDS)
    def fold_partner_load(self):
        """Keep the changes matching adds to each partner's open-referral count few."""
        try:
            handlers.fold_partner_load(self.db)
        except CONNECTION_ERRORS:
            pass  # sanad_dependency_up says so; the changes wait for the next fold and count meanwhile

    def _process(self):
        return f"{self.name}:{os.getpid()}"

    @timer(interval=MEASURE_SECONDS)
    def measure(self):
        """Referrals by status, and deadlines the escalation timers are not keeping up with."""
        try:
            with self.db.transaction() as cur:
                cur.execute(sql.REFERRALS_BY_STATUS)
                counts = {(row["status"], row["level"]): row["referrals"] for row in cur.fetchall()}
                cur.execute(sql.OVERDUE_DEADLINES, {"now": _now(), "grace": OVERDUE_GRACE_SECONDS})
                overdue = {row["lane"]: row["overdue"] for row in cur.fetchall()}
                cur.execute(sql.FAILED_DEADLINES)
                failed = {row["lane"]: row["failed"] for row in cur.fetchall()}
        except CONNECTION_ERRORS:
            return  # sanad_dependency_up says so; the gauges keep their last values
        for status in REFERRAL_STATUSES:
            for level in RISK_LEVELS:
                REFERRALS.labels(status=status, level=level).set(counts.get((status, level), 0))
        for lane in LANES:
            OVERDUE.labels(lane=lane).set(overdue.get(lane, 0))
            FAILED_DEADLINES.labels(lane=lane).set(failed.get(lane, 0))

    # Who is calling -----------------------------------------------------------------------------------

    def _authorise(self, request, roles, action, now):
        try:
            with self.db.transaction() as cur:
                return access.authenticate(cur, self.keys.lookup, request.headers.get("Authorization"), now, roles)
        except access.Refused as refused:
            with self.db.transaction() as cur:
                access.audit(cur, now, action, "refused", remote_addr=request.remote_addr, key_id=refused.key_id,
                             detail={"reason": refused.reason, "method": request.method, "path": request.path})
            API_REFUSALS.labels(reason=refused.reason).inc()
            raise ApiError(refused.status, refused.code, refused.message,
                           {"Authorization": [refused.message]}) from None

    def _audit(self, now, action, outcome, principal, request, **details):
        with self.db.transaction() as cur:
            access.audit(cur, now, action, outcome, principal, request.remote_addr, **details)

    # The partner callback API -------------------------------------------------------------------------

    @api("GET", "/partner/openapi.json")
    def partner_openapi(self, request):
        return Response(PARTNER_OPENAPI.read_bytes(), mimetype="application/json")

    @api("GET", "/partner/v1/referrals")
    def partner_list_referrals(self, request):
        now = _now()
        principal = self._authorise(request, PARTNER, "referral.list", now)
        query = _query(request, schemas.ReferralListSchema())
        try:
            with self.db.transaction() as cur:
                # One more than asked for says whether a page follows.
                found = handlers.partner_referrals(cur, principal.partner_id, query["status"], query["limit"] + 1,
                                                   query["before"])
                more, found = len(found) > query["limit"], found[:query["limit"]]
                access.audit_each(cur, now, "referral.list", "ok", principal, request.remote_addr, found,
                                  detail={"status": query["status"], "count": len(found)})
        except handlers.Refusal as refusal:  # a page that is not there, as a referral that is not there
            self._audit(now, "referral.list", "not_found", principal, request,
                        detail={"status": query["status"], "code": refusal.code})
            raise ApiError(404, refusal.code, refusal.message, {refusal.field: [refusal.message]}) from None
        return json_response(200, {"referrals": [handlers.partner_view(row) for row in found],
                                   "next": _next_page(request.path, query, found) if more else None})

    @api("GET", "/partner/v1/referrals/<referral_id>")
    def partner_get_referral(self, request, referral_id):
        now = _now()
        principal = self._authorise(request, PARTNER, "referral.read", now)
        referral_id = _uuid(referral_id, "referral_id")
        with self.db.transaction() as cur:
            try:
                row = handlers.partner_referral(cur, referral_id, principal.partner_id)
            except handlers.NotFound:
                row = None
                self._audit_missing(cur, now, "referral.read", principal, request, referral_id)
            else:
                access.audit(cur, now, "referral.read", "ok", principal, request.remote_addr,
                             referral_id=referral_id, case_id=row["case_id"])
        if row is None:
            raise self._not_found(referral_id)
        return json_response(200, handlers.partner_view(row))

    @api("POST", "/partner/v1/referrals/<referral_id>/status")
    def partner_change_status(self, request, referral_id):
        now = _now()
        principal = self._authorise(request, PARTNER, "referral.status", now)
        referral_id = _uuid(referral_id, "referral_id")
        body = _body(request, schemas.StatusChangeSchema())
        row = self._change_status(request, now, principal, referral_id, body, "partner", principal.partner_id)
        return json_response(200, handlers.partner_view(row))

    @api("PUT", "/partner/v1/capacity")
    def partner_set_capacity(self, request):
        now = _now()
        principal = self._authorise(request, PARTNER, "partner.capacity", now)
        body = _body(request, schemas.CapacitySchema())
        with self.db.transaction() as cur:
            handlers.set_accepting(cur, principal.partner_id, body["accepting"], "partner", now)
            access.audit(cur, now, "partner.capacity", "ok", principal, request.remote_addr,
                         detail={"accepting": body["accepting"]})
        return json_response(200, {"accepting": body["accepting"]})

    def _audit_status_conflict(self, request, now, principal, referral_id, body, code):
        with self.db.transaction() as cur:
            owner = handlers.referral_owner(cur, referral_id)
            access.audit(cur, now, "referral.status", "conflict", principal, request.remote_addr,
                         referral_id=referral_id, case_id=owner and owner["case_id"],
                         detail={"status": body["status"], "code": code})

    def _change_status(self, request, now, principal, referral_id, body, changed_by, partner_id):
        try:
            with self.db.transaction() as cur:
                changed, effects = handlers.change_status(
                    cur, self.outbox, self.keys, referral_id, body["status"], body["note_code"], changed_by, now,
                    partner_id=partner_id, fired_by=self._process())
                row = handlers.referral_row(cur, referral_id)
                access.audit(cur, now, "referral.status", "ok", principal, request.remote_addr,
                             referral_id=referral_id, case_id=row["case_id"],
                             detail={"status": body["status"], "note_code": body["note_code"], "changed": changed})
        except handlers.NotFound:
            with self.db.transaction() as cur:
                self._audit_missing(cur, now, "referral.status", principal, request, referral_id)
            raise self._not_found(referral_id) from None
        except lifecycle.TransitionRefused as refused:
            self._audit_status_conflict(request, now, principal, referral_id, body, refused.code)
            raise _transition_error(refused) from None
        except handlers.OfferLost:  # a decline's re-offer found its attempt taken: nothing was changed
            self._audit_status_conflict(request, now, principal, referral_id, body, "offer_lost")
            message = "Another offer of this need was made at the same moment; nothing was changed. Try again."
            raise ApiError(409, "offer_lost", message, {"status": [message]}) from None
        _record(effects)
        return row

    @staticmethod
    def _audit_missing(cur, now, action, principal, request, referral_id):
        """Another partner's referral is "not found" to the caller, and a refusal in the audit trail."""
        owner = handlers.referral_owner(cur, referral_id)
        outcome = "refused" if owner is not None else "not_found"
        access.audit(cur, now, action, outcome, principal, request.remote_addr, referral_id=referral_id,
                     case_id=owner and owner["case_id"])

    @staticmethod
    def _not_found(referral_id):
        return ApiError(404, "not_found", "No referral of yours has this id.", {"referral_id": ["Not found."]})

    # The admin API ------------------------------------------------------------------------------------

    @api("GET", "/admin/v1/partners")
    def admin_list_partners(self, request):
        now = _now()
        self._authorise(request, SUPERVISION, "directory.read", now)
        with self.db.transaction() as cur:
            return json_response(200, {"partners": _rows(handlers.directory(cur, reveal_confidential=False))})

    @api("GET", "/admin/v1/partners/<partner_id>")
    def admin_get_partner(self, request, partner_id):
        now = _now()
        self._authorise(request, SUPERVISION, "directory.read", now)
        partner_id = _uuid(partner_id, "partner_id")
        with self.db.transaction() as cur:
            found = handlers.directory(cur, partner_id, reveal_confidential=False)
        if not found:
            raise ApiError(404, "not_found", "No partner has this id.", {"partner_id": ["Not found."]})
        return json_response(200, _rows(found)[0])

    @api("PATCH", "/admin/v1/partners/<partner_id>")
    def admin_update_partner(self, request, partner_id):
        now = _now()
        principal = self._authorise(request, ADMIN, "directory.write", now)
        partner_id = _uuid(partner_id, "partner_id")
        changes = _body(request, schemas.PartnerPatchSchema())
        try:
            with self.db.transaction() as cur:
                handlers.update_partner(cur, partner_id, changes, now)
                if "accepting" in changes:
                    handlers.set_accepting(cur, partner_id, changes["accepting"], principal.key_id, now)
                access.audit(cur, now, "directory.write", "ok", principal, request.remote_addr, partner_id=partner_id,
                             detail={"fields": sorted(changes)})
                found = handlers.directory(cur, partner_id, reveal_confidential=False)
        except handlers.NotFound:
            raise _partner_not_found() from None
        return json_response(200, _rows(found)[0])

    @api("PUT", "/admin/v1/partners/<partner_id>/services/<service>")
    def admin_set_service(self, request, partner_id, service):
        now = _now()
        principal = self._authorise(request, ADMIN, "directory.write", now)
        partner_id = _uuid(partner_id, "partner_id")
        if service not in schemas.SERVICE_TYPES:
            raise ApiError(404, "not_found", "No such service type.", {"service": ["Not a service type."]})
        terms = _body(request, _TermsLoader(service))
        try:
            with self.db.transaction() as cur:
                handlers.set_service(cur, partner_id, terms, now)
                access.audit(cur, now, "directory.write", "ok", principal, request.remote_addr, partner_id=partner_id,
                             detail={"service": service})
                found = handlers.directory(cur, partner_id, reveal_confidential=False)
        except handlers.NotFound:
            raise _partner_not_found() from None
        return json_response(200, _rows(found)[0])

    @api("DELETE", "/admin/v1/partners/<partner_id>/services/<service>")
    def admin_remove_service(self, request, partner_id, service):
        now = _now()
        principal = self._authorise(request, ADMIN, "directory.write", now)
        partner_id = _uuid(partner_id, "partner_id")
        try:
            with self.db.transaction() as cur:
                handlers.remove_service(cur, partner_id, service, now)
                access.audit(cur, now, "directory.write", "ok", principal, request.remote_addr, partner_id=partner_id,
                             detail={"removed_service": service})
        except handlers.NotFound:
            raise ApiError(404, "not_found", "This partner does not offer that service.",
                           {"service": ["Not found."]}) from None
        return Response(status=204)

    @api("GET", "/admin/v1/policies")
    def admin_list_policies(self, request):
        self._authorise(request, SUPERVISION, "policy.read", _now())
        with self.db.transaction() as cur:
            return json_response(200, {"policies": _rows(handlers.policies(cur))})

    @api("PUT", "/admin/v1/policies/<level>")
    def admin_set_policy(self, request, level):
        now = _now()
        principal = self._authorise(request, ADMIN, "policy.write", now)
        if level not in schemas.RISK_LEVELS:
            raise ApiError(404, "not_found", "No such risk level.", {"level": ["Not a risk level."]})
        body = _body(request, schemas.PolicySchema())
        with self.db.transaction() as cur:
            saved = handlers.set_policy(cur, Policy(level, body["ack_seconds"], body["max_reoffers"]),
                                        principal.actor_id, now)
            access.audit(cur, now, "policy.write", "ok", principal, request.remote_addr, detail=_rows([saved])[0])
        return json_response(200, _rows([saved])[0])

    @api("GET", "/admin/v1/match")
    def admin_explain_match(self, request):
        now = _now()
        self._authorise(request, SUPERVISION, "directory.match", now)
        query = _query(request, schemas.MatchQuerySchema())
        with self.db.transaction() as cur:
            explained = handlers.explain_match(cur, query["service"], query["governorate"], query["at"] or now,
                                               schemas.preferences(query))
        return json_response(200, explained)

    @api("GET", "/admin/v1/cases/<case_id>/referrals")
    def admin_case_referrals(self, request, case_id):
        now = _now()
        principal = self._authorise(request, CASE_WORK, "case.read", now)
        case_id = _uuid(case_id, "case_id")
        try:
            with self.db.transaction() as cur:
                view = handlers.case_referrals(cur, case_id)
                access.audit(cur, now, "case.read", "ok", principal, request.remote_addr, case_id=case_id)
        except handlers.NotFound:
            raise ApiError(404, "not_found", "Referral knows no case with this id.", {"case_id": ["Not found."]}) \
                from None
        view["referrals"], view["escalations"] = _rows(view["referrals"]), _rows(view["escalations"])
        return json_response(200, view)

    @api("POST", "/admin/v1/cases/<case_id>/refer-anyway")
    def admin_refer_anyway(self, request, case_id):
        now = _now()
        principal = self._authorise(request, CASE_WORK, "referral.refer_anyway", now)
        case_id = _uuid(case_id, "case_id")
        body = _body(request, schemas.ReferAnywaySchema())
        try:
            with self.db.transaction() as cur:
                referral_id, effects = handlers.refer_anyway(cur, self.outbox, self.keys, case_id, body["service"],
                                                             body["partner_id"], now, self._process())
                access.audit(
                    cur, now, "referral.refer_anyway", "ok", principal, request.remote_addr, referral_id=referral_id,
                    case_id=case_id, partner_id=body["partner_id"],
                    detail={"service": body["service"], "reason_code": body["reason_code"]},
                    note_sealed=self.keys.data.seal_optional(body["note"], handlers.note_context(case_id)))
        except handlers.NotFound:
            raise ApiError(404, "not_found", "Referral knows no case with this id.", {"case_id": ["Not found."]}) \
                from None
        except handlers.Refusal as refusal:
            self._audit(now, "referral.refer_anyway", "refused", principal, request, case_id=case_id,
                        partner_id=body["partner_id"], detail={"service": body["service"], "code": refusal.code})
            raise ApiError(refusal.status, refusal.code, refusal.message, {refusal.field: [refusal.message]}) \
                from None
        except handlers.OfferLost:
            message = "Another offer of this need was made at the same moment; nothing was offered. Look again."
            self._audit(now, "referral.refer_anyway", "conflict", principal, request, case_id=case_id,
                        partner_id=body["partner_id"], detail={"service": body["service"], "code": "offer_lost"})
            raise ApiError(409, "offer_lost", message, {"service": [message]}) from None
        _record(effects)
        return json_response(201, {"referral_id": str(referral_id)})

    @api("POST", "/admin/v1/referrals/<referral_id>/status")
    def admin_change_status(self, request, referral_id):
        """Staff move a referral along. A counsellor answers for their own partner organisation, as the
        partner would: only its referrals, and never withdrawing one (that is a supervisor's decision)."""
        now = _now()
        principal = self._authorise(request, STAFF, "referral.status", now)
        referral_id = _uuid(referral_id, "referral_id")
        body = _body(request, schemas.StatusChangeSchema())
        partner_id = None
        if principal.role == "counsellor":
            self._check_counsellor(request, now, principal, referral_id, body)
            partner_id = principal.partner_id
        row = self._change_status(request, now, principal, referral_id, body, "staff", partner_id)
        return json_response(200, handlers.partner_view(row))

    def _check_counsellor(self, request, now, principal, referral_id, body):
        refusal = None
        if principal.partner_id is None:
            refusal = ("no_partner", "Authorization",
                       "This counsellor's key names no partner organisation: ask for a new one.")
        elif body["status"] not in lifecycle.MAY_SET["partner"]:
            refusal = ("status_not_allowed", "status",
                       f"A counsellor may set: {', '.join(lifecycle.MAY_SET['partner'])}.")
        if refusal is not None:
            code, field, message = refusal
            self._audit(now, "referral.status", "refused", principal, request, referral_id=referral_id,
                        detail={"status": body["status"], "code": code})
            raise ApiError(403, "forbidden", message, {field: [message]})


def _next_page(path, query, found):
    """The link to the page after `found`, which more referrals follow."""
    params = {"status": query["status"], "limit": query["limit"], "before": found[-1]["id"]}
    return f"{path}?{urlencode({name: value for name, value in params.items() if value is not None})}"


class _TermsLoader:
    """Adapts schemas.service_terms to the schema.load interface _body expects."""

    def __init__(self, service):
        self.service = service

    def load(self, data):
        return schemas.service_terms(self.service, data)


class CriticalReferralService(ReferralService):
    name = "referral_critical"
    lane = "critical"

    @consume(routing.REFERRAL_CASE_TRIAGED_CRITICAL, requeue_on_error=True)
    def on_case_triaged(self, body):
        self._handle(routing.REFERRAL_CASE_TRIAGED_CRITICAL.name, [body],
                     partial(handlers.refer_case, keys=self.keys))

    @consume(routing.REFERRAL_NOTIFICATION_EXHAUSTED_CRITICAL, requeue_on_error=True)
    def on_notification_exhausted(self, body):
        self._handle(routing.REFERRAL_NOTIFICATION_EXHAUSTED_CRITICAL.name, [body], self._delivery_exhausted)

    def escalate_normal(self):
        """Not here: this process keeps to the critical lane."""
