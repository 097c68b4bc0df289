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
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2

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
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self._run(_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
                  "--no-sync")

    def _run(self, *command, timeout=None):
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=timeout or 60)

    @property
    def url(self):
        """The server's URL without a database name: append "/<name>"."""
        return f"postgresql://postgres@127.0.0.1:{self.port}"

    def start(self):
        # fsync off: only a crash of the whole machine could lose data with it, and these tests crash
        # PostgreSQL, never the machine.
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "server.log"),
                  "-w", "-t", str(self.start_timeout), "start", timeout=self.start_timeout + 10)
        self._wait_until_accepting()

    def _wait_until_accepting(self):
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                psycopg2.connect(f"{self.url}/postgres", connect_timeout=2).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, mode="fast"):
        """Stop the cluster: "fast" (a clean shutdown that ends every session) or "immediate" (a crash:
        no checkpoint, recovery from the write-ahead log on the next start)."""
        self._run(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def running(self):
        return subprocess.run([*self.as_user, _bin("pg_ctl"), "-D", str(self.data), "status"],
                              capture_output=True).returncode == 0

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
