"""Intake's use cases, each taking its dependencies as arguments (a cursor inside the caller's
transaction, the outbox, the key file, the acting staff member, the time)."""
import base64
import json
import os
import uuid
from datetime import datetime, timedelta, timezone

import psycopg2.errors
from psycopg2.extras import Json

from sanad.contracts.events import new_event, particulars, seal_particulars
from sanad.contracts.sealing import evidence_context, narrative_context, override_reason_context
from sanad.contracts.vocabulary import lane_for
from sanad.platform.reseal import BATCH as RESEAL_BATCH
from sanad.platform.reseal import reseal_rows
from services.intake import accounts, cases, permissions, sql
from services.intake.vocabulary import field_context

PRODUCER = "intake"
QUEUE_LIMIT = 200


def taken_by_another(exc) -> str | None:
    """What a new case's COMMIT failed on (`exc`, any exception), if another case holds it: "idempotency_key"
    (an earlier or concurrent submission of the same case) or "reference" (drawn twice); else None."""
    if isinstance(exc, psycopg2.errors.UniqueViolation):
        return sql.CASE_KEYS.get(exc.diag.constraint_name)
    return None


def case_recorded_under(cur, caller, idempotency_key):
    """{id, reference, idempotency_fingerprint} of the case `caller` (a Principal) recorded under an
    Idempotency-Key, or None. Another account's key of the same name is not this one."""
    if caller is None:
        return None
    cur.execute(sql.CASE_BY_IDEMPOTENCY_KEY, {"caller": caller.id, "key": idempotency_key})
    return cur.fetchone()


def submission_fingerprint(keys, body) -> str:
    """What tells a retry of a new case from another case sent under the same Idempotency-Key: a keyed
    hash of its JSON body, whatever its spacing and order of keys. Keyed, since the body is personal."""
    return keys.lookup_hash(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False))


def same_submission(earlier, fingerprint) -> bool:
    """Whether a case sent with `fingerprint` is the one recorded as `earlier` (case_recorded_under) sent
    again. A case recorded before fingerprints were kept is taken to be."""
    return earlier["idempotency_fingerprint"] in (None, fingerprint)


class Refused(Exception):
    """A request the rules refuse. `kind` is not_found, forbidden or conflict; `field` names the field at
    fault, if one is; `code` is a catalogue code."""

    def __init__(self, kind, code, field=None):
        super().__init__(code)
        self.kind, self.code, self.field = kind, code, field


def _now(now):
    return now or datetime.now(timezone.utc)


# Audit ------------------------------------------------------------------------------------------------

def audit(cur, actor, action, case_id=None, detail=None, ip=None, now=None, via=None):
    """Record who did what, when, from where, in the caller's transaction: the trail commits with the
    change it describes or not at all. `detail` holds codes and levels only, never personal text. Without
    an actor, `via` says how the request came (default: the command line)."""
    cur.later(sql.INSERT_AUDIT, {
        "at": _now(now), "actor_id": actor.id if actor else None, "actor_role": actor.role if actor else None,
        "via": actor.via if actor else via or "cli", "action": action, "case_id": case_id, "detail": Json(detail or {}),
        "ip": ip,
    })


def audit_trail(cur, case_id):
    cur.execute(sql.AUDIT_OF_CASE, {"case_id": case_id})
    return [{**row, "at": row["at"].isoformat()} for row in cur.fetchall()]


# Recording a case -------------------------------------------------------------------------------------

def triage_facts(fields, received_at) -> dict:
    """What triage scores a new case on, from its fields (schemas.load_new_case) as it arrives."""
    return {
        "victim_age": cases.age_for_triage(fields.get("victim_age"), fields.get("victim_age_band")),
        "material_published": fields.get("material_published"),
        "deadline_hours": _deadline(fields, received_at)[1],
        "suicidal_thoughts": fields.get("suicidal_thoughts"),
        "threat_of_violence": fields.get("threat_of_violence"),
    }


def new_case_lane(fields, received_at, lane_of=None) -> str:
    """The lane a new case goes to triage on: `lane_of(narrative, facts)` (services/intake/screen.py), or
    the checklist alone without it."""
    facts = triage_facts(fields, received_at)
    return lane_of(fields["narrative"], facts) if lane_of else cases.triage_lane(facts)


def _deadline(fields, received_at):
    """(deadline_at, deadline_hours), each from the other if only one was given."""
    deadline_at, deadline_hours = fields.get("deadline_at"), fields.get("deadline_hours")
    if deadline_at is not None:
        return deadline_at, cases.deadline_hours_at(deadline_at, received_at)
    if deadline_hours is not None:
        return received_at + timedelta(hours=deadline_hours), deadline_hours
    return None, None


def record_case(cur, outbox, keys, fields, lane, actor=None, idempotency_key=None, fingerprint=None, ip=None,
                now=None):
    """Store a new case, its audit entry and its case.received event, on `lane` (new_case_lane), in the
    caller's transaction. `fields` come from schemas.load_new_case. A case recorded in a staff session is
    held by whoever recorded it; one posted by a machine client (an API token) joins the open queue.
    The case goes to PostgreSQL with the transaction's COMMIT, not in a round trip of its own: an
    idempotency key or a reference that another case holds fails the COMMIT (taken_by_another)."""
    case_id = uuid.uuid4()
    received_at = _now(now)
    contact = fields.get("safe_contact") or {}
    phone = cases.canonical_phone(contact["phone"]) if contact.get("phone") else None
    age, band = fields.get("victim_age"), fields.get("victim_age_band")
    deadline_at, deadline_hours = _deadline(fields, received_at)
    facts = triage_facts(fields, received_at)

    def sealed(name, value):
        return keys.data.seal_optional(value, field_context(case_id, name))

    row = {
        **{name: fields.get(name) for name in (
            "channel", "governorate", "caller_relation", "victim_gender", "district", "perpetrator",
            "demand_amount", "demand_currency")},
        **{name: list(fields.get(name) or ()) for name in (
            "needs", "consents", "extortion_types", "platforms", "demands", "published_on")},
        **{name: bool(fields.get(name)) for name in ("family_contact_allowed", "tribe_contact_allowed", "anonymous")},
        "victim_age_sealed": sealed("victim_age", None if age is None else str(age)),
        "victim_age_band": band or (cases.age_band_of(age) if age is not None else None),
        "material_published": facts["material_published"],
        "deadline_hours": deadline_hours,
        "deadline_at": deadline_at,
        "suicidal_thoughts": facts["suicidal_thoughts"],
        "threat_of_violence": facts["threat_of_violence"],
        "id": case_id,
        "idempotency_key": idempotency_key,
        "idempotency_fingerprint": fingerprint,
        "received_at": received_at,
        "recorded_by": actor.id if actor else None,
        "assigned_to": actor.id if actor and actor.via == "session" else None,
        "narrative_sealed": keys.data.seal(fields["narrative"], narrative_context(case_id)),
        "contact_name_sealed": sealed("contact_name", contact.get("name")),
        "contact_phone_sealed": sealed("contact_phone", phone),
        "contact_phone_hash": keys.lookup_hash(phone) if phone else None,
        "contact_safe_times_sealed": sealed("contact_safe_times", contact.get("safe_times")),
        "contact_code_word_sealed": sealed("contact_code_word", contact.get("code_word")),
        "no_messages": contact.get("no_messages", True) is not False,
    }
    row["reference"] = cases.new_reference()
    cur.later(sql.INSERT_CASE, row)
    audit(cur, actor, "case_recorded", case_id, {"channel": row["channel"]}, ip, received_at)
    outbox.add(cur, new_event("case.received", {
        "case_id": case_id,
        "reference": row["reference"],
        "received_at": received_at,
        "channel": row["channel"],
        "governorate": row["governorate"],
        "needs": row["needs"],
        "consents": row["consents"],
        "sealed_narrative": keys.transport.seal(fields["narrative"], narrative_context(case_id)),
        "sealed_particulars": seal_particulars("case.received", {
            "facts": facts,
            "preferences": {"family_contact": row["family_contact_allowed"], "staff_gender": None,
                            "victim_age": facts["victim_age"]},
        }, keys.transport, case_id),
    }, producer=PRODUCER, correlation_id=case_id, lane=lane))
    return {"id": case_id, "reference": row["reference"]}


# Reading cases ----------------------------------------------------------------------------------------

def _viewer_params(viewer):
    return {"viewer": viewer.id, "partner": viewer.partner_id}


def check_visible(cur, case_id, viewer):
    """Raise Refused unless `viewer` may see the case. It answers the same for a case that exists and one
    that does not, so ids cannot be probed; the caller audits the attempt (service._record_refusal) in a
    transaction of its own, since this one rolls back."""
    cur.execute(sql.CASE_VISIBLE.format(visibility=sql.visibility(viewer.role)),
                {"id": case_id, **_viewer_params(viewer)})
    if cur.fetchone() is None:
        raise Refused("not_found", "case_not_found")


def _victim_age(case, keys):
    """The exact age, sealed, or in the clear in a case recorded before migration 0006 and not resealed."""
    if case["victim_age_sealed"] is None:
        return case["victim_age"]
    return int(keys.data.open(case["victim_age_sealed"], field_context(case["id"], "victim_age")))


def case_view(cur, keys, case_id, viewer=None, ip=None, now=None):
    """Everything a reader with the right to see a case is shown, personal fields opened; the read is
    audited. Without a viewer (internal use) nothing is checked or audited."""
    if viewer is not None:
        check_visible(cur, case_id, viewer)
    cur.execute(sql.CASE_BY_ID, {"id": case_id})
    case = cur.fetchone()
    if case is None:
        raise Refused("not_found", "case_not_found")
    cur.execute(sql.REFERRALS_OF_CASE, {"case_id": case_id})
    referrals = cur.fetchall()
    cur.execute(sql.DELIVERIES_OF_CASE, {"case_id": case_id})
    deliveries = cur.fetchall()
    cur.execute(sql.ESCALATIONS_OF_CASE, {"case_id": case_id})
    escalations = cur.fetchall()
    cur.execute(sql.OVERRIDES_OF_CASE, {"case_id": case_id})
    overrides = cur.fetchall()

    def opened(name):
        return keys.data.open_optional(case[f"{name}_sealed"], field_context(case_id, name))

    evidence = {}
    if case["risk_evidence_sealed"]:
        evidence = json.loads(keys.data.open(case["risk_evidence_sealed"], evidence_context(case_id)))
    repeat = []
    if case["contact_phone_hash"] and viewer is not None:
        cur.execute(sql.OTHER_CASES_WITH_PHONE.format(visibility=sql.visibility(viewer.role)),
                    {"phone_hash": case["contact_phone_hash"], "id": case_id, **_viewer_params(viewer)})
        repeat = cur.fetchall()
    if viewer is not None:
        audit(cur, viewer, "case_viewed", case_id, None, ip, now)
    view = {
        "id": case["id"],
        "reference": case["reference"],
        "received_at": case["received_at"].isoformat(),
        "recorded_by": _person(case["recorded_by"], case["recorded_by_name"]),
        "assigned_to": _person(case["assigned_to"], case["assigned_to_name"]),
        "status": cases.case_status(case, referrals, deliveries),
        "channel": case["channel"],
        "caller_relation": case["caller_relation"],
        "victim_age": _victim_age(case, keys),
        "victim_age_band": case["victim_age_band"],
        "victim_gender": case["victim_gender"],
        "governorate": case["governorate"],
        "district": case["district"],
        "extortion_types": case["extortion_types"],
        "platforms": case["platforms"],
        "perpetrator": case["perpetrator"],
        "demands": case["demands"],
        "demand_amount": None if case["demand_amount"] is None else str(case["demand_amount"]),
        "demand_currency": case["demand_currency"],
        "deadline_at": case["deadline_at"] and case["deadline_at"].isoformat(),
        "deadline_hours": case["deadline_hours"],
        "material_published": case["material_published"],
        "published_on": case["published_on"],
        "needs": case["needs"],
        "consents": case["consents"],
        "family_contact_allowed": case["family_contact_allowed"],
        "tribe_contact_allowed": case["tribe_contact_allowed"],
        "suicidal_thoughts": case["suicidal_thoughts"],
        "threat_of_violence": case["threat_of_violence"],
        "anonymous": case["anonymous"],
        "narrative": opened("narrative"),
        "safe_contact": {
            "name": opened("contact_name"),
            "phone": opened("contact_phone"),
            "safe_times": opened("contact_safe_times"),
            "code_word": opened("contact_code_word"),
            "no_messages": case["no_messages"],
        },
        "repeat_caller": {
            "other_cases": len(repeat),
            "references": [row["reference"] for row in repeat if row["visible"]],
        },
        "risk": None if not case["risk_level"] else {
            "level": case["risk_level"],
            "score": case["risk_score"],
            "reasons": [{**reason, "evidence": evidence.get(reason["code"], [])}
                        for reason in (case["risk_reasons"] or [])],
            "lexicon_version": case["lexicon_version"],
            "assessed_at": case["triaged_at"] and case["triaged_at"].isoformat(),
            "overrides": [
                {
                    "previous_level": o["previous_level"],
                    "level": o["level"],
                    "reason": keys.data.open(o["reason_sealed"], override_reason_context(case_id)),
                    "by": _person(o["overridden_by"], o["overridden_by_name"]),
                    "role": o["role"],
                    "at": o["overridden_at"].isoformat(),
                }
                for o in overrides
            ],
        },
        "unmatched_services": case["unmatched_services"] or [],
        "escalations": [
            {**{k: esc[k] for k in ("referral_id", "service", "reason", "step", "reoffered_to")},
             "escalated_at": esc["escalated_at"].isoformat()}
            for esc in escalations
        ],
        "referrals": [
            {
                "id": ref["id"],
                "partner_id": ref["partner_id"],
                "partner_name": ref["partner_name"],
                "service": ref["service"],
                "created_at": ref["created_at"].isoformat(),
                "status": ref["status"] or "offered",
                "note_code": ref["note_code"],
                "status_changed_at": ref["status_changed_at"] and ref["status_changed_at"].isoformat(),
                "deliveries": [
                    {
                        "webhook_id": d["webhook_id"],
                        "attempt": d["attempt"],
                        "outcome": d["outcome"],
                        "status_code": d["status_code"],
                        "latency_ms": d["latency_ms"],
                        "attempted_at": d["attempted_at"].isoformat(),
                        "next_attempt_at": d["next_attempt_at"] and d["next_attempt_at"].isoformat(),
                    }
                    for d in deliveries if d["referral_id"] == ref["id"]
                ],
            }
            for ref in referrals
        ],
    }
    if viewer is not None and viewer.role == "counsellor":
        return as_partner_staff_see_it(view, viewer.partner_id)
    return view


def as_partner_staff_see_it(view, partner_id):
    """A partner's counsellor works the case for their own organisation: they see its referral, not which
    other organisations were offered the case or re-offered it (escalations name them), nor which of the
    hotline's staff recorded, hold or re-levelled it and why (only that its level was changed), nor that
    the caller has cases they may not see. The hotline's own staff are told how many other cases the
    caller has, named where they may see them: a repeat caller is a sign of risk."""
    risk = view["risk"]
    if risk is not None:
        risk = {**risk, "overrides": [{**o, "reason": None, "by": None} for o in risk["overrides"]]}
    references = view["repeat_caller"]["references"]
    return {**view, "risk": risk, "escalations": [], "recorded_by": None, "assigned_to": None,
            "repeat_caller": {"other_cases": len(references), "references": references},
            "referrals": [ref for ref in view["referrals"] if ref["partner_id"] == partner_id]}


def _person(person_id, name):
    return None if person_id is None else {"id": person_id, "name": name}


def queue(cur, viewer, limit=QUEUE_LIMIT):
    """The cases a viewer sees, most urgent first: critical, high, not yet assessed (it may be either),
    medium, low; within a level the longest waiting first. Nothing personal, so a glance at the screen
    from across a shared room gives nothing away."""
    cur.execute(sql.QUEUE.format(visibility=sql.visibility(viewer.role)), {**_viewer_params(viewer), "limit": limit})
    return [
        {
            "id": row["id"],
            "reference": row["reference"],
            "received_at": row["received_at"].isoformat(),
            "channel": row["channel"],
            "governorate": row["governorate"],
            "district": row["district"],
            "needs": row["needs"],
            "risk_level": row["risk_level"],
            "risk_score": row["risk_score"],
            "status": cases.case_status(row, [None] * row["referral_count"],
                                        [{"outcome": "delivered"}] if row["delivered"] else []),
            "assigned_to": _person(row["assigned_to"], row["assigned_to_name"]),
        }
        for row in cur.fetchall()
    ]


# Changing a case --------------------------------------------------------------------------------------

def override_risk(cur, outbox, keys, case_id, actor, level, reason, ip=None, now=None):
    """Set a case's risk level by hand, with a reason. Intake shows the new level at once; triage keeps the
    original assessment and announces the new level (case.triaged) on the lane it calls for. Raised to
    critical, it goes first among the process's requests once allowed (OutboxWriter.go_first)."""
    now = _now(now)
    check_visible(cur, case_id, actor)
    cur.execute(sql.CASE_FOR_UPDATE, {"id": case_id})
    case = cur.fetchone()
    if case["purged"]:  # a reason written now would outlive the purge (services/intake/retention.py)
        raise Refused("conflict", "case_purged")
    if case["risk_level"] is None:
        raise Refused("conflict", "not_triaged_yet")
    if level == case["risk_level"]:
        raise Refused("conflict", "same_level", "level")
    if not permissions.may_override(actor.role, case["risk_level"], level):
        raise Refused("forbidden", "lowering_needs_supervisor", "level")
    if lane_for(level) == "critical":
        outbox.go_first()
    context = override_reason_context(case_id)
    cur.execute(sql.INSERT_OVERRIDE, {
        "id": uuid.uuid4(), "case_id": case_id, "previous_level": case["risk_level"], "level": level,
        "reason_sealed": keys.data.seal(reason, context), "overridden_by": actor.id, "role": actor.role,
        "overridden_at": now,
    })
    cur.execute(sql.SET_RISK_LEVEL, {"id": case_id, "level": level})
    audit(cur, actor, "risk_overridden", case_id, {"from": case["risk_level"], "to": level}, ip, now)
    outbox.add(cur, new_event("case.risk_overridden", {
        "case_id": case_id, "reference": case["reference"], "previous_level": case["risk_level"], "level": level,
        "sealed_reason": keys.transport.seal(reason, context), "overridden_by": actor.id, "role": actor.role,
        "overridden_at": now,
    }, producer=PRODUCER, correlation_id=case_id, lane=lane_for(level), now=now))
    return {"previous_level": case["risk_level"], "level": level}


def assign_case(cur, case_id, actor, assignee, ip=None, now=None):
    """Give a case to a staff member who works cases, or back to the open queue (assignee None)."""
    check_visible(cur, case_id, actor)
    cur.execute(sql.CASE_FOR_UPDATE, {"id": case_id})
    case = cur.fetchone()
    if not permissions.may_assign(actor.role, actor.id, case["assigned_to"], assignee):
        raise Refused("forbidden", "assignment_not_allowed", "assignee")
    if assignee is not None:
        cur.execute(sql.USER_BY_ID, {"id": assignee})
        user = cur.fetchone()
        if user is None or not user["active"] or not permissions.may_record_cases(user["role"]):
            raise Refused("conflict", "assignee_not_operator", "assignee")
    cur.execute(sql.SET_ASSIGNEE, {"id": case_id, "assignee": assignee})
    audit(cur, actor, "case_assigned", case_id,
          {"from": case["assigned_to"] and str(case["assigned_to"]), "to": assignee and str(assignee)}, ip, now)
    return {"assigned_to": assignee}


# What other services report --------------------------------------------------------------------------

def _stage_news(event):
    """(stage, when) if `event` is news of a stage a case is timed to, else None."""
    data = event.data
    if event.type == "case.triaged":
        return "triaged", event.occurred_at
    if event.type == "referral.created":
        return "referred", data["created_at"]
    if event.type == "delivery.attempted" and data["outcome"] == "delivered":
        return "first_delivery", data["attempted_at"]
    if event.type == "referral.status_changed" and data["status"] in sql.ANSWERED_STATUSES:
        return "acknowledged", data["changed_at"]
    return None


class StagesReached:
    """The stages each case had reached, for timing it to the first news of each: triaged, referred, a
    webhook delivered, a partner's answer. `read` fetches the cases of a batch's events in one round trip
    before any of them is recorded (one for every event cost intake-status a round trip an event); then
    `first_news` answers from memory, and keeps it up to date as the batch's events are recorded, as the
    tables would be. One instance a transaction."""

    def __init__(self):
        self._cases = {}

    def read(self, cur, events):
        wanted = {event.data["case_id"] for event in events if _stage_news(event)} - self._cases.keys()
        if wanted:
            cur.execute(sql.CASES_STAGES_REACHED, {"case_ids": list(wanted),
                                                   "answered": list(sql.ANSWERED_STATUSES)})
            self._cases.update(dict.fromkeys(wanted))  # a case not found (gone by retention) is not read again
            self._cases.update({row["id"]: dict(row) for row in cur.fetchall()})

    def first_news(self, cur, event):
        """(stage, risk level, seconds since the case was received) when `event` is the first news of its
        case reaching a stage; None otherwise. Reads the case unless `read` has."""
        news = _stage_news(event)
        if news is None:
            return None
        self.read(cur, [event])
        case = self._cases.get(event.data["case_id"])
        if case is None:
            return None
        stage, at = news
        if stage == "triaged":
            level, first = event.data["level"], case["triaged_at"] is None
            if first or case["triaged_at"] <= event.occurred_at:  # as sql.RECORD_TRIAGE decides
                case["risk_level"], case["triaged_at"] = level, event.occurred_at
        else:
            level, first = case["risk_level"], not case[stage]
            case[stage] = True
        if not first or not level:
            return None
        return stage, level, max(0.0, (at - case["received_at"]).total_seconds())


def record_status(cur, event, keys, stages):
    """Keep the operators' view of a case up to date with what the other services report. Returns the
    stage the case reached, if this is the first news of it (StagesReached.first_news)."""
    reached = stages.first_news(cur, event)
    _record_status(cur, event, keys)
    return reached


def _record_status(cur, event, keys):
    data = event.data
    if event.type == "case.triaged":
        context = evidence_context(data["case_id"])
        evidence = keys.transport.open_optional(data["sealed_evidence"], context)
        reasons = particulars(event, keys.transport)["reasons"]
        cur.later(sql.RECORD_TRIAGE, {
            "case_id": data["case_id"], "level": data["level"], "score": data["score"],
            "reasons": json.dumps(reasons), "evidence_sealed": keys.data.seal_optional(evidence, context),
            "lexicon_version": data["lexicon_version"], "triaged_at": event.occurred_at,
        })
    elif event.type == "case.unmatched":
        cur.later(sql.RECORD_UNMATCHED, {"case_id": data["case_id"], "services": data["services"]})
    elif event.type == "referral.created":
        cur.later(sql.RECORD_REFERRAL, data)
    elif event.type == "delivery.attempted":
        cur.later(sql.RECORD_DELIVERY_ATTEMPT, data)
    elif event.type == "referral.status_changed":
        cur.later(sql.RECORD_REFERRAL_STATUS, data)
    elif event.type == "referral.escalated":
        cur.later(sql.RECORD_ESCALATION, data)


# Staff accounts --------------------------------------------------------------------------------------

def list_users(cur):
    cur.execute(sql.ALL_USERS)
    return [{**row, "created_at": row["created_at"].isoformat()} for row in cur.fetchall()]


def create_user(cur, actor, fields, ip=None, now=None):
    username = fields["username"]
    errors = accounts.check_new_account(username, fields["role"], fields["password"], fields.get("partner_id"))
    if errors:
        field = sorted(errors)[0]
        raise Refused("conflict", f"account_{field}", field)
    cur.execute(sql.USER_BY_USERNAME, {"username": username})
    if cur.fetchone() is not None:
        raise Refused("conflict", "username_taken", "username")
    user_id = accounts.add_user(cur, username, fields.get("display_name"), fields["role"], fields["password"],
                                fields.get("partner_id"))
    audit(cur, actor, "user_created", None, {"user_id": str(user_id), "role": fields["role"]}, ip, now)
    return user_id


def set_user_active(cur, actor, user_id, active, ip=None, now=None):
    """Activate or deactivate an account. Deactivating ends its sessions and revokes its API tokens for
    good (activating it again brings none of them back), and puts the cases it held back in the open
    queue, each with an audit entry, so that no case, a critical one least of all, waits for someone
    who has gone."""
    now = _now(now)
    cur.execute(sql.SET_USER_ACTIVE, {"id": user_id, "active": active})
    if cur.fetchone() is None:
        raise Refused("not_found", "user_not_found")
    if not active:
        cur.execute(sql.END_SESSIONS_OF_USER, {"id": user_id})
        cur.execute(sql.REVOKE_TOKENS_OF_USER, {"id": user_id, "now": now})
        cur.execute(sql.RELEASE_CASES_OF_USER, {"id": user_id})
        for row in cur.fetchall():
            audit(cur, actor, "case_assigned", row["id"], {"from": str(user_id), "to": None}, ip, now)
    audit(cur, actor, "user_activated" if active else "user_deactivated", None, {"user_id": str(user_id)}, ip, now)


# The browser draft key --------------------------------------------------------------------------------

def draft_key_context(user_id):
    return f"user:{user_id}:draft_key"


def draft_key(cur, keys, user_id) -> str:
    """The key (base64, 256 bits) the browser encrypts this staff member's unsent case form with. One per
    account, kept sealed here, so a draft left in a shared machine's browser opens only after its author
    logs in again, on any later session."""
    cur.execute(sql.DRAFT_KEY_OF_USER, {"id": user_id})
    sealed = cur.fetchone()["draft_key_sealed"]
    if sealed:
        return keys.data.open(sealed, draft_key_context(user_id))
    key = base64.b64encode(os.urandom(32)).decode()
    cur.execute(sql.SET_DRAFT_KEY, {"id": user_id, "draft_key_sealed": keys.data.seal(key, draft_key_context(user_id))})
    return key


# Key rotation -----------------------------------------------------------------------------------------

# The context each sealed column of a case row is sealed under.
CASE_SEALED_COLUMNS = {
    "narrative_sealed": lambda row: narrative_context(row["id"]),
    "contact_name_sealed": lambda row: field_context(row["id"], "contact_name"),
    "contact_phone_sealed": lambda row: field_context(row["id"], "contact_phone"),
    "contact_safe_times_sealed": lambda row: field_context(row["id"], "contact_safe_times"),
    "contact_code_word_sealed": lambda row: field_context(row["id"], "contact_code_word"),
    "risk_evidence_sealed": lambda row: evidence_context(row["id"]),
    "victim_age_sealed": lambda row: field_context(row["id"], "victim_age"),
}


def reseal(pool, ring, batch=RESEAL_BATCH) -> dict:
    """Every sealed value of intake under `ring`'s primary key, and the exact ages kept in the clear before
    migration 0006 sealed (`sanad keys reseal`): rows changed, by table."""
    return {
        "cases": reseal_rows(pool, ring, sql.CASES_TO_RESEAL, sql.UPDATE_CASE_SEALS, CASE_SEALED_COLUMNS,
                             batch=batch, in_the_clear={"victim_age_sealed": "victim_age"}),
        "case_overrides": reseal_rows(pool, ring, sql.OVERRIDES_TO_RESEAL, sql.UPDATE_OVERRIDE_SEAL,
                                      {"reason_sealed": lambda row: override_reason_context(row["case_id"])},
                                      batch=batch),
        "users": reseal_rows(pool, ring, sql.USERS_TO_RESEAL, sql.SET_DRAFT_KEY,
                             {"draft_key_sealed": lambda row: draft_key_context(row["id"])}, batch=batch),
    }
