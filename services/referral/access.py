"""Who is calling (partner or staff, by API key), whether they may, and the audit trail of what they did.

Each function takes a cursor; the caller owns the transaction. A refusal is audited in a transaction of
its own by the caller, since the request it refuses changes nothing else.
"""
import json
from dataclasses import dataclass
from datetime import timedelta

from services.referral import apikeys, sql

STAFF_ROLES = ("counsellor", "supervisor", "admin")


@dataclass(frozen=True)
class Principal:
    kind: str          # partner | staff
    role: str          # partner | counsellor | supervisor | admin
    key_id: str
    partner_id: object = None
    staff_name: str = None

    @property
    def actor_id(self):
        """Who did it, for the audit log: the partner, or the member of staff (a counsellor's partner is
        recorded beside it)."""
        return self.staff_name if self.kind == "staff" else str(self.partner_id)


class Refused(Exception):
    """Authentication or authorisation failed. `reason` is a metric label and an audit detail; the
    client sees only `code` and `message`, never which of several checks failed."""

    def __init__(self, status, code, message, reason, key_id=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.reason = reason
        self.key_id = key_id


def _unauthenticated(reason, key_id=None):
    return Refused(401, "unauthenticated", "Send a valid API key as 'Authorization: Bearer <key>'.", reason, key_id)


def authenticate(cur, server_key, authorization, now, roles):
    """The principal behind an Authorization header, if its key is live and its role is in `roles`."""
    parsed = apikeys.from_authorization(authorization)
    if parsed is None:
        raise _unauthenticated("missing_or_malformed")
    key_id, secret = parsed
    cur.execute(sql.KEY_BY_ID, {"key_id": key_id})
    row = cur.fetchone()
    if row is None or not apikeys.verify(server_key, key_id, secret, row["digest"]):
        raise _unauthenticated("unknown_key", key_id)
    if row["revoked_at"] is not None or (row["expires_at"] is not None and row["expires_at"] <= now):
        raise _unauthenticated("expired_key", key_id)
    if row["role"] == "partner" and not row["partner_active"]:
        raise _unauthenticated("partner_inactive", key_id)
    if row["role"] not in roles:
        raise Refused(403, "forbidden", "This key may not do that.", "wrong_role", key_id)
    cur.execute(sql.TOUCH_KEY, {"key_id": key_id, "now": now})
    return Principal(
        kind="partner" if row["role"] == "partner" else "staff", role=row["role"], key_id=key_id,
        partner_id=row["partner_id"], staff_name=row["staff_name"],
    )


def issue_key(cur, server_key, now, role, partner_id=None, staff_name=None):
    """A new key: (key id, the key itself, to be shown once and never stored)."""
    if role not in ("partner",) + STAFF_ROLES:
        raise ValueError(f"role must be one of partner, {', '.join(STAFF_ROLES)}")
    key_id, token = apikeys.generate()
    _, secret = apikeys.parse(token)
    cur.execute(sql.INSERT_API_KEY, {
        "key_id": key_id, "role": role, "partner_id": partner_id, "staff_name": staff_name,
        "digest": apikeys.digest(server_key, key_id, secret), "now": now,
    })
    return key_id, token


def rotate_partner_key(cur, server_key, now, partner_id, grace_seconds=0):
    """A new key for the partner; its other keys stop working after `grace_seconds`.
    Returns (key id, key, ids of the keys that now expire)."""
    key_id, token = issue_key(cur, server_key, now, "partner", partner_id=partner_id)
    cur.execute(sql.EXPIRE_PARTNER_KEYS, {
        "partner_id": partner_id, "keep": key_id, "until": now + timedelta(seconds=max(0, grace_seconds)),
    })
    return key_id, token, [row["key_id"] for row in cur.fetchall()]


def audit(cur, now, action, outcome, principal=None, remote_addr=None, referral_id=None, case_id=None,
          partner_id=None, detail=None, note_sealed=None, key_id=None, actor_kind=None):
    cur.later(sql.INSERT_AUDIT, {
        "at": now,
        "actor_kind": actor_kind or (principal.kind if principal else "anonymous"),
        "actor_id": principal.actor_id if principal else None,
        "key_id": principal.key_id if principal else key_id,
        "action": action, "outcome": outcome, "referral_id": referral_id, "case_id": case_id,
        "partner_id": partner_id or (principal.partner_id if principal else None),
        "remote_addr": remote_addr, "detail": json.dumps(detail or {}, default=str), "note_sealed": note_sealed,
    })


def audit_each(cur, now, action, outcome, principal, remote_addr, shown, detail=None):
    """One audit row for each referral in `shown` (rows with id and case_id), so that a call showing many
    referrals leaves a line in each of their cases' trails; one row without ids if it showed none."""
    if not shown:
        audit(cur, now, action, outcome, principal, remote_addr, detail=detail)
        return
    cur.later(sql.INSERT_AUDIT_EACH, {
        "at": now, "actor_kind": principal.kind, "actor_id": principal.actor_id, "key_id": principal.key_id,
        "action": action, "outcome": outcome, "partner_id": principal.partner_id, "remote_addr": remote_addr,
        "detail": json.dumps(detail or {}, default=str),
        "referral_ids": [row["id"] for row in shown], "case_ids": [row["case_id"] for row in shown],
    })
