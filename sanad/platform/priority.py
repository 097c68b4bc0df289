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

Intake takes the flood and critical cases in one process, which cannot run in real time all the time:
the flood would have a core to itself. `CriticalBoost` puts it in real time only while it handles a
critical case (sanad.platform.precedence, which holds the flood's requests back meanwhile), with the
backends that case's transactions use, and back to the normal policy when the last one ends.
"""
import ipaddress
import logging
import os
import socket

log = logging.getLogger(__name__)

REALTIME_SETTING = "SANAD_CRITICAL_REALTIME"  # "0": nothing of the critical lane runs in real time
REALTIME_PRIORITY = 1  # the lowest real-time priority: above every process of the normal policy

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


class CriticalBoost:
    """Real time for a process of the normal policy while it handles a critical case: the process itself
    (`start`), and the backend of each connection the case's transactions use (`include`), until `stop`.
    It does nothing in a process that already runs in real time (the critical lane's, whose backends are
    raised when they connect), nor where SANAD_CRITICAL_REALTIME is 0 or raising priority is refused."""

    def __init__(self):
        self.active = False
        self.backends = set()  # pids raised for the case, to lower at the end
        self.refused = False

    def start(self):
        if self.active or self.refused or os.environ.get(REALTIME_SETTING, "1") == "0" or _own_policy() is not None:
            return
        try:
            os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(REALTIME_PRIORITY))
        except (OSError, AttributeError) as exc:  # no CAP_SYS_NICE, or not Linux: not asked again
            self.refused = True
            log.info("critical cases are handled at this process's own CPU priority: raising it was refused (%s)",
                     type(exc).__name__)
            return
        self.active = True

    def include(self, conn):
        if not self.active:
            return
        pid = conn.info.backend_pid
        if pid not in self.backends and share_realtime_priority(conn):
            self.backends.add(pid)

    def stop(self):
        if not self.active:
            return
        for pid in self.backends:
            try:
                os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:  # the backend has gone with its connection
                pass
        self.backends.clear()
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        self.active = False
