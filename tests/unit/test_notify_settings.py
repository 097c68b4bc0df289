"""Notify's settings from the environment: production defaults, a shorter schedule for tests, and
refusals for settings that would break its guarantees."""
import pytest

from services.notify import policy
from services.notify.settings import NotifySettings, from_environment


def test_with_nothing_set_the_standard_schedule_and_limits_apply_and_private_addresses_are_refused():
    settings = from_environment({})
    assert settings == NotifySettings()
    assert settings.retry == policy.STANDARD
    assert not settings.urls.allow_private
    assert settings.lease_seconds > settings.attempt_deadline


def test_outside_development_https_is_required():
    assert from_environment({"SANAD_ENV": "production"}).urls.require_https
    assert not from_environment({"SANAD_ENV": "development"}).urls.require_https


def test_private_addresses_are_allowed_only_by_the_explicit_switch():
    assert from_environment({"SANAD_ALLOW_PRIVATE_WEBHOOKS": "1"}).urls.allow_private
    assert not from_environment({"SANAD_ALLOW_PRIVATE_WEBHOOKS": "yes"}).urls.allow_private


def test_the_details_link_base_comes_from_the_public_url():
    assert from_environment({"SANAD_PUBLIC_URL": "https://sanad.example.org/"}).public_url == "https://sanad.example.org"


def test_tests_shorten_the_schedule_the_timeouts_and_the_lease_through_the_environment():
    settings = from_environment({"SANAD_WEBHOOK_RETRY_DELAYS": "0.2,0.5,1", "SANAD_WEBHOOK_TIMEOUT": "1",
                                 "SANAD_WEBHOOK_LEASE_SECONDS": "5", "SANAD_WEBHOOK_DISABLE_AFTER": "2"})
    assert settings.retry.delays == (0.2, 0.5, 1.0) and settings.retry.max_attempts == 4
    assert (settings.read_timeout, settings.connect_timeout, settings.attempt_deadline) == (1.0, 1.0, 3.0)
    assert (settings.lease_seconds, settings.disable_after) == (5.0, 2)


@pytest.mark.parametrize("environ", [
    {"SANAD_WEBHOOK_RETRY_DELAYS": "5,soon"},
    {"SANAD_WEBHOOK_RETRY_DELAYS": "5,-1"},
    {"SANAD_WEBHOOK_TIMEOUT": "0"},
    {"SANAD_WEBHOOK_CONCURRENCY": "many"},
    {"SANAD_WEBHOOK_TIMEOUT": "10", "SANAD_WEBHOOK_LEASE_SECONDS": "20"},
    {"SANAD_WEBHOOK_CONCURRENCY": "2", "SANAD_WEBHOOK_PER_ENDPOINT": "3"},
], ids=["word-in-schedule", "negative-delay", "zero-timeout", "word-for-number", "lease-shorter-than-attempt",
        "per-endpoint-above-pool"])
def test_settings_that_would_break_a_guarantee_are_refused_at_start(environ):
    with pytest.raises(ValueError):
        from_environment(environ)
