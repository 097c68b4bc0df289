"""Staff accounts: roles and password hashing."""
import re
import uuid

from argon2 import PasswordHasher

from services.intake import sql

ROLES = ("operator", "counsellor", "supervisor", "admin")
MIN_PASSWORD_CHARS = 12
USERNAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{1,49}")

_hasher = PasswordHasher()


def check_new_account(username, role, password):
    """Field errors of a new account, empty when it is acceptable."""
    errors = {}
    if not USERNAME_PATTERN.fullmatch(username or ""):
        errors["username"] = ["Use 2 to 50 lower-case letters, digits, dots, dashes or underscores."]
    if role not in ROLES:
        errors["role"] = [f"Must be one of: {', '.join(ROLES)}."]
    if len(password or "") < MIN_PASSWORD_CHARS:
        errors["password"] = [f"Must be at least {MIN_PASSWORD_CHARS} characters."]
    return errors


def add_user(cur, username, display_name, role, password):
    user_id = uuid.uuid4()
    cur.execute(sql.INSERT_USER, {
        "id": user_id, "username": username, "display_name": display_name or username, "role": role,
        "password_hash": _hasher.hash(password),
    })
    return user_id


def verify_password(password_hash, password) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except Exception:  # noqa: BLE001 -- argon2 raises several types; all mean "no"
        return False
