"""A PostgreSQL cluster of the test's own, which the test may restart or crash at will.

The machine's PostgreSQL (127.0.0.1:5432) is shared with other engineers' test runs and is never touched
here. This cluster lives in a temporary directory (initdb, trust authentication, loopback only, a port of
its own) and is removed by close(). PostgreSQL refuses to run as root, so when the tests run as root the
cluster belongs to the `postgres` system user, as the Debian package's does.
"""
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2

from sanad.launcher import die_with_parent
from tests.support.ports import free_ports


def _bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


class PrivatePostgres:
    def __init__(self, start_timeout=60):
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="sanad-postgres-"))
        self.data = self.dir / "data"
        self.port = free_ports()
        self.as_user = []
        self.process = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            # setpriv, not runuser: it execs rather than forks, and sets the parent-death signal after
            # changing user (a change of user clears it).
            self.as_user = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups",
                            "--pdeathsig=SIGQUIT", "--"]
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")

    def _run(self, *command, timeout=None):
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=timeout or 60)

    @property
    def url(self):
        """The server's URL without a database name: append "/<name>"."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self):
        """Start the server as a child of this process (not daemonised by pg_ctl), so that if the test run
        is killed outright the server is told to quit too, instead of lingering on a shared machine."""
        assert self.process is None or self.process.poll() is not None, "already running"
        command = [*self.as_user, _bin("postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.dir),
                   "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200",
                   # Only a crash of the whole machine could lose data with fsync off, and these tests crash
                   # PostgreSQL, never the machine.
                   "-c", "fsync=off"]
        with open(self.dir / "server.log", "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            preexec_fn=die_with_parent(signal.SIGQUIT))
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"private PostgreSQL exited with {self.process.returncode}; see {self.dir}/server.log")
            try:
                psycopg2.connect(f"{self.url}/postgres", connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode="fast", timeout=60):
        """Stop the server: "fast" (a clean shutdown that ends every session) or "immediate" (a crash: no
        checkpoint, recovery from the write-ahead log on the next start). The signals are pg_ctl's."""
        if not self.running():
            return
        self.process.send_signal(signal.SIGQUIT if mode == "immediate" else signal.SIGINT)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def running(self):
        return self.process is not None and self.process.poll() is None

    def close(self):
        try:
            if self.running():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
