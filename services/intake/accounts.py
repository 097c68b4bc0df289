"""Staff accounts: roles and password hashing (argon2id, argon2-cffi's default parameters)."""
import re
import uuid

from argon2 import PasswordHasher

from services.intake import sql

ROLES = ("operator", "counsellor", "supervisor", "admin")
MIN_PASSWORD_CHARS = 12
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,49}")

_hasher = PasswordHasher()


def check_new_account(username, role, password, partner_id=None):
    """Field errors of a new account, empty when it is acceptable. A counsellor works for a partner
    organisation and sees the cases referred to it, so a counsellor needs one; nobody else has one."""
    errors = {}
    if not USERNAME_PATTERN.fullmatch(username or ""):
        errors["username"] = ["Use 2 to 50 lower-case letters, digits, dots, dashes or underscores."]
    if role not in ROLES:
        errors["role"] = [f"Must be one of: {', '.join(ROLES)}."]
    if len(password or "") < MIN_PASSWORD_CHARS:
        errors["password"] = [f"Must be at least {MIN_PASSWORD_CHARS} characters."]
    if role == "counsellor" and partner_id is None:
        errors["partner_id"] = ["A counsellor needs the id of the partner organisation they work for."]
    elif role != "counsellor" and role in ROLES and partner_id is not None:
        errors["partner_id"] = ["Only counsellors belong to a partner organisation."]
    return errors


def add_user(cur, username, display_name, role, password, partner_id=None):
    user_id = uuid.uuid4()
    cur.execute(sql.INSERT_USER, {
        "id": user_id, "username": username, "display_name": display_name or username, "role": role,
        "password_hash": _hasher.hash(password), "partner_id": partner_id,
    })
    return user_id


def hash_password(password) -> str:
    return _hasher.hash(password)


def needs_rehash(password_hash) -> bool:
    """True when the hash was made with weaker parameters than today's: it is replaced at the next login."""
    return _hasher.check_needs_rehash(password_hash)


def verify_password(password_hash, password) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except Exception:  # noqa: BLE001 -- argon2 raises several types; all mean "no"
        return False
