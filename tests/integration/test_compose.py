"""The docker-compose stack, checked without a Docker engine.

`docker-compose config` (Debian's docker-compose 1.29) validates docker-compose.yml against the Compose
schema and prints it resolved: anchors merged, defaults applied, paths made absolute. The tests read that
output rather than the raw file, so they see what Compose would actually run. The files the stack mounts
(Prometheus scrape config, Grafana provisioning and dashboards) are checked against it too.

Needs no broker, database or fixture: only the docker-compose binary, and promtool for the Prometheus files.
"""

import functools
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from sanad.launcher import BY_NAME, PROCESSES

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "deploy" / "grafana"

# Each Sanad process, as `sanad run` starts it: its port and the exact `nameko run` it is.
SANAD_SERVICES = {p.name: (8000 + p.port_offset, p.config, p.target) for p in PROCESSES}
SUPPORT_SERVICES = {"rabbitmq", "postgres", "prometheus", "grafana", "migrate"}
SANAD_ENVIRONMENT = {
    "SANAD_AMQP_URI", "SANAD_DATABASE_URL", "SANAD_WEB_ADDRESS", "SANAD_KEYS_FILE", "SANAD_ENV", "SANAD_LOG_LEVEL",
}
PUBLISHED_PORTS = {8000, 8002, 15672, 3000, 9090}
DASHBOARD_METRICS = {
    "sanad_cases_received_total",
    "sanad_cases_triaged_total",
    "sanad_webhook_deliveries_total",
    "sanad_outbox_pending",
    "up",
}


def _run(argv, **kwargs):
    # docker-compose is a Python program of its own; keep this venv's settings out of it.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run(argv, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, **kwargs)


@functools.cache
def resolved_compose():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not on PATH. The project's set-up script installs it "
            "(Debian package `docker-compose`, 1.29); run the set-up, or `apt-get install docker-compose`."
        )
    # An empty env file keeps a developer's .env (real passwords, other settings) out of the test.
    with tempfile.NamedTemporaryFile("w", suffix=".env") as empty_env_file:
        result = _run([binary, "--env-file", empty_env_file.name, "-f", str(COMPOSE_FILE), "config"])
    assert result.returncode == 0, f"docker-compose rejected {COMPOSE_FILE.name}:\n{result.stderr}"
    return yaml.safe_load(result.stdout)


def services():
    return resolved_compose()["services"]


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def host_source_mounted_at(service, target):
    """The host directory a service bind-mounts at `target`, as `docker-compose config` resolved it."""
    for volume in services()[service].get("volumes", []):
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target:
            return Path(source).resolve()
    raise AssertionError(f"{service} mounts nothing at {target}")


def parse_volume(volume):
    """(source, target, mode) from the short syntax docker-compose config prints."""
    parts = volume.split(":")
    mode = parts[2] if len(parts) > 2 else "rw"
    return parts[0], parts[1], mode


def parse_port(port):
    """(host ip, published port) from a short or long port entry."""
    if isinstance(port, dict):
        return port.get("host_ip", ""), int(port["published"])
    spec = str(port).split("/")[0]
    pieces = spec.rsplit(":", 2)
    if len(pieces) < 3:
        return "", int(pieces[0])
    return pieces[0], int(pieces[1])


PROMQL_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
PROMQL_WORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right",
    "inf", "nan",
}


def metric_names(expr):
    """The metric names a PromQL expression selects: identifiers that are not functions, keywords,
    grouping labels, label matchers, ranges, strings or Grafana variables."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\$\w+", "", text)
    text = PROMQL_GROUPING.sub("", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed_by = text[match.end():].lstrip()[:1]
        if followed_by != "(" and match.group().lower() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def dashboard_panels(panels):
    for panel in panels:
        if panel.get("type") == "row":
            yield from dashboard_panels(panel.get("panels", []))
        else:
            yield panel


def dashboard_files():
    return sorted((GRAFANA_DIR / "dashboards").glob("*.json"))


def test_compose_file_is_valid_and_defines_every_container():
    missing = (set(SANAD_SERVICES) | SUPPORT_SERVICES) - set(services())
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(SANAD_SERVICES))
def test_sanad_service_starts_only_after_migrate_succeeded_and_broker_and_database_are_healthy(name):
    depends_on = services()[name].get("depends_on", {})
    assert depends_on.get("migrate", {}).get("condition") == "service_completed_successfully"
    assert depends_on.get("rabbitmq", {}).get("condition") == "service_healthy"
    assert depends_on.get("postgres", {}).get("condition") == "service_healthy"


def test_migrate_runs_keys_init_then_migrate_once_broker_and_database_are_healthy():
    migrate = services()["migrate"]
    assert migrate["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    command = " ".join(migrate["command"]) if isinstance(migrate["command"], list) else migrate["command"]
    assert "sanad keys init && sanad migrate" in command
    assert migrate.get("restart", "no") == "no"


@pytest.mark.parametrize("name", sorted(SANAD_SERVICES))
def test_sanad_service_runs_its_nameko_service_with_its_config_and_port(name):
    port, config, module = SANAD_SERVICES[name]
    service = services()[name]
    assert service["command"] == ["nameko", "run", "--config", config, module]
    assert Path(service["build"]["context"]).resolve() == REPO_ROOT
    assert (REPO_ROOT / "Dockerfile").is_file()
    environment = service["environment"]
    assert SANAD_ENVIRONMENT <= set(environment), f"{name} lacks {sorted(SANAD_ENVIRONMENT - set(environment))}"
    assert environment["SANAD_WEB_ADDRESS"] == f"0.0.0.0:{port}"
    assert environment["SANAD_AMQP_URI"].startswith("pyamqp://") and "@rabbitmq:5672/" in environment["SANAD_AMQP_URI"]
    assert environment["SANAD_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in environment["SANAD_DATABASE_URL"]


@pytest.mark.parametrize("name", sorted(SANAD_SERVICES))
def test_cpu_weight_follows_the_lane_as_the_priority_sanad_run_gives_it(name):
    shares = services()[name].get("cpu_shares", 1024)
    expected = {"critical": shares > 1024, "api": shares == 1024, "bulk": shares < 1024}
    assert expected[BY_NAME[name].lane], f"{name}: cpu_shares {shares} for the {BY_NAME[name].lane} lane"


@pytest.mark.parametrize("name", sorted(SANAD_SERVICES))
def test_sanad_service_healthcheck_asks_its_own_readiness_endpoint(name):
    healthcheck = services()[name].get("healthcheck")
    assert healthcheck and not healthcheck.get("disable"), f"{name} has no healthcheck"
    command = " ".join(healthcheck["test"])
    assert "127.0.0.1:{port}/ready" in command and "SANAD_WEB_ADDRESS" in command


def test_rabbitmq_and_postgres_have_healthchecks_their_dependants_can_wait_for():
    assert "rabbitmq-diagnostics" in " ".join(services()["rabbitmq"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services()["postgres"]["healthcheck"]["test"])
    assert any(parse_volume(v)[0] == "postgres-data" for v in services()["postgres"]["volumes"])


def test_key_file_volume_is_shared_read_only_except_for_migrate():
    keys_file = services()["migrate"]["environment"]["SANAD_KEYS_FILE"]

    def keys_mount(name):
        for source, target, mode in map(parse_volume, services()[name].get("volumes", [])):
            if keys_file.startswith(target.rstrip("/") + "/"):
                return source, mode
        raise AssertionError(f"{name} does not mount the directory of {keys_file}")

    volume, mode = keys_mount("migrate")
    assert mode == "rw"
    assert volume in resolved_compose()["volumes"], "the key file must live in a named volume"
    for name in SANAD_SERVICES:
        assert services()[name]["environment"]["SANAD_KEYS_FILE"] == keys_file
        assert keys_mount(name) == (volume, "ro"), f"{name} must mount {volume} read-only"


def test_every_published_port_binds_loopback_only():
    published = set()
    for name, service in services().items():
        for port in service.get("ports", []):
            host_ip, host_port = parse_port(port)
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published.add(host_port)
    assert PUBLISHED_PORTS <= published


def test_a_webhooks_details_link_leads_to_the_partner_api_referral_publishes():
    for name in ("notify", "notify-critical"):
        public_url = services()[name]["environment"]["SANAD_PUBLIC_URL"]
        assert public_url == "http://127.0.0.1:8002", public_url
    assert ("127.0.0.1", 8002) in [parse_port(port) for port in services()["referral"]["ports"]]


def test_passwords_come_from_the_environment_not_the_file():
    raw = COMPOSE_FILE.read_text(encoding="utf-8")
    for variable in ("SANAD_DB_PASSWORD", "SANAD_AMQP_PASSWORD", "SANAD_GRAFANA_PASSWORD"):
        assert "${" + variable + ":-" in raw, f"{variable} is not read from the environment"
    for key in ("POSTGRES_PASSWORD", "RABBITMQ_DEFAULT_PASS", "GF_SECURITY_ADMIN_PASSWORD"):
        values = re.findall(rf"^\s*{key}:\s*(\S+)", raw, flags=re.MULTILINE)
        assert values and all(v.startswith("${") for v in values), f"{key} is hard-coded"


def test_image_runs_as_non_root_and_leaves_secrets_and_local_state_out():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, flags=re.MULTILINE)
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image must end on a non-root USER"
    assert not re.search(r"^(ENV|ARG)\s+\S*(PASSWORD|SECRET|TOKEN)", dockerfile, flags=re.MULTILINE | re.IGNORECASE)
    ignored = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for path in (".venv", ".git", ".sanad", ".env", "test-artifacts", "**/__pycache__"):
        assert path in ignored, f".dockerignore must exclude {path}"


def test_prometheus_scrapes_exactly_the_sanad_processes_on_metrics():
    mounted = host_source_mounted_at("prometheus", "/etc/prometheus")
    assert mounted == PROMETHEUS_DIR
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    scraped = set()
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics", f"job {job['job_name']} scrapes elsewhere"
        assert job.get("scheme", "http") == "http"
        for static in job.get("static_configs", []):
            scraped.update(static["targets"])
    expected = {f"{name}:{port}" for name, (port, _, _) in SANAD_SERVICES.items()}
    assert scraped == expected


def test_prometheus_config_and_its_rule_files_pass_promtool():
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not on PATH. The set-up script installs it (Debian package `prometheus`); "
                    "run `scripts/setup.sh test`, or `apt-get install --no-install-recommends prometheus`.")
    result = _run([promtool, "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_loads_the_alert_rules_from_its_mounted_folder():
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    rule_files = config.get("rule_files", [])
    assert "alerts.yml" in rule_files, "prometheus.yml does not load alerts.yml"
    for name in rule_files:
        # Relative to /etc/prometheus/prometheus.yml in the container, i.e. to the mounted folder.
        assert not name.startswith("/") and (PROMETHEUS_DIR / name).is_file(), f"rule file {name} is not in deploy/prometheus"


def catalogued_metrics():
    """The metric names docs/operations.md lists, exported today or to add."""
    text = (REPO_ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z_:]+)` \|", text, flags=re.MULTILINE))


def alert_expressions():
    groups = load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_expressions():
    for path in dashboard_files():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        for panel in dashboard_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                yield target.get("expr", "")


def test_every_metric_the_alerts_and_dashboards_query_is_in_the_operations_catalogue():
    catalogue = catalogued_metrics()
    assert {"up", "sanad_outbox_pending"} <= catalogue, "the catalogue in docs/operations.md was not found"
    queried = set()
    for expr in [*alert_expressions(), *dashboard_expressions()]:
        queried |= metric_names(expr)
    # A histogram is catalogued by its base name and queried through its _bucket, _sum and _count series.
    bases = {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried}
    assert bases <= catalogue, f"not in docs/operations.md: {sorted(bases - catalogue)}"


def test_grafana_provisions_prometheus_as_the_default_data_source():
    provisioning = host_source_mounted_at("grafana", "/etc/grafana/provisioning")
    assert provisioning == GRAFANA_DIR / "provisioning"
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    prometheus = [d for d in datasources if d["type"] == "prometheus"]
    assert [d["name"] for d in prometheus] == ["Prometheus"]
    assert prometheus[0].get("isDefault") is True
    assert prometheus[0]["url"] == "http://prometheus:9090"


def test_grafana_loads_dashboards_from_the_mounted_repository_folder():
    providers = load_yaml(GRAFANA_DIR / "provisioning" / "dashboards" / "sanad.yml")["providers"]
    paths = {p["options"]["path"] for p in providers if p.get("type", "file") == "file"}
    assert len(paths) == 1
    (path,) = paths
    assert host_source_mounted_at("grafana", path) == GRAFANA_DIR / "dashboards"
    assert dashboard_files(), "no dashboard JSON in deploy/grafana/dashboards"


def test_every_dashboard_panel_queries_a_named_metric_from_the_provisioned_source():
    datasources = load_yaml(GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    known_uids = {d.get("uid") for d in datasources}
    queried = set()
    for path in dashboard_files():
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        assert dashboard.get("uid") and dashboard.get("title"), f"{path.name} needs a uid and a title"
        panels = list(dashboard_panels(dashboard.get("panels", [])))
        assert panels, f"{path.name} has no panels"
        for panel in panels:
            where = f"{path.name}: panel {panel.get('title')!r}"
            targets = panel.get("targets", [])
            assert targets, f"{where} has no query"
            for target in targets:
                expr = target.get("expr", "")
                names = metric_names(expr)
                assert names, f"{where} query {expr!r} names no metric"
                queried |= names
                datasource = target.get("datasource") or panel.get("datasource")
                assert datasource and datasource.get("uid") in known_uids, f"{where} uses an unknown data source"
    assert DASHBOARD_METRICS <= queried, f"no panel shows {sorted(DASHBOARD_METRICS - queried)}"


REQUIRED_ROWS = ("Critical cases", "Partners", "Delivery health", "System health")


def is_arabic(text):
    return any("\u0600" <= ch <= "\u06ff" for ch in text)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.name)
def test_dashboard_has_rows_for_critical_cases_partners_delivery_and_system_health(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    rows = [panel["title"] for panel in dashboard["panels"] if panel.get("type") == "row"]
    for required in REQUIRED_ROWS:
        assert any(title.startswith(required) for title in rows), f"{path.name} has no row for {required}"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.name)
def test_every_dashboard_title_is_short_and_in_english_and_arabic(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    for panel in [*dashboard["panels"], *dashboard_panels(dashboard["panels"])]:
        english, _, arabic = panel["title"].partition(" / ")
        assert english and is_arabic(arabic), f"{panel['title']!r} is not 'English / عربي'"
        assert len(panel["title"]) <= 90, f"{panel['title']!r} is too long for a panel"


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda path: path.name)
def test_dashboard_panels_fit_the_grid_without_overlapping(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    taken = {}
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, f"{panel['title']!r} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']!r} overlaps {taken[(x, y)]!r}"
                taken[(x, y)] = panel["title"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize(
    "expr, names",
    [
        ("sum by (level) (rate(sanad_cases_triaged_total[$__rate_interval])) * 60", {"sanad_cases_triaged_total"}),
        ('up{job=~"intake|triage"}', {"up"}),
        ("sum(rate(x[5m])) / ignoring(outcome) group_left sum(y)", {"x", "y"}),
        ("vector(1)", set()),
    ],
)
def test_metric_name_extraction_ignores_functions_labels_and_ranges(expr, names):
    assert metric_names(expr) == names


def test_the_service_down_alert_and_the_dashboard_watch_every_process():
    processes = {p.name for p in PROCESSES}
    rules = [rule for group in load_yaml(PROMETHEUS_DIR / "alerts.yml")["groups"] for rule in group["rules"]]
    [service_down] = [rule["expr"] for rule in rules if rule.get("alert") == "ServiceDown"]
    watched = [re.search(r'up\{job=~"([^"]+)"\}', service_down)]
    for path in dashboard_files():
        for panel in dashboard_panels(json.loads(path.read_text(encoding="utf-8"))["panels"]):
            watched += [re.search(r'up\{job=~"([^"]+)"\}', target.get("expr", ""))
                        for target in panel.get("targets", [])]
    jobs = [set(found.group(1).split("|")) for found in watched if found]
    assert len(jobs) >= 2, "the ServiceDown rule and the dashboard's panel"
    assert all(named == processes for named in jobs), jobs
