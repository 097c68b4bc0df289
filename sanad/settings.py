"""Process-wide settings read from the environment, in one place.

Services read them in their dependency providers' setup(); the CLI and the launcher read them directly.
"""
import os
from dataclasses import dataclass
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
    )
