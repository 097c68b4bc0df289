"""Sends one signed webhook over HTTP and reports what came of it, without ever raising."""
import time

import requests

from services.notify.policy import Result

CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
EXCERPT_BYTES = 512


def post(url, body: bytes, headers: dict):
    """Returns (Result, latency in ms, the first bytes of the answer)."""
    started = time.perf_counter()
    try:
        with requests.post(url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                           allow_redirects=False, stream=True) as response:
            excerpt = response.raw.read(EXCERPT_BYTES, decode_content=True) or b""
            status = response.status_code
            error = "redirect_refused" if 300 <= status < 400 else None
            result = Result(status_code=status, error=error, retry_after=response.headers.get("Retry-After"))
    except requests.exceptions.SSLError:
        result, excerpt = Result(None, "tls_error"), b""
    except requests.exceptions.Timeout:
        result, excerpt = Result(None, "timeout"), b""
    except requests.exceptions.ConnectionError:
        result, excerpt = Result(None, "connection_error"), b""
    except requests.exceptions.RequestException:
        result, excerpt = Result(None, "request_error"), b""
    latency_ms = (time.perf_counter() - started) * 1000
    return result, latency_ms, excerpt.decode("utf-8", "replace")
