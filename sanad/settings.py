"""Process-wide settings read from the environment, in one place.

Services read them in their dependency providers' setup(); the CLI and the launcher read them directly.
"""
import ipaddress
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/sanad"
DEFAULT_AMQP_URI = "pyamqp://guest:guest@127.0.0.1:5672/"
DEFAULT_KEYS_FILE = ".sanad/keys.json"
# Where partners reach the partner API (the base of each webhook's details_url): in production the public
# address whose /partner/ a proxy routes to the referral processes; without one, referral's own port.
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8002"


@dataclass(frozen=True)
class Settings:
    database_url: str
    amqp_uri: str
    keys_file: Path
    environment: str  # "development" or "production"
    public_url: str
    # The networks of the reverse proxies in front of the HTTP services (SANAD_TRUSTED_PROXIES: addresses
    # or CIDR blocks, comma separated; none by default). A request from one of them is from the client its
    # X-Forwarded-For names (sanad.platform.http.client_address); from anywhere else, that header is ignored.
    trusted_proxies: tuple = ()

    @property
    def is_development(self) -> bool:
        return self.environment == "development"


def from_environment(environ=os.environ) -> Settings:
    return Settings(
        database_url=environ.get("SANAD_DATABASE_URL", DEFAULT_DATABASE_URL),
        amqp_uri=environ.get("SANAD_AMQP_URI", DEFAULT_AMQP_URI),
        keys_file=Path(environ.get("SANAD_KEYS_FILE", DEFAULT_KEYS_FILE)),
        # Unset means production: a deployment that forgets the variable keeps Secure cookies, https-only
        # webhooks and no private webhook addresses. `make run` and the tests ask for development.
        environment=environ.get("SANAD_ENV", "production"),
        public_url=environ.get("SANAD_PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/"),
        trusted_proxies=trusted_proxies(environ),
    )


def trusted_proxies(environ=os.environ) -> tuple:
    """Settings.trusted_proxies alone: read at every request that needs it, so one lookup, parsed once."""
    return _networks(environ.get("SANAD_TRUSTED_PROXIES", ""))


@lru_cache(maxsize=8)
def _networks(value) -> tuple:
    try:
        return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise ValueError(f"SANAD_TRUSTED_PROXIES: {exc}") from None
