"""services/intake/callers.py: which credentials vouch for reading a new case before its caller's check."""
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from services.intake import auth
from services.intake.callers import RecentCallers, presented


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def request(headers=None):
    return Request(EnvironBuilder(method="POST", path="/api/cases", headers=headers or {}).get_environ())


def test_a_credential_vouches_for_the_seconds_after_it_was_allowed_and_no_longer():
    clock = Clock()
    callers = RecentCallers(seconds=60, clock=clock)
    callers.remember("token:snd_abc")
    clock.now += 59.9
    assert callers.vouch("token:snd_abc")
    clock.now += 0.2
    assert not callers.vouch("token:snd_abc")


def test_a_credential_never_allowed_or_refused_since_vouches_for_nothing():
    callers = RecentCallers(clock=Clock())
    callers.remember("session:cookie-1")
    callers.forget("session:cookie-1")
    assert not callers.vouch("session:cookie-1")
    assert not callers.vouch("session:cookie-2")
    assert not callers.vouch(None)


def test_the_memory_keeps_the_most_recently_allowed_credentials_and_only_their_digests():
    callers = RecentCallers(size=2, clock=Clock())
    for credential in ("token:a", "token:b", "token:a", "token:c"):
        callers.remember(credential)
    assert [callers.vouch(c) for c in ("token:a", "token:b", "token:c")] == [True, False, True]
    assert set(callers._until) == {auth.digest("token:a"), auth.digest("token:c")}


def test_the_credential_presented_is_the_one_intake_checks_a_bearer_token_first():
    cookie = f"{auth.SESSION_COOKIE}=cookie-1"
    assert presented(request({"Authorization": "Bearer snd_abc ", "Cookie": cookie})) == "token:snd_abc"
    assert presented(request({"Cookie": cookie})) == "session:cookie-1"
    assert presented(request({"Authorization": "Basic eDp5"})) is None
    assert presented(request()) is None
