"""Notify's settings, read from the environment. Pure: the environment is handed in.

Defaults are the production schedule and limits; the integration tests shorten the schedule and the
timeouts through these variables instead of sleeping for minutes. Private and loopback webhook addresses
are refused outside development unless SANAD_ALLOW_PRIVATE_WEBHOOKS=1; in development (where receivers
listen on loopback) they are allowed unless SANAD_ALLOW_PRIVATE_WEBHOOKS=0.
"""
from dataclasses import dataclass

from sanad import settings as sanad_settings
from services.notify.policy import DISABLE_AFTER_EXHAUSTED, STANDARD, RetryPolicy
from services.notify.urls import UrlPolicy


@dataclass(frozen=True)
class NotifySettings:
    public_url: str = sanad_settings.DEFAULT_PUBLIC_URL  # where partners fetch details through the partner API
    urls: UrlPolicy = UrlPolicy(require_https=False, allow_private=False)
    retry: RetryPolicy = STANDARD
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    attempt_deadline: float = 23.0            # one attempt, connection to last byte read, never longer
    lease_seconds: float = 60.0               # a claimed delivery is its worker's for this long
    # Attempts in flight per process, and requests open to any one endpoint. An endpoint holds at most
    # twice its requests (held_per_endpoint), so it takes five slow partners at once to fill the pool, as
    # it did with 20 attempts when an endpoint held only its requests.
    concurrency: int = 40
    per_endpoint: int = 4
    disable_after: int = DISABLE_AFTER_EXHAUSTED

    @property
    def held_per_endpoint(self) -> int:
        """Attempts one endpoint may hold in a process: its requests open, and as many claimed ahead to
        follow them, so a request ending never waits for a claim's round trip to PostgreSQL. A claimed
        attempt waits for about one round of its endpoint's requests; one left with too little of its
        lease is not sent (handlers.attempt)."""
        return 2 * self.per_endpoint


def from_environment(environ) -> NotifySettings:
    common = sanad_settings.from_environment(environ)
    read_timeout = _positive(environ, "SANAD_WEBHOOK_TIMEOUT", 10.0)
    connect_timeout = min(3.0, read_timeout)
    deadline = connect_timeout + 2 * read_timeout
    settings = NotifySettings(
        public_url=common.public_url,
        urls=UrlPolicy(require_https=not common.is_development,
                       allow_private=_allow_private(environ.get("SANAD_ALLOW_PRIVATE_WEBHOOKS"),
                                                   common.is_development)),
        retry=_retry_policy(environ.get("SANAD_WEBHOOK_RETRY_DELAYS")),
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        attempt_deadline=deadline,
        lease_seconds=_positive(environ, "SANAD_WEBHOOK_LEASE_SECONDS", max(60.0, 2 * deadline)),
        concurrency=int(_positive(environ, "SANAD_WEBHOOK_CONCURRENCY", 40)),
        per_endpoint=int(_positive(environ, "SANAD_WEBHOOK_PER_ENDPOINT", 4)),
        disable_after=int(_positive(environ, "SANAD_WEBHOOK_DISABLE_AFTER", DISABLE_AFTER_EXHAUSTED)),
    )
    if settings.lease_seconds <= settings.attempt_deadline:
        # A lease shorter than an attempt would let a second worker send what the first is still sending.
        raise ValueError("SANAD_WEBHOOK_LEASE_SECONDS must exceed the attempt deadline "
                         f"({settings.attempt_deadline:g} s)")
    if settings.per_endpoint > settings.concurrency:
        raise ValueError("SANAD_WEBHOOK_PER_ENDPOINT must not exceed SANAD_WEBHOOK_CONCURRENCY")
    return settings


def _allow_private(value, development):
    """"1" allows private addresses, "0" refuses them; unset, development allows them (its receivers
    listen on loopback) and anything else refuses them."""
    if value in ("0", "1"):
        return value == "1"
    if value:
        raise ValueError("SANAD_ALLOW_PRIVATE_WEBHOOKS is 1 (allow private addresses) or 0 (refuse them)")
    return development


def _retry_policy(value):
    """"5,300,1800" -> the delays after attempts 1, 2, 3 (so 4 attempts in all); unset -> the standard."""
    if not value:
        return STANDARD
    try:
        delays = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise ValueError("SANAD_WEBHOOK_RETRY_DELAYS is comma-separated seconds, e.g. 5,300,1800") from None
    if not delays or any(delay < 0 for delay in delays):
        raise ValueError("SANAD_WEBHOOK_RETRY_DELAYS holds at least one delay, none negative")
    return RetryPolicy(delays=delays)


def _positive(environ, name, default):
    value = environ.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number") from None
    if number <= 0:
        raise ValueError(f"{name} must be above zero")
    return number
