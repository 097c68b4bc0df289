"""Who is asking: staff sessions (browser), API tokens (machine clients), and the failed-login limit.

Secrets are random 256-bit tokens; only their SHA-256 is stored, so a copy of the database opens no session
and holds no usable token (a slow hash buys nothing for values this long). Passwords are argon2id
(accounts.py). Time is a parameter, so tests move the clock instead of sleeping.
"""
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from services.intake import accounts, sql

SESSION_COOKIE = "sanad_session"
LOGIN_CSRF_COOKIE = "sanad_login_csrf"
TOKEN_PREFIX = "snd_"

# A session lasts at most a night shift, and ends after an hour in which the operator did nothing.
# Background polling of the queue is not "doing something" (see service.py), so a screen left open in
# a shared room does not keep a session alive.
SESSION_LIFETIME = timedelta(hours=12)
SESSION_IDLE_TIMEOUT = timedelta(hours=1)

# The failed-login limit: a name is locked after this many failures within the window; an address
# that fails for many names is stopped too (guessing across accounts).
LOGIN_WINDOW = timedelta(minutes=15)
MAX_FAILURES_PER_NAME = 5
MAX_FAILURES_PER_ADDRESS = 30

# Verified against when the name is unknown, so an unknown name costs as long as a wrong password.
_DUMMY_HASH = accounts.hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    id: uuid.UUID
    username: str
    display_name: str
    role: str
    partner_id: uuid.UUID | None
    via: str  # "session" or "token"
    csrf_token: str | None = None


@dataclass(frozen=True)
class LoginOutcome:
    user: dict | None
    locked: bool = False
    busy: bool = False  # another attempt on the same name was being checked: try again in a moment


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a, b) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def _principal(row, via, csrf_token=None) -> Principal:
    return Principal(id=row["id"], username=row["username"], display_name=row["display_name"], role=row["role"],
                     partner_id=row["partner_id"], via=via, csrf_token=csrf_token)


def attempt_login(cur, keys, username, password, ip, now) -> LoginOutcome:
    """Check a name and password under the failed-login limit. A locked name answers "locked" whatever
    the password, so guessing cannot continue through the lock. A name whose last attempt is still being
    checked answers "busy", so that guesses sent at once cannot each find the count below the limit."""
    username = (username or "").strip().lower()[:100]
    if "\x00" in username:  # no account has one, and PostgreSQL text cannot hold it
        username = ""
    name_hash = keys.lookup_hash("login:" + username)
    cur.execute(sql.CLAIM_LOGIN_NAME, {"username_hash": name_hash})
    if not cur.fetchone()["claimed"]:
        return LoginOutcome(user=None, busy=True)
    since = now - LOGIN_WINDOW
    cur.execute(sql.COUNT_LOGIN_FAILURES, {"username_hash": name_hash, "ip": ip, "since": since})
    counts = cur.fetchone()
    if counts["by_name"] >= MAX_FAILURES_PER_NAME or counts["by_address"] >= MAX_FAILURES_PER_ADDRESS:
        return LoginOutcome(user=None, locked=True)
    cur.execute(sql.USER_BY_USERNAME, {"username": username})
    user = cur.fetchone()
    password_ok = accounts.verify_password(user["password_hash"] if user else _DUMMY_HASH, password or "")
    if user is None or not user["active"] or not password_ok:
        cur.execute(sql.RECORD_LOGIN_FAILURE, {"username_hash": name_hash, "ip": ip, "at": now})
        return LoginOutcome(user=None)
    cur.execute(sql.CLEAR_LOGIN_FAILURES, {"username_hash": name_hash})
    if accounts.needs_rehash(user["password_hash"]):
        cur.execute(sql.SET_PASSWORD_HASH, {"id": user["id"], "password_hash": accounts.hash_password(password)})
    return LoginOutcome(user=user)


def start_session(cur, user_id, ip, now) -> tuple[str, str]:
    """A new session for a user: (cookie value, CSRF token)."""
    cookie, csrf_token = new_secret(), new_secret()
    cur.execute(sql.INSERT_SESSION, {
        "token_hash": digest(cookie), "user_id": user_id, "csrf_token": csrf_token, "now": now,
        "expires_at": now + SESSION_LIFETIME, "ip": ip,
    })
    return cookie, csrf_token


def session_principal(cur, cookie, now, activity=True):
    """The staff member a session cookie belongs to, or None if it is unknown, expired or idle too long.
    `activity` False (background polling) reads the session without extending it."""
    if not cookie:
        return None
    cur.execute(sql.SESSION_USER, {"token_hash": digest(cookie), "now": now,
                                   "idle_since": now - SESSION_IDLE_TIMEOUT})
    row = cur.fetchone()
    if row is None:
        return None
    if activity:
        cur.later(sql.TOUCH_SESSION, {"token_hash": digest(cookie), "now": now})
    return _principal(row, "session", row["csrf_token"])


def end_session(cur, cookie) -> None:
    if cookie:
        cur.execute(sql.DELETE_SESSION, {"token_hash": digest(cookie)})


def token_principal(cur, bearer, now):
    """The account an API token acts as, or None if it is unknown, revoked or expired."""
    if not bearer or not bearer.startswith(TOKEN_PREFIX):
        return None
    cur.execute(sql.TOKEN_USER, {"token_hash": digest(bearer), "now": now})
    row = cur.fetchone()
    if row is None:
        return None
    return _principal(row, "token")


def add_token(cur, username, label, now, lifetime=None) -> tuple[str, uuid.UUID]:
    """A new API token acting as `username`: (the token, shown once; its id)."""
    cur.execute(sql.USER_BY_USERNAME, {"username": username})
    user = cur.fetchone()
    if user is None or not user["active"]:
        raise LookupError(f"no active account named {username!r}")
    token, token_id = TOKEN_PREFIX + new_secret(), uuid.uuid4()
    cur.execute(sql.INSERT_TOKEN, {
        "id": token_id, "token_hash": digest(token), "user_id": user["id"], "label": label, "now": now,
        "expires_at": now + lifetime if lifetime else None,
    })
    return token, token_id


def revoke_token(cur, token_id, now) -> bool:
    cur.execute(sql.REVOKE_TOKEN, {"id": token_id, "now": now})
    return cur.fetchone() is not None
