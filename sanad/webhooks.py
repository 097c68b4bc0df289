"""Standard Webhooks signing (https://www.standardwebhooks.com/), pure functions.

The signed content is "<webhook-id>.<webhook-timestamp>.<body>", signed with HMAC-SHA256 under the
base64-decoded part of a "whsec_" secret. During secret rotation a message carries one signature per
active secret, separated by spaces, so partners verifying with either secret accept it.
"""
import base64
import hashlib
import hmac
import os

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(os.urandom(32)).decode()


def secret_bytes(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("webhook secret must start with whsec_")
    raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    if len(raw) < MIN_SECRET_BYTES:
        raise ValueError(f"webhook secret must hold at least {MIN_SECRET_BYTES} bytes")
    return raw


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(secrets: list[str], webhook_id: str, timestamp: int, body: bytes) -> dict:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(sign(secret, webhook_id, timestamp, body) for secret in secrets),
        "content-type": "application/json",
    }
