"""A real-time process's PostgreSQL backends run at its priority (sanad.platform.priority), on real
PostgreSQL: only its own backends, only on this machine, and never for a process of the normal policy.

Each case runs a child process that connects through the platform's pool and reports its backend's
scheduling policy before it exits (the backend goes with the connection)."""
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.integration

REPORT_BACKEND_POLICY = textwrap.dedent("""
    import os, sys
    from sanad.platform.pool import Pool
    with Pool(sys.argv[1], size=1).connection() as conn:
        print(os.sched_getscheduler(conn.info.backend_pid))
""")


def _as_realtime():
    os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))


def backend_policy(database_url, realtime):
    done = subprocess.run([sys.executable, "-c", REPORT_BACKEND_POLICY, database_url], capture_output=True,
                          text=True, timeout=60, preexec_fn=_as_realtime if realtime else None)
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


@pytest.fixture(scope="module")
def may_run_realtime():
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=_as_realtime, check=True)
    except (subprocess.SubprocessError, PermissionError):
        pytest.skip("this machine does not let the tests start a real-time process (no CAP_SYS_NICE)")


def test_a_real_time_process_gives_its_local_backends_its_real_time_priority(database_url, may_run_realtime):
    assert database_url.startswith("postgresql://") and "@127.0.0.1:" in database_url, "loopback TCP here"
    assert backend_policy(database_url, realtime=True) == os.SCHED_RR


def test_a_process_of_the_normal_policy_leaves_its_backends_as_they_are(database_url):
    assert backend_policy(database_url, realtime=False) == os.SCHED_OTHER


def test_a_backend_it_cannot_prove_its_own_keeps_postgresqls_priority(database_url, may_run_realtime):
    """Over a Unix socket the backend's title names no address to check it against, so nothing is set."""
    socket_dir = "/var/run/postgresql"
    if not os.path.exists(socket_dir):
        pytest.skip("PostgreSQL has no Unix socket here")
    over_socket = database_url.replace("@127.0.0.1:5432/", "@/") + f"?host={socket_dir}"
    assert backend_policy(over_socket, realtime=True) == os.SCHED_OTHER
