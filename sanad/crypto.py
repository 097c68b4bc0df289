"""Encryption of personal fields, at rest and on the broker, and keyed lookup hashes.

Two key rings live in one JSON key file (mode 0600, never committed):
- "data": seals personal fields stored in PostgreSQL (narratives, names, phones, webhook secrets);
- "transport": seals the few personal fields an event must carry across RabbitMQ (the narrative on its
  way to triage), so the broker never holds them in plaintext.
A ring has one primary key that seals and any number of older keys that still open, which is how keys
rotate. "lookup" keys an HMAC that finds repeat callers by phone without decrypting anything.

A sealed value is text: "s1.<key id>.<base64url(nonce || AES-GCM ciphertext)>". The context string is
bound as associated data, so a value copied into another field or another row does not open.
"""
import base64
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT = "s1"
NONCE_BYTES = 12
KEY_BYTES = 32


class SealError(Exception):
    """Raised when a sealed value cannot be opened: unknown key, tampering, or the wrong context."""


def _b64e(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyRing:
    primary: str
    keys: dict  # key id -> raw key bytes

    def seal(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self.keys[self.primary]).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{FORMAT}.{self.primary}.{_b64e(nonce + ciphertext)}"

    def open(self, sealed: str, context: str) -> str:
        try:
            fmt, key_id, payload = sealed.split(".", 2)
            if fmt != FORMAT:
                raise ValueError(fmt)
            raw = _b64d(payload)
            plaintext = AESGCM(self.keys[key_id]).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except Exception as exc:  # any failure means the same thing to the caller: this does not open
            raise SealError("sealed value does not open with this key ring and context") from exc
        return plaintext.decode()

    def seal_optional(self, plaintext, context):
        return None if plaintext is None else self.seal(plaintext, context)

    def open_optional(self, sealed, context):
        return None if sealed is None else self.open(sealed, context)

    def needs_reseal(self, sealed: str) -> bool:
        return sealed.split(".", 2)[1] != self.primary

    def resealed(self, sealed, context):
        """`sealed` under the primary key: the same value if it is already, None stays None. For moving
        stored values onto a new key after `rotated()`, so the old key can be retired."""
        if sealed is None or not self.needs_reseal(sealed):
            return sealed
        return self.seal(self.open(sealed, context), context)

    def rotated(self) -> "KeyRing":
        new_id = f"k{len(self.keys) + 1}-{secrets.token_hex(2)}"
        return KeyRing(primary=new_id, keys={**self.keys, new_id: AESGCM.generate_key(bit_length=256)})

    @classmethod
    def generate(cls) -> "KeyRing":
        return cls(primary="k1", keys={"k1": AESGCM.generate_key(bit_length=256)})

    def to_json(self) -> dict:
        return {"primary": self.primary, "keys": {kid: _b64e(raw) for kid, raw in self.keys.items()}}

    @classmethod
    def from_json(cls, data: dict) -> "KeyRing":
        keys = {kid: _b64d(raw) for kid, raw in data["keys"].items()}
        if data["primary"] not in keys or any(len(raw) != KEY_BYTES for raw in keys.values()):
            raise ValueError("key ring is malformed: primary missing or a key is not 256 bits")
        return cls(primary=data["primary"], keys=keys)


@dataclass(frozen=True)
class Keys:
    data: KeyRing
    transport: KeyRing
    lookup: bytes

    def lookup_hash(self, value: str) -> str:
        """A keyed hash for finding equal values (a caller's phone) without storing them."""
        return hmac.new(self.lookup, value.encode(), hashlib.sha256).hexdigest()

    @classmethod
    def generate(cls) -> "Keys":
        return cls(data=KeyRing.generate(), transport=KeyRing.generate(), lookup=os.urandom(KEY_BYTES))

    def to_json(self) -> dict:
        return {"data": self.data.to_json(), "transport": self.transport.to_json(), "lookup": _b64e(self.lookup)}

    @classmethod
    def from_json(cls, data: dict) -> "Keys":
        return cls(
            data=KeyRing.from_json(data["data"]),
            transport=KeyRing.from_json(data["transport"]),
            lookup=_b64d(data["lookup"]),
        )


def load_keys(path: Path) -> Keys:
    if not path.exists():
        raise FileNotFoundError(f"key file {path} is missing; create it with `sanad keys init`")
    return Keys.from_json(json.loads(path.read_text()))


def write_keys(path: Path, keys: Keys) -> None:
    """Write atomically, the file private (0600) from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # a new file, mode 0600
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(keys.to_json(), handle, indent=2)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def ensure_keys(path: Path) -> bool:
    """Create a key file if there is none. Returns True when one was created."""
    if path.exists():
        return False
    write_keys(path, Keys.generate())
    return True
