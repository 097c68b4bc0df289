"""What an administrator does with the `sanad` command, for tests: run it against a test's settings, and
make a machine client (an operator account with an API token) to call the API with."""
import os
import subprocess
import sys
import uuid

from sanad.launcher import ROOT


def cli(env, *args, stdin=None):
    """`sanad ...` from this checkout (not the one the virtualenv's console script was installed from)."""
    done = subprocess.run([sys.executable, "-m", "sanad.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          input=stdin, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"sanad {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def machine_client(env, username, role="operator"):
    """The headers of an API client acting as a new account of `role`."""
    cli(env, "user", "add", username, "--role", role, "--password-stdin", stdin=uuid.uuid4().hex + "\n")
    token = cli(env, "token", "add", username, "--label", "tests").strip()
    return {"Authorization": f"Bearer {token}"}
