"""The alert rules in deploy/prometheus, checked and unit-tested by Debian's promtool.

promtool evaluates the rules on synthetic series (deploy/prometheus/tests/*.yml), so these tests stay in
the unit tier: a subprocess and files, no network. scripts/setup.sh installs promtool for `make test`.
"""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "alerts.yml"
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"
SEVERITIES = {"page", "warning"}


def promtool(*args):
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not on PATH. scripts/setup.sh installs it (Debian package `prometheus`); "
                    "run `scripts/setup.sh test`, or `apt-get install --no-install-recommends prometheus`.")
    return subprocess.run([binary, *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def alert_rules():
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def alerts_shown_firing():
    shown = set()
    for path in RULE_TESTS:
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for case in test.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    shown.add(case["alertname"])
    return shown


def test_alert_rules_pass_promtool_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_alert_rules_pass_their_promtool_unit_tests():
    assert RULE_TESTS, "no rule tests in deploy/prometheus/tests"
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_by_a_unit_test():
    names = {rule["alert"] for rule in alert_rules()}
    assert names, "alerts.yml defines no alert"
    assert names <= alerts_shown_firing(), f"never shown firing: {sorted(names - alerts_shown_firing())}"


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_severity_an_english_and_arabic_summary_and_a_runbook(rule):
    severity = rule["labels"]["severity"]
    assert severity in SEVERITIES or "{{" in severity, f"unknown severity {severity!r}"
    annotations = rule["annotations"]
    assert annotations["summary"] and annotations["description"]
    assert any("\u0600" <= ch <= "\u06ff" for ch in annotations["summary_ar"]), "summary_ar must be Arabic"
    assert annotations["runbook"].startswith("docs/operations.md#")


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_runbook_link_names_a_section_of_the_operations_guide(rule):
    anchor = rule["annotations"]["runbook"].partition("#")[2]
    headings = [line.lstrip("#").strip() for line in OPERATIONS_DOC.read_text(encoding="utf-8").splitlines()
                if line.startswith("#")]
    anchors = {heading.lower().replace(" ", "-") for heading in headings}
    assert anchor in anchors, f"docs/operations.md has no heading for #{anchor}"
