"""A PostgreSQL backend on this machine runs at the CPU priority of the service process it serves.

The launcher runs each lane at a CPU priority of its own (sanad.launcher.NICE_SETTINGS) so that in a
surge the critical lane gets the CPU first. But about as much of a case's CPU is spent in PostgreSQL's
backends as in the services, and PostgreSQL starts every backend at its own priority: the critical
lane's queries then wait behind the backlog's. Where PostgreSQL runs on the same machine and the service
may change another user's priority (root or CAP_SYS_NICE), each new connection's backend is given its
client's priority. Anywhere else this does nothing: a database on another host, a service without the
privilege, a process left at the default priority.

The backend is recognised by the process title PostgreSQL gives it ("postgres: ... 127.0.0.1(54321)
..."), which names the client's port; a process that does not carry our own port is never touched.
"""
import ipaddress
import os
import socket
from pathlib import Path

PROC = Path("/proc")


def share_priority(conn):
    """Give the backend behind `conn` this process's CPU priority, when it is ours to change."""
    own = os.getpriority(os.PRIO_PROCESS, 0)
    if own == 0:
        return
    local_port = _local_loopback_port(conn.fileno())
    if local_port is None:
        return
    pid = conn.get_backend_pid()
    if not _is_backend_for(pid, local_port):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, pid, own)
    except OSError:  # not permitted, or the backend has gone: it keeps PostgreSQL's priority
        pass


def _local_loopback_port(fd):
    """Our end's port of a TCP connection to this machine; None for a socket file or another host."""
    try:
        with socket.socket(fileno=os.dup(fd)) as sock:
            if sock.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            peer, local = sock.getpeername(), sock.getsockname()
    except OSError:
        return None
    if not ipaddress.ip_address(peer[0]).is_loopback:
        return None
    return local[1]


def _is_backend_for(pid, local_port) -> bool:
    try:
        title = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return title.startswith("postgres:") and f"({local_port})" in title
