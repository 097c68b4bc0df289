"""The browser tier: real headless Chromium (Debian's package, /usr/bin/chromium) driven by Playwright for
Python, against the six real service processes on a database and RabbitMQ virtual host of this run's own.

This tier runs in a pytest process of its own, without `nameko test`: nameko's eventlet monkey-patching
breaks Playwright's synchronous API (see the Makefile). No browser is downloaded; Playwright drives the
installed one. Screenshots land in test-artifacts/screenshots/ for reviewers.
"""
import os
import shutil
import uuid
from pathlib import Path

import pytest

from sanad.launcher import Stack
from tests.conftest import ARTIFACTS
from tests.integration.conftest import free_port_base, sanad_cli
from tests.support import rabbit

CHROMIUM = os.environ.get("SANAD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
SCREENSHOTS = ARTIFACTS / "screenshots"
PASSWORD = "a long night-shift passphrase"


@pytest.fixture(scope="session")
def browser_env(run_id, make_database, keys_file):
    vhost = f"sanad_test_{run_id}_browser"
    rabbit.create_vhost(vhost)
    env = {
        "SANAD_DATABASE_URL": make_database("browser"),
        "SANAD_AMQP_URI": f"pyamqp://guest:guest@127.0.0.1:5672/{vhost}",
        "SANAD_KEYS_FILE": str(keys_file),
        "SANAD_ENV": "development",
    }
    sanad_cli(env, "migrate")
    yield env
    rabbit.delete_vhost(vhost)


@pytest.fixture(scope="session")
def stack(browser_env):
    running = Stack(env=browser_env, port_base=free_port_base(), log_dir=ARTIFACTS / "logs" / "browser")
    running.start()
    try:
        running.wait_healthy(timeout=90)
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def staff(browser_env):
    """Usernames by role, each with PASSWORD, made with `sanad user add` as an administrator would."""
    made = {}
    for role in ("operator", "supervisor"):
        username = f"{role}-{uuid.uuid4().hex[:6]}"
        sanad_cli(browser_env, "user", "add", username, "--role", role, "--display-name", f"{role.title()} Test",
                  "--password-stdin", stdin=PASSWORD + "\n")
        made[role] = username
    return made


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: scripts/setup.sh test installs Debian's chromium")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser, stack):
    context = browser.new_context(base_url=stack.url("intake"), viewport={"width": 1280, "height": 900},
                                  locale="ar-IQ", timezone_id="Asia/Baghdad")
    opened = context.new_page()
    yield opened
    context.close()


@pytest.fixture(scope="session")
def screenshots():
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
