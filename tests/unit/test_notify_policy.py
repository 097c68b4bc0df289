"""Webhook delivery policy: when to retry, when to stop, when to disable an endpoint."""
import random as random_module
from datetime import timedelta

import pytest

from services.notify import policy
from services.notify.policy import Result, is_retryable, is_success, next_attempt_at, outcome, retry_after_seconds

# The Standard Webhooks schedule, written out here rather than read from the module under test.
SCHEDULE_SECONDS = (5, 300, 1800, 7200, 18000, 36000, 36000)
LAST_ATTEMPT = 8
DAY = 24 * 3600


def no_jitter():
    return 0.5


def failure(status_code=503, error=None, retry_after=None):
    return Result(status_code=status_code, error=error, retry_after=retry_after)


def _http_date(moment):
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


# The schedule

@pytest.mark.parametrize("attempt,seconds", list(enumerate(SCHEDULE_SECONDS, start=1)))
def test_retry_after_each_attempt_follows_the_standard_webhooks_schedule(now, attempt, seconds):
    assert next_attempt_at(failure(), attempt, now, no_jitter) == now + timedelta(seconds=seconds)


def test_there_are_eight_attempts_in_all(now):
    attempts = 1
    while next_attempt_at(failure(), attempts, now, no_jitter) is not None:
        attempts += 1
    assert attempts == LAST_ATTEMPT == policy.MAX_ATTEMPTS


def test_the_last_attempt_gives_no_next_time_even_when_retryable_or_asked_to_retry(now):
    assert next_attempt_at(failure(), LAST_ATTEMPT, now, no_jitter) is None
    assert next_attempt_at(failure(429, retry_after="10"), LAST_ATTEMPT, now, no_jitter) is None
    assert next_attempt_at(failure(None, "timeout"), LAST_ATTEMPT + 1, now, no_jitter) is None


def test_the_whole_schedule_spans_about_a_day_and_a_half(now):
    total = sum(
        (next_attempt_at(failure(), attempt, now, no_jitter) - now).total_seconds()
        for attempt in range(1, LAST_ATTEMPT)
    )
    assert total == sum(SCHEDULE_SECONDS) == 99305


# Jitter

@pytest.mark.parametrize("attempt", range(1, LAST_ATTEMPT))
def test_jitter_at_its_extremes_is_ten_percent_either_way(now, attempt):
    base = SCHEDULE_SECONDS[attempt - 1]
    earliest = next_attempt_at(failure(), attempt, now, lambda: 0.0) - now
    latest = next_attempt_at(failure(), attempt, now, lambda: 1.0) - now
    assert earliest.total_seconds() == pytest.approx(base * 0.9)
    assert latest.total_seconds() == pytest.approx(base * 1.1)


def test_jittered_delays_stay_within_ten_percent_and_actually_vary(now):
    generator = random_module.Random(20240310)
    delays = [
        (next_attempt_at(failure(), 3, now, generator.random) - now).total_seconds() for _ in range(500)
    ]
    assert all(1800 * 0.9 <= delay <= 1800 * 1.1 for delay in delays)
    assert min(delays) < 1800 * 0.95 and max(delays) > 1800 * 1.05


def test_jitter_uses_the_injected_random_once_per_decision(now):
    calls = []

    def counting_random():
        calls.append(1)
        return 0.25

    when = next_attempt_at(failure(), 2, now, counting_random)
    assert calls == [1]
    assert when == now + timedelta(seconds=300 * 0.95)


# Retry-After

def test_retry_after_in_seconds_longer_than_the_schedule_wins(now):
    assert next_attempt_at(failure(429, retry_after="120"), 1, now, no_jitter) == now + timedelta(seconds=120)


def test_retry_after_shorter_than_the_schedule_is_ignored(now):
    assert next_attempt_at(failure(503, retry_after="60"), 2, now, no_jitter) == now + timedelta(seconds=300)


def test_retry_after_as_an_http_date_is_counted_from_now(now):
    header = _http_date(now + timedelta(minutes=10))
    assert retry_after_seconds(header, now) == 600
    assert next_attempt_at(failure(503, retry_after=header), 1, now, no_jitter) == now + timedelta(minutes=10)


def test_retry_after_http_date_in_the_past_counts_as_zero_and_the_schedule_applies(now):
    header = _http_date(now - timedelta(hours=1))
    assert retry_after_seconds(header, now) == 0
    assert next_attempt_at(failure(503, retry_after=header), 1, now, no_jitter) == now + timedelta(seconds=5)


@pytest.mark.parametrize("header", ["999999999", " 999999 "])
def test_retry_after_in_seconds_is_capped_at_a_day(now, header):
    assert retry_after_seconds(header, now) == DAY
    assert next_attempt_at(failure(429, retry_after=header), 1, now, no_jitter) == now + timedelta(days=1)


def test_retry_after_http_date_far_ahead_is_capped_at_a_day(now):
    header = _http_date(now + timedelta(days=30))
    assert retry_after_seconds(header, now) == DAY
    assert next_attempt_at(failure(503, retry_after=header), 1, now, no_jitter) == now + timedelta(days=1)


def test_retry_after_with_surrounding_whitespace_is_read(now):
    assert retry_after_seconds("  120 ", now) == 120


@pytest.mark.parametrize("header", [None, "", "soon", "-5", "1.5", "Mon, 99 Foo 2024",
                                    "Sun, 10 Mar 2024 09:40:00 -0000"],
                         ids=["absent", "empty", "word", "negative", "fraction", "broken-date",
                              "date-without-known-zone"])
def test_absent_or_invalid_retry_after_is_ignored_and_the_schedule_applies(now, header):
    assert retry_after_seconds(header, now) is None
    assert next_attempt_at(failure(503, retry_after=header), 1, now, no_jitter) == now + timedelta(seconds=5)


@pytest.mark.parametrize("header", ["\u00b2", "9" * 5000], ids=["superscript-two", "5000-digits"])
def test_a_partners_absurd_retry_after_never_breaks_the_retry_schedule(now, header):
    when = next_attempt_at(failure(503, retry_after=header), 1, now, no_jitter)
    assert now + timedelta(seconds=5) <= when <= now + timedelta(days=1)


def test_retry_after_on_an_answer_that_is_not_retried_schedules_nothing(now):
    assert next_attempt_at(failure(400, retry_after="30"), 1, now, no_jitter) is None


# What is success, what is retried, what stops

@pytest.mark.parametrize("status_code", [200, 201, 202, 204, 299])
def test_any_2xx_is_success_and_schedules_nothing(now, status_code):
    result = failure(status_code)
    assert is_success(result)
    assert next_attempt_at(result, 1, now, no_jitter) is None
    assert outcome(result, None) == "delivered"


@pytest.mark.parametrize("status_code", [100, 199, 300, 302, 400, 500])
def test_status_outside_2xx_is_not_success(status_code):
    assert not is_success(failure(status_code))


@pytest.mark.parametrize("result", [
    failure(429), failure(500), failure(502), failure(503), failure(504), failure(599),
    failure(None, "timeout"), failure(None, "connection_error"),
], ids=["429", "500", "502", "503", "504", "599", "timeout", "connection_error"])
def test_rate_limits_server_errors_timeouts_and_connection_errors_are_retried(now, result):
    assert is_retryable(result)
    assert next_attempt_at(result, 1, now, no_jitter) == now + timedelta(seconds=5)
    assert outcome(result, next_attempt_at(result, 1, now, no_jitter)) == "retrying"


@pytest.mark.parametrize("result", [
    failure(400), failure(401), failure(403), failure(404), failure(408), failure(410), failure(413),
    failure(422), failure(301, "redirect_refused"), failure(308, "redirect_refused"),
    failure(None, "tls_error"), failure(None, "redirect_refused"), failure(None, "request_error"),
    failure(None, "endpoint_disabled"), failure(None, None),
], ids=["400", "401", "403", "404", "408", "410", "413", "422", "301-redirect", "308-redirect", "tls_error",
        "redirect_refused", "request_error", "endpoint_disabled", "no-answer-no-error"])
def test_other_answers_will_not_change_by_asking_again_so_the_delivery_stops(now, result):
    assert not is_retryable(result)
    assert next_attempt_at(result, 1, now, no_jitter) is None
    assert outcome(result, None) == "failed"


def test_outcome_is_retrying_only_while_a_next_time_exists(now):
    assert outcome(failure(503), now + timedelta(seconds=5)) == "retrying"
    assert outcome(failure(503), None) == "failed"


def test_outcome_names_are_those_the_delivery_attempted_contract_accepts(now):
    from sanad.contracts.events import DeliveryAttemptedV1

    names = {
        outcome(failure(200), None),
        outcome(failure(503), next_attempt_at(failure(503), 1, now, no_jitter)),
        outcome(failure(503), next_attempt_at(failure(503), LAST_ATTEMPT, now, no_jitter)),
    }
    assert names == {"delivered", "retrying", "failed"}
    assert set(DeliveryAttemptedV1().fields["outcome"].validate.choices) == names


@pytest.mark.parametrize("error", ["url_refused", "no_endpoint", "no_secret"])
def test_a_refused_url_or_a_missing_endpoint_or_secret_stops_the_delivery(now, error):
    assert next_attempt_at(failure(None, error), 1, now, no_jitter) is None


# A shorter schedule, as the integration tests configure through the environment

def test_a_configured_schedule_replaces_the_standard_one_and_sets_the_number_of_attempts(now):
    short = policy.RetryPolicy(delays=(0.2, 0.5))
    assert short.max_attempts == 3
    assert next_attempt_at(failure(), 1, now, no_jitter, short) == now + timedelta(seconds=0.2)
    assert next_attempt_at(failure(), 2, now, no_jitter, short) == now + timedelta(seconds=0.5)
    assert next_attempt_at(failure(), 3, now, no_jitter, short) is None


def test_retry_after_still_wins_over_a_configured_schedule(now):
    short = policy.RetryPolicy(delays=(0.2,))
    assert next_attempt_at(failure(429, retry_after="2"), 1, now, no_jitter, short) == now + timedelta(seconds=2)


# An endpoint that keeps failing

def test_an_endpoint_is_disabled_at_the_threshold_of_exhausted_deliveries_in_a_row():
    assert not policy.should_disable(policy.DISABLE_AFTER_EXHAUSTED - 1)
    assert policy.should_disable(policy.DISABLE_AFTER_EXHAUSTED)
    assert policy.should_disable(5, threshold=5) and not policy.should_disable(4, threshold=5)


def test_only_410_gone_disables_an_endpoint_at_once():
    assert policy.is_gone(failure(410))
    assert not any(policy.is_gone(failure(code)) for code in (400, 404, 429, 500, 503))
    assert not policy.is_gone(failure(None, "connection_error"))


@pytest.mark.parametrize("result,summary", [
    (failure(503), "status 503"), (failure(None, "timeout"), "timeout"), (failure(None, None), "unknown"),
])
def test_a_failure_is_summed_up_as_a_code_never_the_partners_words(result, summary):
    assert policy.failure_summary(result) == summary
