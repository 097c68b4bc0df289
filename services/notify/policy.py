"""Webhook delivery policy as data, and the pure decisions made from it.

The schedule follows the Standard Webhooks recommendation: immediately, then 5 s, 5 min, 30 min, 2 h,
5 h, 10 h and 10 h again, each with +-10% jitter so retries to a recovering partner do not arrive in a
herd. 2xx is success. Timeouts, connection errors, 429 and 5xx are retried (Retry-After, when longer,
wins); any other answer (other 4xx, a TLS failure, a redirect, a refused URL) will not change by asking
again, so the delivery stops there. A partner that answers 410 Gone has said it wants no more webhooks
from us: as the Standard Webhooks specification asks, its endpoint is disabled at once.
"""
import re
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parsedate_to_datetime

from sanad.contracts.vocabulary import ENDPOINT_GONE

RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 36000)  # seconds after attempts 1, 2, ...
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
JITTER = 0.1
MAX_RETRY_AFTER = 24 * 3600
DELTA_SECONDS = re.compile(r"[0-9]{1,10}")  # ASCII digits only: str.isdigit() also admits "²"

# An endpoint whose deliveries were exhausted this many times in a row, with no success in between, is
# disabled: by then it has failed for a day and a half (or refused outright, three times).
DISABLE_AFTER_EXHAUSTED = 3


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again: `delays[n - 1]` seconds after attempt n, +-`jitter` of it."""
    delays: tuple = RETRY_DELAYS
    jitter: float = JITTER

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1


STANDARD = RetryPolicy()


@dataclass(frozen=True)
class Result:
    """What one attempt came to."""
    status_code: int | None  # None when no HTTP answer came back
    error: str | None        # "timeout", "connection_error", "tls_error", "redirect_refused", ...
    retry_after: str | None = None


def is_success(result: Result) -> bool:
    return result.status_code is not None and 200 <= result.status_code < 300


def is_retryable(result: Result) -> bool:
    if result.status_code is None:
        return result.error in ("timeout", "connection_error")
    return result.status_code == 429 or result.status_code >= 500


def retry_after_seconds(value, now):
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if DELTA_SECONDS.fullmatch(value):
        return min(int(value), MAX_RETRY_AFTER)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, min((moment - now).total_seconds(), MAX_RETRY_AFTER))


def next_attempt_at(result: Result, attempt: int, now, random, policy: RetryPolicy = STANDARD):
    """When to try again after `attempt` (1-based within its round) came to `result`; None when there is
    no next try."""
    if is_success(result) or not is_retryable(result) or attempt >= policy.max_attempts:
        return None
    delay = policy.delays[attempt - 1] * (1 + policy.jitter * (2 * random() - 1))
    requested = retry_after_seconds(result.retry_after, now)
    if requested is not None:
        delay = max(delay, requested)
    return now + timedelta(seconds=delay)


def outcome(result: Result, next_at) -> str:
    if is_success(result):
        return "delivered"
    return "retrying" if next_at is not None else "failed"


def should_disable(consecutive_exhausted: int, threshold: int = DISABLE_AFTER_EXHAUSTED) -> bool:
    return consecutive_exhausted >= threshold


def is_gone(result: Result) -> bool:
    """The endpoint answered 410 Gone: it wants no more webhooks, and its endpoint is disabled at once."""
    return result.status_code == ENDPOINT_GONE


def failure_summary(result: Result) -> str:
    """A short code for why the last attempt failed, for dead letters and alerts (never the partner's words)."""
    if result.status_code is not None:
        return f"status {result.status_code}"
    return result.error or "unknown"
