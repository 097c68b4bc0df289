"""Sends one signed webhook over HTTP and reports what came of it, without ever raising.

Only the registered URL is contacted: no redirects followed, no proxy (urllib3 reads none from the
environment), and the address actually connected to is checked against the URL policy once the socket is
open, so a name that resolved to a public address a moment ago cannot lead to a private one now. One
attempt never outlives its deadline, whatever the partner's server does, so it always ends within its
lease.

Connections to a partner are kept open and reused by the next webhook to the same host: in a surge a
partner gets webhooks many times a second, and a new connection (and TLS handshake) for each costs both
sides more than the webhook itself. A connection goes back for reuse only once its answer was read to
the end; one whose answer is longer than the excerpt kept is closed. When a connection breaks before
any answer comes (most often a kept one the partner closed meanwhile), the webhook is sent once more at
once on a new connection, with the same webhook-id (partners drop duplicates by it); never after a
timeout or an answer.
"""
import socket
import time

import eventlet
import urllib3
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError, NewConnectionError, ProtocolError, SSLError, TimeoutError
from urllib3.util.retry import Retry

from services.notify import urls
from services.notify.policy import Result

EXCERPT_BYTES = 512
USER_AGENT = "Sanad-Webhooks/1"
KEPT_HOSTS = 64  # partners' hosts whose connections are kept at once; the least recently used go first


class Sender:
    def __init__(self, url_policy, connect_timeout=3.0, read_timeout=10.0, deadline=23.0, connections_per_host=20):
        self.deadline = deadline
        self._timeout = urllib3.Timeout(connect=connect_timeout, read=read_timeout)
        # allowed_methods=None lets the one retry below apply to a POST; no redirect and no answer is retried.
        again = _AgainIfTheConnectionBroke(total=1, redirect=False, allowed_methods=None,
                                           respect_retry_after_header=False)
        self._connections = urllib3.PoolManager(num_pools=KEPT_HOSTS, maxsize=connections_per_host, block=False,
                                                retries=again)
        self._connections.pool_classes_by_scheme = _guarded_pools(url_policy)

    @staticmethod
    def resolve(host, port):
        """The host's addresses, as urls.check_url expects them."""
        return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]

    def post(self, url, body: bytes, headers: dict):
        """Returns (Result, latency in ms, the first bytes of the answer)."""
        started = time.perf_counter()
        excerpt = b""
        deadline = eventlet.Timeout(self.deadline)
        try:
            response = self._connections.request("POST", url, body=body, headers={"user-agent": USER_AGENT, **headers},
                                                 redirect=False, timeout=self._timeout, preload_content=False)
            try:
                excerpt = response.read(EXCERPT_BYTES, decode_content=True) or b""
            finally:
                if not response.closed:  # more answer than the excerpt: this connection cannot be reused
                    response.close()
                response.release_conn()
            status = response.status
            error = "redirect_refused" if 300 <= status < 400 else None
            result = Result(status, error, retry_after=response.headers.get("Retry-After"))
        except eventlet.Timeout as expired:
            if expired is not deadline:
                raise
            result = Result(None, "timeout")
        except urls.UnsafeUrl:
            result = Result(None, "url_refused")
        except SSLError:
            result = Result(None, "tls_error")
        except (NewConnectionError, ProtocolError):  # NewConnectionError first: urllib3 makes it a timeout too
            result = Result(None, "connection_error")
        except TimeoutError:
            result = Result(None, "timeout")
        except HTTPError:
            result = Result(None, "request_error")
        finally:
            deadline.cancel()
        latency_ms = (time.perf_counter() - started) * 1000
        return result, latency_ms, excerpt.decode("utf-8", "replace")

    def close(self):
        self._connections.clear()


class _AgainIfTheConnectionBroke(Retry):
    """urllib3's retry, cut down to the one case in the module's docstring: the connection broke before
    an answer. Every other error is raised as it is, so post() tells a timeout from a refused connection."""

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if isinstance(error, ProtocolError) and self.total:
            return super().increment(method, url, response, error, _pool, _stacktrace)
        raise error


def _checked_peer(sock, url_policy):
    try:
        urls.check_address(sock.getpeername()[0], url_policy)
    except urls.UnsafeUrl:
        sock.close()
        raise
    return sock


def _guarded_pools(url_policy):
    """urllib3 connection pools whose connections refuse a peer address the URL policy forbids."""

    class GuardedHTTPConnection(HTTPConnection):
        def _new_conn(self):
            return _checked_peer(super()._new_conn(), url_policy)

    class GuardedHTTPSConnection(HTTPSConnection):
        def _new_conn(self):
            return _checked_peer(super()._new_conn(), url_policy)

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = GuardedHTTPConnection

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = GuardedHTTPSConnection

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}
