"""Who calls a real stack in the integration tests, made the way an administrator makes them with the
`sanad` command: staff accounts with API tokens or browser sessions, partner organisations with a webhook
receiver and an API key, and keys for referral's admin API."""
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field

import requests

from sanad import webhooks
from sanad.launcher import ROOT
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until

PASSWORD = "a long night-shift passphrase"


def sanad(env, *args, stdin=None):
    """`sanad ...` from this checkout: (stdout, stderr); raises if it fails."""
    done = subprocess.run([sys.executable, "-m", "sanad.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          input=stdin, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"sanad {' '.join(args)} failed: {done.stderr}")
    return done.stdout, done.stderr


def bearer(secret):
    return {"Authorization": f"Bearer {secret}"}


@dataclass
class StaffMember:
    """A staff account of intake, with an API token acting as it."""
    username: str
    role: str
    id: str
    token: str
    token_id: str
    partner_id: str | None = None

    @property
    def headers(self):
        return bearer(self.token)


def staff_member(env, role, partner_id=None, prefix=None):
    username = f"{prefix or role}-{uuid.uuid4().hex[:8]}"
    extra = ["--partner-id", str(partner_id)] if partner_id else []
    out, _ = sanad(env, "user", "add", username, "--role", role, *extra, "--password-stdin", stdin=PASSWORD + "\n")
    user_id = out.strip().rsplit("(", 1)[1].rstrip(")")
    token, said = sanad(env, "token", "add", username, "--label", "integration tests")
    token_id = said.split()[1]
    return StaffMember(username, role, user_id, token.strip(), token_id, partner_id and str(partner_id))


def session_of(stack, member):
    """A logged-in browser session of `member` on intake: its cookie, and its CSRF token as a header."""
    session = requests.Session()
    answer = session.post(stack.url("intake") + "/api/session",
                          json={"username": member.username, "password": PASSWORD}, timeout=30)
    assert answer.status_code == 200, answer.text
    session.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
    return session


@dataclass
class Partner:
    """A partner organisation in referral's directory, with a live webhook receiver and an API key."""
    name: str
    id: str
    key: str
    receiver: Receiver = field(repr=False)

    @property
    def headers(self):
        return bearer(self.key)

    def offers(self):
        return [p for p in self.receiver.payloads() if p["type"] == "referral.offered"]


def partner(env, name, service, governorate="dhi_qar"):
    secret = webhooks.generate_secret()
    receiver = Receiver(secret).__enter__()
    out, _ = sanad(env, "partner", "add", "--name", name, "--service", service, "--governorate", governorate,
                   "--webhook-url", receiver.url, "--secret", secret)
    added = json.loads(out)
    return Partner(name, added["partner_id"], added["api_key"], receiver)


def referral_staff_key(env, role, partner_id=None):
    """A key for referral's admin API, for a member of staff of `role` (a counsellor of `partner_id`)."""
    partner = ("--partner-id", str(partner_id)) if partner_id else ()
    out, _ = sanad(env, "referral", "staff-key", f"{role}-{uuid.uuid4().hex[:6]}", "--role", role, *partner)
    return out.strip()


def referred_case(stack, case, services, client=requests, headers=None):
    """Post `case` to intake through `client` (a logged-in session, or requests with `headers`), and wait
    until intake shows it offered for each of `services`: (the case as intake shows it, {service: referral id})."""
    created = client.post(stack.url("intake") + "/api/cases", json=case, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    url = stack.url("intake") + created.json()["status_url"]

    def offered():
        """referral offered the case for every service asked"""
        shown = client.get(url, headers=headers, timeout=30).json()
        by_service = {r["service"]: r["id"] for r in shown.get("referrals", [])}
        return (shown, by_service) if set(services) <= set(by_service) else None
    return wait_until(offered, timeout=120)
