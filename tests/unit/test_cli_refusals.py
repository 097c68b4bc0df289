"""Operator commands refuse what they cannot mean before touching anything: exit 2, naming the option
(sanad.cli.CommandError), as the other refusals do. Each refusal here comes before any database or key
file is opened, so this stays in the unit tier."""
import pytest

from sanad import cli

PARTNER = "3f0c1d52-4a4e-4c55-9d55-0d6c7f1f3a10"


@pytest.mark.parametrize("argv,option", [
    (["referral", "policy", "--ack-seconds", "60", "--max-reoffers", "1"], "level"),
    (["referral", "policy", "--ack-seconds", "60"], "level"),
    (["webhooks", "rotate-secret", "--endpoint", PARTNER, "--overlap-hours", "-48"], "overlap-hours"),
    (["webhooks", "rotate-secret", "--endpoint", PARTNER, "--overlap-hours", "nan"], "overlap-hours"),
    (["webhooks", "rotate-secret", "--endpoint", PARTNER, "--overlap-hours", "inf"], "overlap-hours"),
    (["partner", "rotate-key", "Nasiriyah Women's Centre", "--grace-minutes", "-5"], "grace-minutes"),
], ids=["policy-without-level", "policy-half-without-level", "negative-overlap", "nan-overlap",
        "infinite-overlap", "negative-grace"])
def test_a_command_that_cannot_mean_what_it_says_is_refused_naming_the_option(argv, option, capsys,
                                                                              monkeypatch):
    monkeypatch.setenv("SANAD_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/unreachable")
    monkeypatch.setenv("SANAD_KEYS_FILE", "/nonexistent/keys.json")
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith(f"sanad: {option}: ")
