"""Sends one signed webhook over HTTP and reports what came of it, without ever raising.

Only the registered URL is contacted: no redirects followed, no proxy taken from the environment, and
the address actually connected to is checked against the URL policy once the socket is open, so a name
that resolved to a public address a moment ago cannot lead to a private one now. One attempt never
outlives its deadline, whatever the partner's server does, so it always ends within its lease.
"""
import socket
import time

import eventlet
import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from services.notify import urls
from services.notify.policy import Result

EXCERPT_BYTES = 512


class Sender:
    def __init__(self, url_policy, connect_timeout=3.0, read_timeout=10.0, deadline=23.0):
        self.url_policy = url_policy
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.deadline = deadline
        self._pools = _guarded_pools(url_policy)

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
            with requests.Session() as session:
                session.trust_env = False  # an HTTP(S)_PROXY in the environment must not reroute webhooks
                adapter = _GuardedAdapter(self._pools)
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                with session.post(url, data=body, headers=headers, allow_redirects=False, stream=True,
                                  timeout=(self.connect_timeout, self.read_timeout)) as response:
                    excerpt = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
                    status = response.status_code
                    error = "redirect_refused" if 300 <= status < 400 else None
                    result = Result(status, error, retry_after=response.headers.get("Retry-After"))
        except eventlet.Timeout as expired:
            if expired is not deadline:
                raise
            result = Result(None, "timeout")
        except urls.UnsafeUrl:
            result = Result(None, "url_refused")
        except requests.exceptions.SSLError:
            result = Result(None, "tls_error")
        except requests.exceptions.Timeout:
            result = Result(None, "timeout")
        except requests.exceptions.ConnectionError:
            result = Result(None, "connection_error")
        except requests.exceptions.RequestException:
            result = Result(None, "request_error")
        finally:
            deadline.cancel()
        latency_ms = (time.perf_counter() - started) * 1000
        return result, latency_ms, excerpt.decode("utf-8", "replace")


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


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, pools):
        self._pools = pools
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(self._pools)
