"""Notify's settings from the environment: production defaults, a shorter schedule for tests, and
refusals for settings that would break its guarantees."""
import pytest

from services.notify import policy
from services.notify.settings import NotifySettings, from_environment


def test_with_nothing_set_the_standard_schedule_and_limits_apply():
    settings = from_environment({})
    assert settings.retry == policy.STANDARD
    assert settings.lease_seconds > settings.attempt_deadline
    assert (settings.concurrency, settings.per_endpoint) == (NotifySettings().concurrency,
                                                             NotifySettings().per_endpoint)


def test_outside_development_https_is_required_and_private_addresses_refused():
    production = from_environment({"SANAD_ENV": "production"})
    assert production.urls.require_https and not production.urls.allow_private


def test_with_sanad_env_unset_webhooks_are_held_to_production_s_rules():
    unset = from_environment({})
    assert unset.urls.require_https and not unset.urls.allow_private, "a forgotten variable fails closed"


def test_in_development_plain_http_and_loopback_receivers_are_accepted():
    development = from_environment({"SANAD_ENV": "development"})
    assert not development.urls.require_https and development.urls.allow_private


def test_the_explicit_switch_wins_either_way():
    assert from_environment({"SANAD_ENV": "production", "SANAD_ALLOW_PRIVATE_WEBHOOKS": "1"}).urls.allow_private
    assert not from_environment({"SANAD_ENV": "development",
                                 "SANAD_ALLOW_PRIVATE_WEBHOOKS": "0"}).urls.allow_private


def test_the_details_link_base_comes_from_the_public_url():
    settings = from_environment({"SANAD_PUBLIC_URL": "https://sanad.example.org/"})
    assert settings.public_url == "https://sanad.example.org"


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
    {"SANAD_ALLOW_PRIVATE_WEBHOOKS": "yes"},
], ids=["word-in-schedule", "negative-delay", "zero-timeout", "word-for-number", "lease-shorter-than-attempt",
        "per-endpoint-above-pool", "unclear-private-switch"])
def test_settings_that_would_break_a_guarantee_are_refused_at_start(environ):
    with pytest.raises(ValueError):
        from_environment(environ)
