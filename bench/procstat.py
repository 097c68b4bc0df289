"""What a process costs, read from /proc: resident memory and CPU seconds (Linux only)."""
import os

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BROKER_COMMAND = "beam.smp"  # RabbitMQ's Erlang VM, the whole broker


def run_in_real_time() -> bool:
    """Put the calling process (and the threads it starts) under the real-time round-robin policy where
    it may. For the benchmark's two instruments, the operator posting critical cases and the partners'
    receiver, which in reality sit on machines of their own: here they share the two cores with the
    flood, and the moments they read (a 201 arriving, a webhook verified) must not wait for a core.
    They sleep between requests, so they take little from the stack. False where it is refused."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return True
    except (PermissionError, AttributeError):
        return False


def cpu_seconds(pid):
    """User plus system CPU seconds the process has used so far; None once it has gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; the fields after it start past its closing ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / CLOCK_TICKS


def memory_mib(pid):
    """{"rss_mib": resident now, "peak_rss_mib": highest resident so far}; None once it has gone."""
    values = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) / 1024  # kB
    except OSError:
        return None
    return {"rss_mib": round(values.get("VmRSS", 0), 1), "peak_rss_mib": round(values.get("VmHWM", 0), 1)}


def machine_cpu_seconds():
    """CPU seconds every core of the machine has spent busy (not idle or waiting on I/O) since boot."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    # guest time is already counted in user time
    busy = sum(fields[:8]) - idle
    return busy / CLOCK_TICKS


def pids_whose_command_has(text):
    """Processes whose command line contains `text`: PostgreSQL names each backend's database in its title."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


class CpuMeter:
    """CPU seconds used between start() and stop() by each of some processes, by every process whose
    command line contains each of `groups`' texts (a backend that appears meanwhile counts in full), and
    by the whole machine (which on a shared machine includes other people's work)."""

    def __init__(self, pids, groups=None):
        self.pids = dict(pids)  # name -> pid
        self.groups = dict(groups or {})  # name -> text in the command line
        self.started = {}
        self.group_started = {}
        self.machine_started = None

    def start(self):
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.group_started = {name: {pid: cpu_seconds(pid) for pid in pids_whose_command_has(text)}
                              for name, text in self.groups.items()}
        self.machine_started = machine_cpu_seconds()
        return self

    def stop(self):
        used = {}
        for name, pid in self.pids.items():
            now, before = cpu_seconds(pid), self.started.get(name)
            used[name] = None if now is None or before is None else round(now - before, 3)
        for name, text in self.groups.items():
            total = 0.0
            for pid in pids_whose_command_has(text):
                now = cpu_seconds(pid)
                if now is not None:
                    total += now - (self.group_started[name].get(pid) or 0.0)
            used[name] = round(total, 3)
        machine = round(machine_cpu_seconds() - self.machine_started, 3)
        return used, machine
