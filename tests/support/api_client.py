"""An API token for tests that call intake's API, made as an administrator would: an operator account,
then `sanad token add` for it. One per stack."""
import threading
import uuid

from tests.integration.conftest import sanad_cli

_LOCK = threading.Lock()


def api_headers(stack, username="ops-tests-client"):
    """The Authorization header for `stack`'s intake."""
    with _LOCK:
        if getattr(stack, "ops_api_token", None) is None:
            sanad_cli(stack.env, "user", "add", username, "--role", "operator", "--password-stdin",
                      stdin=uuid.uuid4().hex + "\n")
            stack.ops_api_token = sanad_cli(stack.env, "token", "add", username, "--label", "ops tests").strip()
    return {"Authorization": f"Bearer {stack.ops_api_token}"}
