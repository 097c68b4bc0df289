"""Callers this process has checked lately: enough to let a critical case go first before its caller's
check, never to skip the check.

Under a flood, a critical case's request spent most of its time in intake on its first round trip, the
check of who is asking, since until then its case is not known to be critical and it waits its turn
like every other request (docs/performance.md, item 26). A credential (a session cookie or an API token)
that this process found live, and allowed to record cases, within the last MEMORY_SECONDS vouches for
reading the body before that check, and for the case going first (sanad.platform.precedence) if the body
says a life is in danger. The check still runs, in the transaction that records the case, and a refusal
still wins: a credential revoked meanwhile records nothing, its request having only gone first for a
round trip or two, and is forgotten. A credential this process has not seen lately (a stranger's
included) gets nothing before the check. The operators' screen asks for its queue every few seconds, so
an operator at work is always known; machine clients that post cases are known from their last post.

Only each credential's SHA-256 is kept, as in the database, for at most MEMORY_SIZE credentials.
"""
import time
from collections import OrderedDict

from nameko.extensions import DependencyProvider

from services.intake import auth

MEMORY_SECONDS = 60.0
MEMORY_SIZE = 1024


def presented(request) -> str | None:
    """The credential a request carries, by kind (a bearer token before a session cookie, as
    IntakeService checks them); None without one, or with an Authorization header of another scheme."""
    header = request.headers.get("Authorization")
    if header is not None:
        return "token:" + header[len("Bearer "):].strip() if header.startswith("Bearer ") else None
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    return "session:" + cookie if cookie else None


class RecentCallers:
    def __init__(self, seconds=MEMORY_SECONDS, size=MEMORY_SIZE, clock=time.monotonic):
        self._seconds = seconds
        self._size = size
        self._clock = clock
        self._until = OrderedDict()  # digest of a credential -> the clock's reading when it stops vouching

    def remember(self, credential) -> None:
        """`credential` was just found live and allowed to record cases."""
        if not credential:
            return
        key = auth.digest(credential)
        self._until.pop(key, None)
        self._until[key] = self._clock() + self._seconds
        while len(self._until) > self._size:
            self._until.popitem(last=False)

    def forget(self, credential) -> None:
        """`credential` was just refused: it vouches for nothing from now on."""
        if credential:
            self._until.pop(auth.digest(credential), None)

    def vouch(self, credential) -> bool:
        """True if `credential` was remembered within the last `seconds`."""
        if not credential:
            return False
        key = auth.digest(credential)
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[key]
            return False
        return True


class Callers(DependencyProvider):
    """One RecentCallers for the whole process: every worker sees what the others found."""

    def setup(self):
        self.callers = RecentCallers()

    def get_dependency(self, worker_ctx):
        return self.callers
