"""Starts every Sanad service as its own `nameko run` process, and stops them together.

Used by `sanad run` (in the foreground, logs prefixed with the process name) and by the integration
tests (logs to files, processes killed and restarted on purpose).
"""
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sanad.platform.priority import REALTIME_PRIORITY, REALTIME_SETTING

ROOT = Path(__file__).resolve().parents[1]
QUIET_EVENTLET = "ignore:::nameko.cli.commands"
PR_SET_PDEATHSIG = 1


def die_with_parent(signum=signal.SIGTERM, nice=0, realtime=False):
    """A preexec_fn asking Linux to send `signum` to the child when the process (strictly, the thread)
    that started it dies, so a launcher or test run that is itself killed leaves no service running
    (elsewhere than Linux that part does nothing), and setting the child's CPU priority: `realtime`, the
    real-time round-robin policy (SCHED_RR) at its lowest priority; otherwise, or where that is refused,
    a change of `nice`. Either raise needs root or CAP_SYS_NICE; without either the child keeps the
    launcher's priority."""
    def preexec():
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum))
        except (OSError, AttributeError):
            pass
        if realtime and _set_realtime():
            return
        if nice:
            try:
                os.nice(nice)
            except PermissionError:
                pass
    return preexec


def _set_realtime() -> bool:
    try:
        # Reset on fork: anything the service itself starts runs under the normal policy.
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(REALTIME_PRIORITY))
        return True
    except (PermissionError, AttributeError):
        return False


# CPU priority by lane, so that when a surge keeps both cores busy the critical lane gets the CPU first,
# then the API operators use, then the normal lane's backlog. The normal lane's processes run at nice 10
# (SANAD_BULK_NICE); intake's API at the launcher's own. The critical lane's run under the real-time
# round-robin policy where the launcher may raise priority (SANAD_CRITICAL_REALTIME, 0 turns it off), else
# at nice -5 (SANAD_CRITICAL_NICE; 0 turns either nice off). A nice value only weighs a process's share of
# the CPU: woken by an answer from PostgreSQL or the broker, a critical process still waited for the
# running one's turn to end, at each of the tens of round trips a critical case makes, and behind a flood
# those waits were most of its time (docs/performance.md). A real-time process runs the moment it wakes.
# Linux keeps 5% of every second for the rest even then (sched_rt_runtime_us), and these processes sleep
# between events.
NICE_SETTINGS = {"bulk": ("SANAD_BULK_NICE", 10), "critical": ("SANAD_CRITICAL_NICE", -5)}


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    target: str  # module[:class] for `nameko run`
    config: str
    port_offset: int
    lane: str  # "critical", "bulk" (the normal lane's queues) or "api": sets its CPU priority


PROCESSES = (
    ServiceProcess("intake", "services.intake.service:IntakeService", "services/intake/config.yaml", 0, "api"),
    ServiceProcess("intake-status", "services.intake.service:IntakeStatusService", "services/intake/config.yaml", 7,
                   "bulk"),
    ServiceProcess("triage", "services.triage.service:TriageService", "services/triage/config.yaml", 1, "bulk"),
    ServiceProcess("triage-critical", "services.triage.service:CriticalTriageService",
                   "services/triage/config.yaml", 6, "critical"),
    ServiceProcess("referral", "services.referral.service:ReferralService", "services/referral/config.yaml", 2,
                   "bulk"),
    ServiceProcess("referral-critical", "services.referral.service:CriticalReferralService",
                   "services/referral/config.yaml", 3, "critical"),
    ServiceProcess("notify", "services.notify.service:NotifyService", "services/notify/config.yaml", 4, "bulk"),
    ServiceProcess("notify-critical", "services.notify.service:CriticalNotifyService",
                   "services/notify/config.yaml", 5, "critical"),
)
BY_NAME = {p.name: p for p in PROCESSES}
PORT_SPAN = 1 + max(p.port_offset for p in PROCESSES)  # consecutive ports a stack listens on


class Stack:
    """The eight processes. `log_dir` set: each writes its own file; unset: output is prefixed to stdout.
    Each runs in a session of its own, so a Ctrl-C reaches only the launcher, which stops them in order;
    each is sent SIGTERM if the launcher dies without stopping them (start and restart them from one
    long-lived thread: the signal follows the thread that started a process)."""

    def __init__(self, env=None, host="127.0.0.1", port_base=8000, log_dir=None):
        self.env = {**os.environ, **(env or {})}
        self.host = host
        self.port_base = port_base
        # With no proxy in front, a webhook's details_url leads to this stack's own referral process.
        self.env.setdefault("SANAD_PUBLIC_URL", self.url("referral"))
        self.log_dir = Path(log_dir) if log_dir else None
        self.nice = {"api": 0, **{lane: int(self.env.get(variable, default))
                                  for lane, (variable, default) in NICE_SETTINGS.items()}}
        self.realtime = self.env.get(REALTIME_SETTING, "1") != "0"
        self.running = {}

    def url(self, name):
        return f"http://{self.host}:{self.port_base + BY_NAME[name].port_offset}"

    def start(self, names=None):
        for name in names or BY_NAME:
            self._spawn(BY_NAME[name])

    def _spawn(self, proc):
        nameko = Path(sys.executable).with_name("nameko")
        env = {**self.env, "SANAD_WEB_ADDRESS": f"{self.host}:{self.port_base + proc.port_offset}",
               "PYTHONUNBUFFERED": "1"}
        # eventlet warns at every start that it is deprecated; nameko 2 is built on it.
        env.setdefault("PYTHONWARNINGS", QUIET_EVENTLET)
        command = [str(nameko), "run", "--config", proc.config, proc.target]
        preexec = die_with_parent(nice=self.nice[proc.lane], realtime=self.realtime and proc.lane == "critical")
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / f"{proc.name}.log", "ab") as log:
                child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True, preexec_fn=preexec)
        else:
            child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=preexec)
            threading.Thread(target=_prefix_lines, args=(proc.name, child.stdout), daemon=True).start()
        self.running[proc.name] = child

    def wait_healthy(self, timeout=60, names=None):
        deadline = time.monotonic() + timeout
        for name in names or self.running:
            while not _healthy(self.url(name) + "/health"):
                child = self.running[name]
                if child.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {child.returncode} before becoming healthy")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name} was not healthy within {timeout} s")
                time.sleep(0.2)

    def signal(self, name, signum):
        self.running[name].send_signal(signum)

    def wait(self, name, timeout=30):
        return self.running[name].wait(timeout)

    def restart(self, name, timeout=60):
        """Start a process again once it has exited (killed after `timeout` if it has not)."""
        child = self.running[name]
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        self._spawn(BY_NAME[name])

    def stop(self, timeout=20):
        """SIGTERM lets each service finish or requeue its in-flight work; SIGKILL after `timeout`."""
        for child in self.running.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for child in self.running.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def any_exited(self):
        return {name: c.returncode for name, c in self.running.items() if c.poll() is not None}


def _prefix_lines(name, stream):
    for line in iter(stream.readline, b""):
        sys.stdout.write(f"{name:<17} | {line.decode('utf-8', 'replace')}")
        sys.stdout.flush()


def _healthy(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def run_foreground(port_base=8000, host="127.0.0.1"):
    """`sanad run`: start everything, print where to find it, and stop it all cleanly on Ctrl-C."""
    stack = Stack(host=host, port_base=port_base)
    stopping = threading.Event()

    def request_stop(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    stack.start()
    try:
        stack.wait_healthy(timeout=90)
    except (RuntimeError, TimeoutError) as exc:
        print(f"sanad: {exc}; stopping", file=sys.stderr)
        stack.stop()
        return 1
    print(f"\nSanad is running. Intake (API and operators' UI): {stack.url('intake')}")
    for proc in PROCESSES:
        print(f"  {proc.name:<17} metrics {stack.url(proc.name)}/metrics   health {stack.url(proc.name)}/health")
    print("Press Ctrl-C to stop.\n", flush=True)
    while not stopping.wait(1):
        exited = stack.any_exited()
        if exited:
            print(f"sanad: a service stopped unexpectedly: {exited}; stopping the rest", file=sys.stderr)
            stack.stop()
            return 1
    print("\nStopping all services...", flush=True)
    stack.stop()
    return 0
