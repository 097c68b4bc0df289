"""API keys for partners and staff: shown once, stored as a keyed hash, found by a public key id.

A key reads `snd_<key id>_<secret>`. The key id (12 hex digits) is not secret: it finds the row at once.
The secret is 32 random bytes; only HMAC-SHA256(server key, key id + secret) is stored.

Why HMAC-SHA256 with a server key rather than argon2id: a slow hash protects guessable secrets such as
passwords, but nobody can guess 256 random bits, so here it would buy nothing and cost tens of
milliseconds of CPU on every partner call, which an attacker could turn into a denial of service. The
server key (the key file's lookup key, never in the database) means a stolen database dump alone cannot
even test a candidate key. Comparison is constant-time.
"""
import hashlib
import hmac
import re
import secrets

PREFIX = "snd"
KEY_ID_HEX = 12
SECRET_BYTES = 32
_SHAPE = re.compile(rf"^{PREFIX}_([0-9a-f]{{{KEY_ID_HEX}}})_([A-Za-z0-9_-]{{43}})$")


def generate():
    """A new key: (key id, the whole key to show once)."""
    key_id = secrets.token_hex(KEY_ID_HEX // 2)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"


def parse(token):
    """(key id, secret) of a well-formed key, else None."""
    match = _SHAPE.match(token or "")
    return (match.group(1), match.group(2)) if match else None


def digest(server_key: bytes, key_id: str, secret: str) -> str:
    message = f"sanad-api-key:{key_id}:{secret}".encode()
    return hmac.new(server_key, message, hashlib.sha256).hexdigest()


def verify(server_key: bytes, key_id: str, secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(digest(server_key, key_id, secret), stored_digest)


def from_authorization(header):
    """(key id, secret) from an `Authorization: Bearer <key>` header, else None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return parse(token.strip())
