"""A real-time process's PostgreSQL backends run at its real-time priority, where PostgreSQL runs on the
same machine and the process may raise another process's priority.

`sanad run` starts the critical lane's processes under the real-time round-robin policy (sanad.launcher).
Each of a critical case's round trips to PostgreSQL crosses two processes, the service and the backend
serving its connection, and behind a flood each waits for a core when it wakes: in the benchmark, either
one at real-time priority alone left most of the wait, both together removed it (docs/performance.md).
PostgreSQL has no setting for a backend's CPU priority, so the process sets it on the backend's pid, once
it has made sure that pid is its own backend: the connection runs over TCP on the loopback interface, and
that pid's process is a PostgreSQL backend whose title names this connection's own address and port.
Anything else (PostgreSQL on another host or behind a Unix socket, in another PID namespace, or a process
without CAP_SYS_NICE) leaves the backend as PostgreSQL started it.
"""
import ipaddress
import logging
import os
import socket

log = logging.getLogger(__name__)

_reported = False


def share_realtime_priority(conn) -> bool:
    """Give the backend of `conn` this process's real-time policy and priority, if this process has one
    and the backend is provably its own on this machine. True if it was given."""
    policy = _own_policy()
    if policy is None:
        return False
    pid = conn.info.backend_pid
    address = _loopback_client_address(conn)
    if address is None or not _is_backend_of(pid, address):
        _report("its backends are not on this machine (or not reachable over loopback TCP)")
        return False
    try:
        os.sched_setscheduler(pid, policy, os.sched_getparam(0))
    except OSError as exc:  # no CAP_SYS_NICE, or the backend has just gone
        _report(f"raising a backend's priority was refused ({type(exc).__name__})")
        return False
    return True


def _own_policy():
    """SCHED_RR or SCHED_FIFO if this process runs under one, else None."""
    try:
        policy = os.sched_getscheduler(0) & ~getattr(os, "SCHED_RESET_ON_FORK", 0)
    except (AttributeError, OSError):  # not Linux
        return None
    return policy if policy in (os.SCHED_RR, os.SCHED_FIFO) else None


def _loopback_client_address(conn):
    """'host(port)' as PostgreSQL shows this connection's client in the backend's title, if the connection
    is TCP over loopback; else None."""
    duplicate = os.dup(conn.fileno())  # the socket object closes its own descriptor, never libpq's
    try:
        sock = socket.socket(fileno=duplicate)
    except OSError:
        os.close(duplicate)
        return None
    with sock:
        try:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            host, port = sock.getsockname()[:2]
            peer = sock.getpeername()[0]
        except OSError:  # the connection has just dropped: nothing to raise for it
            return None
    if not ipaddress.ip_address(peer.split("%")[0]).is_loopback:
        return None
    return f"{host}({port})"


def _is_backend_of(pid, address) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as title:
            text = title.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return text.startswith("postgres:") and f" {address} " in f"{text} "


def _report(reason):
    """Once per process: a critical-lane process whose backends keep PostgreSQL's priority is worth a line
    in the log, not one per connection."""
    global _reported
    if not _reported:
        _reported = True
        log.info("PostgreSQL backends keep their own CPU priority: %s", reason)
