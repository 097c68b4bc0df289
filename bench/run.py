"""`python -m bench`: run the benchmark and write results.json, results.md and latency.png.

One run starts the stack once and repeats the measurements `--repetitions` times; every figure is
reported as the median over the repetitions (with their minimum and maximum), and as a ratio to the
floor measured in the same repetition. See docs/performance.md for what each figure means.
"""
import argparse
import bisect
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path

from bench import load, procstat, report, stats
from bench.client import IntakeClient, paced_from_own_process
from bench.environment import BenchEnvironment
from bench.floor import Floor

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = "postgres (backends of the benchmark's database)"
BROKER = "RabbitMQ (the whole broker)"
OPERATORS = "the flood's operators (this process)"
RECEIVER = "the partners' receiver"
RESULTS = ROOT / "bench" / "results"
CLOCK_TOLERANCE_S = 0.001  # how far the wall clock may move against the monotonic one in a repetition


@dataclass
class Config:
    repetitions: int = 2
    critical_cases: int = 500       # per phase, alone and behind the backlog
    critical_rate: float = 10.0     # critical cases (and floor messages) per second
    backlog_cases: int = 10_000     # normal cases submitted as fast as intake takes them
    concurrency: int = 8            # concurrent senders of a flood (operators at once)
    rate_seconds: float = 20.0      # how long normal cases are sent at 50% and at 90% of the throughput
    floor_messages: int = 5_000     # messages in the floor's flood
    floor_workers: int = 1          # consumers per floor hop
    warmup_cases: int = 200
    drain_timeout: float = 900.0    # seconds to wait for a phase's last webhook
    profile_seconds: float = 0.0    # > 0: afterwards, profile every service with py-spy for this long

    @classmethod
    def smoke(cls):
        """Tiny numbers that still pass through every phase: for tests/integration/test_bench_smoke.py."""
        return cls(repetitions=1, critical_cases=12, critical_rate=25.0, backlog_cases=200, concurrency=4,
                   rate_seconds=1.0, floor_messages=30, warmup_cases=4, drain_timeout=120.0)


class Benchmark:
    def __init__(self, config, environment, log=print):
        self.config = config
        self.env = environment
        self.client = IntakeClient(environment.stack.url("intake"), environment.api_token)
        self.receiver = environment.receiver
        self.log = log
        self.floor = None

    # Phases -----------------------------------------------------------------------------------------

    def warm_up(self):
        """Open every pool's connections and fill every cache before anything is timed."""
        count = self.config.warmup_cases
        submitted = load.flood(lambda i: self.client.post_case("critical" if i % 4 == 0 else "normal"), count,
                               self.config.concurrency)
        self._await(submitted)
        floor_ids = load.flood(self.floor.send, count, self.config.concurrency)
        self.floor.wait_for([m for m, _ in floor_ids], self.config.drain_timeout)

    def floor_latency(self):
        sent, lag = load.paced(self.floor.send, self.config.critical_cases, self.config.critical_rate)
        if not self.floor.wait_for([m for m, _ in sent], self.config.drain_timeout):
            raise RuntimeError("the floor lost messages")
        latencies = [self.floor.arrival(m) - at for m, at in sent]
        return {**stats.summary_ms(latencies), "sender_lag_ms": round(lag * 1000, 1)}, latencies

    def floor_throughput(self):
        meter = procstat.CpuMeter(self.floor.pids, self._shared_groups()).start()
        started = time.monotonic()
        sent = load.flood(self.floor.send, self.config.floor_messages, self.config.concurrency)
        if not self.floor.wait_for([m for m, _ in sent], self.config.drain_timeout):
            raise RuntimeError("the floor lost messages")
        cpu, machine = meter.stop()
        finished = [self.floor.arrival(m) for m, _ in sent]
        count = len(sent)
        postgres, broker = cpu.pop(POSTGRES), cpu.pop(BROKER)
        return {
            "messages": count,
            "per_s": _round(stats.steady_rate(finished)),
            "overall_per_s": _round(count / (max(finished) - started)),
            "cpu_seconds_per_message": _round(sum(cpu.values()) / count, 6),
            "postgres_cpu_seconds_per_message": _round(postgres / count, 6),
            "broker_cpu_seconds_per_message": _round(broker / count, 6),
            "machine_cpu_seconds_per_message": _round(machine / count, 6),
        }

    def critical_alone(self):
        submitted, lag = self._paced_critical()
        self._await(submitted)
        latencies = self._latencies(submitted)
        return {**stats.summary_ms(latencies), **self._lane_check(submitted),
                "from_send": stats.summary_ms(self._latencies(submitted, since_sent=True)),
                "sender_lag_ms": round(lag * 1000, 1)}, latencies, submitted

    def _paced_critical(self):
        return paced_from_own_process(self.client.base_url, self.env.api_token, "critical",
                                      self.config.critical_cases, self.config.critical_rate)

    def critical_with_backlog(self):
        """Flood intake with the normal backlog from `concurrency` operators at once; when a fifth of it
        has been accepted, send the critical cases at their pace while the flood goes on and drains.
        (Sent only after the whole flood, they would meet no backlog here: intake accepts cases no faster
        than the rest of the pipeline carries them, so the backlog waits at intake's door.)"""
        cfg = self.config
        sampler = QueueSampler(self.env).start()
        instruments = {OPERATORS: os.getpid(), RECEIVER: self.receiver.pid}
        meter = procstat.CpuMeter({**self.env.service_pids, **instruments}, self._shared_groups()).start()
        counters = self.env.counters()
        waits_before = self.env.precedence_waits()
        head_start = threading.Event()
        head = max(1, cfg.backlog_cases // 5)

        def send_normal(i):
            case = self.client.post_case("normal")
            if i + 1 >= head:
                head_start.set()
            return case

        flooding = Background(lambda: load.flood(send_normal, cfg.backlog_cases, cfg.concurrency))
        started = time.monotonic()
        head_start.wait()
        critical, lag = self._paced_critical()
        backlog = flooding.result()
        submitted_at = max(c.answered_at for c in backlog)
        self._await(backlog + critical)
        delivered_at = time.monotonic()
        cpu, machine = meter.stop()
        postgres, broker = cpu.pop(POSTGRES), cpu.pop(BROKER)
        operators, receiver = cpu.pop(OPERATORS), cpu.pop(RECEIVER)
        work = self.env.counters(since=counters)
        waits_after = self.env.precedence_waits()
        memory = {name: procstat.memory_mib(pid) for name, pid in self.env.service_pids.items()}
        queues = sampler.stop()
        self.log("waiting for intake's case views to catch up")
        views_lag = self._await_views_show_deliveries(backlog + critical, delivered_at)
        # Intake records each case's status from the same events; the next phases start when it has.
        self._await_status_views()

        accepted = sorted(c.answered_at for c in backlog)
        delivered = sorted(self.receiver.first_arrival(c.reference) for c in backlog)
        in_flight = [bisect.bisect_right(accepted, c.answered_at) - bisect.bisect_right(delivered, c.answered_at)
                     for c in critical]
        waiting = [cfg.backlog_cases - bisect.bisect_right(accepted, c.answered_at) for c in critical]
        under_backlog = [c for c in critical if c.answered_at < delivered[-1]]
        latencies = self._latencies(under_backlog)
        cases = len(backlog) + len(critical)
        figures = {
            **stats.summary_ms(latencies),
            **self._lane_check(critical),
            "all_critical": stats.summary_ms(self._latencies(critical)),
            "intake_answer": stats.summary_ms([c.answered_at - c.sent_at for c in critical]),
            "from_send": stats.summary_ms(self._latencies(under_backlog, since_sent=True)),
            "normal_in_flight_at_critical": {"median": stats.median_of(in_flight),
                                             "min": min(in_flight, default=None)},
            "normal_not_yet_accepted_at_critical": {"median": stats.median_of(waiting),
                                                    "min": min(waiting, default=None)},
            "intake_views_behind_partners_s": views_lag,
            "sender_lag_ms": round(lag * 1000, 1),
            "precedence_waits": None if waits_before is None or waits_after is None else
            {outcome: int(waits_after[outcome] - waits_before[outcome]) for outcome in waits_after},
        }
        throughput = {
            "cases": len(backlog),
            "intake_accepted_per_s": _round(len(backlog) / (submitted_at - started)),
            "per_s": _round(stats.steady_rate(delivered)),
            "overall_per_s": _round(len(backlog) / (delivered[-1] - started)),
            "drained_after_s": _round(delivered[-1] - started),
            "cpu_seconds_per_case": {name: _round(s / cases, 6) if s is not None else None
                                     for name, s in cpu.items()},
            "services_cpu_seconds_per_case": _round(sum(s for s in cpu.values() if s) / cases, 6),
            "postgres_cpu_seconds_per_case": _round(postgres / cases, 6),
            "broker_cpu_seconds_per_case": _round(broker / cases, 6),
            "operators_cpu_seconds_per_case": _round(operators / cases, 6),
            "receiver_cpu_seconds_per_case": _round(receiver / cases, 6),
            "machine_cpu_seconds_per_case": _round(machine / cases, 6),
            **{f"{name}_per_case": None if count is None else _round(count / cases, 2)
               for name, count in work.items()},
        }
        return figures, latencies, throughput, memory, queues, under_backlog

    def normal_at_rate(self, rate):
        count = max(1, int(rate * self.config.rate_seconds))
        submitted, lag = load.paced(lambda i: self.client.post_case("normal"), count, rate,
                                    concurrency=self.config.concurrency)
        self._await(submitted)
        latencies = self._latencies(submitted)
        return {**stats.summary_ms(latencies), "rate_per_s": round(rate, 2), "sender_lag_ms": round(lag * 1000, 1)}

    def stages(self, submitted, wall_offset_then, sample=40):
        """Where a case's time went after intake's 201, on one clock. The 201 and the partner's arrival are
        time.monotonic() here, the services' timestamps the machine's wall clock (as intake shows them),
        set side by side through the offset between the two clocks, read now: 201 -> assessed by triage ->
        referral created -> notify starts the webhook's request -> the partner has the verified webhook ->
        notify has the partner's answer. The request's start is notify's record of the attempt less the
        attempt's own latency. A negative first stage means triage had the case before the operator had the
        201. Beside them, the whole path from intake's record of the case (its received_at, read as intake's
        handler begins) to the verified webhook: unlike the 201, it never waits for intake's
        answer to reach the operator.

        The offset must have held since `wall_offset_then`, read when the repetition began: a wall clock
        stepped or slewed meanwhile (a virtual machine's clock brought back into line) shifts every stage
        by as much, once seen as a 201 that came 440 ms after triage's assessment. When it moved by more
        than CLOCK_TOLERANCE_S, no stage is reported, only by how much it moved."""
        wall_offset = _wall_offset()
        moved_ms = round((wall_offset - wall_offset_then) * 1000, 2)
        if abs(moved_ms) > CLOCK_TOLERANCE_S * 1000:
            return {"wall_clock_moved_ms": moved_ms}
        step = max(1, len(submitted) // sample)
        durations = {"received_to_partner": [], "answered_to_triaged": [], "triaged_to_referred": [],
                     "referred_to_partner": [],
                     "referred_to_request": [], "request_to_partner": [], "partner_to_answer_recorded": []}
        for case in submitted[::step]:
            view = self.client.case_status(case.case_id)
            arrived = self.receiver.first_arrival(case.reference)
            if not view.get("risk") or not view.get("referrals") or arrived is None:
                continue
            referral = view["referrals"][0]
            if not referral["deliveries"]:
                continue
            first = min(referral["deliveries"], key=lambda d: d["attempted_at"])
            triaged, referred, recorded = (_at(view["risk"]["assessed_at"]), _at(referral["created_at"]),
                                           _at(first["attempted_at"]))
            requested = recorded - first["latency_ms"] / 1000
            answered, arrived = case.answered_at + wall_offset, arrived + wall_offset
            durations["received_to_partner"].append(arrived - _at(view["received_at"]))
            durations["answered_to_triaged"].append(triaged - answered)
            durations["triaged_to_referred"].append(referred - triaged)
            durations["referred_to_partner"].append(arrived - referred)
            durations["referred_to_request"].append(requested - referred)
            durations["request_to_partner"].append(arrived - requested)
            durations["partner_to_answer_recorded"].append(recorded - arrived)
        figures = {name: stats.summary_ms(values) for name, values in durations.items()}
        return {"wall_clock_moved_ms": moved_ms, **figures}

    # Helpers ----------------------------------------------------------------------------------------

    def _shared_groups(self):
        """What the stack and the floor share: PostgreSQL's backends serving the benchmark's database, and
        RabbitMQ (its Erlang VM, the whole broker: the benchmark's vhost is the only busy one)."""
        database = self.env.database_url.rsplit("/", 1)[1]
        return {POSTGRES: f" {database} ", BROKER: procstat.BROKER_COMMAND}

    def _await_views_show_deliveries(self, submitted, delivered_at, timeout=900):
        """Seconds from `delivered_at` (the partners had every webhook) until intake's case views showed
        every one of `submitted` delivered, read from intake's table every 0.1 s; None past `timeout`."""
        case_ids = [c.case_id for c in submitted]
        while time.monotonic() < delivered_at + timeout:
            if self.env.cases_shown_delivered(case_ids) >= len(case_ids):
                return round(max(0.0, time.monotonic() - delivered_at), 1)
            time.sleep(0.1)
        return None

    def _await_status_views(self, timeout=900):
        """Wait until intake's status queue is empty (the management API's count, a few seconds old), so
        that nothing of the flood is left to disturb the phases after it."""
        started = time.monotonic()
        while time.monotonic() < started + timeout:
            try:
                if self.env.queue_depths().get("intake.case_status", 0) == 0:
                    return
            except Exception:  # noqa: BLE001 -- the management API may be slow under load; ask again
                pass
            time.sleep(2)

    def _await(self, submitted):
        missing = [c for c in submitted if self.receiver.first_arrival(c.reference) is None]
        deadline = time.monotonic() + self.config.drain_timeout
        while missing:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} of {len(submitted)} cases never reached a partner")
            time.sleep(0.05)
            missing = [c for c in missing if self.receiver.first_arrival(c.reference) is None]

    def _latencies(self, submitted, since_sent=False):
        """From each case's 201 (or, `since_sent`, from the moment its request left the operator) to its
        first verified webhook, in seconds."""
        return [self.receiver.first_arrival(c.reference) - (c.sent_at if since_sent else c.answered_at)
                for c in submitted]

    def _case_times(self, submitted, wall_offset):
        """Each critical case in the order it was sent: when its request left, on the wall clock (UTC), so
        that a stall can be lined up with PostgreSQL's and RabbitMQ's logs; how long intake took to answer;
        and how long from the 201 to the partner's verified webhook (below zero when the 201 came last)."""
        def utc(monotonic):
            return datetime.fromtimestamp(monotonic + wall_offset, timezone.utc).isoformat(timespec="milliseconds")

        in_order = sorted(submitted, key=lambda c: c.sent_at)
        return [{"sent_at": utc(c.sent_at), "answer_ms": round((c.answered_at - c.sent_at) * 1000, 2),
                 "latency_ms": round(latency * 1000, 2)}
                for c, latency in zip(in_order, self._latencies(in_order))]

    def _lane_check(self, submitted):
        """A critical case must reach its partner as critical; anything else is a triage miss."""
        levels = [a.level for c in submitted for a in self.receiver.arrivals_of(c.reference)[:1]]
        return {"arrived_as_critical": sum(1 for level in levels if level == "critical"), "cases": len(submitted)}

    def repetition(self, number):
        cfg = self.config
        load_at_start = [round(v, 2) for v in os.getloadavg()]
        wall_offset_at_start = _wall_offset()
        self.log(f"repetition {number}: floor latency ({cfg.critical_cases} messages at {cfg.critical_rate}/s)")
        floor_latency, floor_samples = self.floor_latency()
        self.log(f"repetition {number}: floor throughput ({cfg.floor_messages} messages)")
        floor_throughput = self.floor_throughput()
        self.log(f"repetition {number}: critical cases alone")
        alone, alone_samples, alone_cases = self.critical_alone()
        self.log(f"repetition {number}: {cfg.backlog_cases} normal cases, then the critical ones")
        backlogged, backlog_samples, throughput, memory, queues, backlogged_cases = self.critical_with_backlog()
        load_after_flood = [round(v, 2) for v in os.getloadavg()]
        rates = {}
        for share in (50, 90):
            rate = (throughput["per_s"] or throughput["overall_per_s"]) * share / 100
            self.log(f"repetition {number}: normal cases at {share}% of {throughput['per_s']}/s")
            rates[f"normal_at_{share}pct"] = self.normal_at_rate(rate)
        self.log(f"repetition {number}: reading where the critical cases' time went")
        return {
            "load_average": {"at_start": load_at_start, "after_flood": load_after_flood},
            "floor": {"latency": floor_latency, "throughput": floor_throughput},
            "critical_alone": alone,
            "critical_with_backlog": backlogged,
            "throughput": throughput,
            **rates,
            "memory_mib": memory,
            "queue_depth_peaks": queues,
            "stages": {"critical_alone": self.stages(alone_cases, wall_offset_at_start),
                       "critical_with_backlog": self.stages(backlogged_cases, wall_offset_at_start)},
            "samples_s": {"floor": floor_samples, "critical_alone": alone_samples,
                          "critical_with_backlog": backlog_samples},
            "critical_cases": {"critical_alone": self._case_times(alone_cases, wall_offset_at_start),
                               "critical_with_backlog": self._case_times(backlogged_cases, wall_offset_at_start)},
        }

    def run(self, after_each=lambda runs: None):
        """All repetitions; after_each(runs so far) is called as each ends, so a long run that is cut
        short still leaves its finished repetitions behind."""
        self.floor = Floor(self.env.amqp_uri, self.env.database_url, self.config.floor_workers).start()
        try:
            self.log("warming up")
            self.warm_up()
            runs = []
            for number in range(1, self.config.repetitions + 1):
                runs.append(self.repetition(number))
                after_each(runs)
            return runs
        finally:
            self.floor.stop()


class Background:
    """A function running in a thread of its own; result() waits for it and re-raises what it raised."""

    def __init__(self, function):
        self._outcome = {}
        self._thread = threading.Thread(target=self._run, args=(function,), daemon=True)
        self._thread.start()

    def _run(self, function):
        try:
            self._outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 -- handed to whoever asks for the result
            self._outcome["error"] = exc

    def result(self):
        self._thread.join()
        if "error" in self._outcome:
            raise self._outcome["error"]
        return self._outcome["value"]


class QueueSampler:
    """The deepest each of the stack's queues got, sampled every second from the management API."""

    def __init__(self, env, interval=1.0):
        self.env = env
        self.interval = interval
        self.peaks = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="bench-queue-sampler")

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            try:
                depths = self.env.queue_depths()
            except Exception:  # noqa: BLE001 -- a missed sample only makes the peak less exact
                continue
            for name, depth in depths.items():
                self.peaks[name] = max(self.peaks.get(name, 0), depth)

    def stop(self):
        self._stop.set()
        self._thread.join(5)
        return dict(sorted(self.peaks.items()))


def _wall_offset():
    """The wall clock less the monotonic one: constant while nothing adjusts the wall clock."""
    return time.time() - time.monotonic()


def _at(iso):
    return datetime.fromisoformat(iso).timestamp()


def _round(value, digits=2):
    return None if value is None else round(value, digits)


def summarise(runs, config):
    """Medians over the repetitions, and each figure as a ratio to the floor of the same repetition."""
    def over_runs(path):
        values = []
        for run in runs:
            value = run
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            values.append(value)
        return stats.spread(values)

    def ratio_over_runs(path, floor_path):
        values = []
        for run in runs:
            value, floor = run, run
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            for key in floor_path:
                floor = floor.get(key) if isinstance(floor, dict) else None
            values.append(stats.ratio(value, floor))
        return stats.spread(values)

    latency_phases = ("critical_alone", "critical_with_backlog", "normal_at_50pct", "normal_at_90pct")
    summary = {"floor": {
        **{f"latency_{p}": over_runs(("floor", "latency", p)) for p in ("p50_ms", "p95_ms", "p99_ms")},
        "throughput_per_s": over_runs(("floor", "throughput", "per_s")),
        "cpu_seconds_per_message": over_runs(("floor", "throughput", "cpu_seconds_per_message")),
        "postgres_cpu_seconds_per_message": over_runs(("floor", "throughput", "postgres_cpu_seconds_per_message")),
        "broker_cpu_seconds_per_message": over_runs(("floor", "throughput", "broker_cpu_seconds_per_message")),
    }}
    for phase in latency_phases:
        summary[phase] = {}
        for p in ("p50_ms", "p95_ms", "p99_ms"):
            summary[phase][p] = over_runs((phase, p))
            summary[phase][f"{p}_vs_floor"] = ratio_over_runs((phase, p), ("floor", "latency", p))
    for phase in ("critical_alone", "critical_with_backlog"):
        for p in ("p50_ms", "p99_ms"):
            summary[phase][f"from_send_{p}"] = over_runs((phase, "from_send", p))
    summary["critical_with_backlog"]["normal_in_flight_at_critical"] = over_runs(
        ("critical_with_backlog", "normal_in_flight_at_critical", "median"))
    summary["critical_with_backlog"]["normal_not_yet_accepted_at_critical"] = over_runs(
        ("critical_with_backlog", "normal_not_yet_accepted_at_critical", "median"))
    summary["critical_with_backlog"]["intake_answer_p99_ms"] = over_runs(
        ("critical_with_backlog", "intake_answer", "p99_ms"))
    summary["critical_with_backlog"]["measured_under_backlog"] = over_runs(("critical_with_backlog", "count"))
    summary["critical_with_backlog"]["intake_views_behind_partners_s"] = over_runs(
        ("critical_with_backlog", "intake_views_behind_partners_s"))
    for outcome in ("cleared", "limit"):
        summary["critical_with_backlog"][f"precedence_waits_{outcome}"] = over_runs(
            ("critical_with_backlog", "precedence_waits", outcome))
    summary["throughput"] = {
        "per_s": over_runs(("throughput", "per_s")),
        "per_s_vs_floor": ratio_over_runs(("throughput", "per_s"), ("floor", "throughput", "per_s")),
        "intake_accepted_per_s": over_runs(("throughput", "intake_accepted_per_s")),
        "services_cpu_seconds_per_case": over_runs(("throughput", "services_cpu_seconds_per_case")),
        "services_cpu_vs_floor": ratio_over_runs(("throughput", "services_cpu_seconds_per_case"),
                                                 ("floor", "throughput", "cpu_seconds_per_message")),
        "postgres_cpu_seconds_per_case": over_runs(("throughput", "postgres_cpu_seconds_per_case")),
        "postgres_cpu_vs_floor": ratio_over_runs(("throughput", "postgres_cpu_seconds_per_case"),
                                                 ("floor", "throughput", "postgres_cpu_seconds_per_message")),
        "broker_cpu_seconds_per_case": over_runs(("throughput", "broker_cpu_seconds_per_case")),
        "broker_cpu_vs_floor": ratio_over_runs(("throughput", "broker_cpu_seconds_per_case"),
                                               ("floor", "throughput", "broker_cpu_seconds_per_message")),
        "operators_cpu_seconds_per_case": over_runs(("throughput", "operators_cpu_seconds_per_case")),
        "receiver_cpu_seconds_per_case": over_runs(("throughput", "receiver_cpu_seconds_per_case")),
        "machine_cpu_seconds_per_case": over_runs(("throughput", "machine_cpu_seconds_per_case")),
        "postgres_commits_per_case": over_runs(("throughput", "postgres_commits_per_case")),
        "broker_publishes_per_case": over_runs(("throughput", "broker_publishes_per_case")),
        "broker_deliveries_per_case": over_runs(("throughput", "broker_deliveries_per_case")),
    }
    names = runs[0]["memory_mib"].keys() if runs else ()
    summary["memory_mib"] = {name: {"rss": over_runs(("memory_mib", name, "rss_mib")),
                                    "peak_rss": over_runs(("memory_mib", name, "peak_rss_mib"))} for name in names}
    summary["cpu_seconds_per_case"] = {name: over_runs(("throughput", "cpu_seconds_per_case", name))
                                       for name in names}
    p99_backlog = summary["critical_with_backlog"]["p99_ms"]["median"]
    ratio_backlog = summary["critical_with_backlog"]["p99_ms_vs_floor"]["median"]
    throughput_ratio = summary["throughput"]["per_s_vs_floor"]["median"]
    summary["targets"] = {
        "critical_p99_with_backlog_at_most_3x_floor": None if ratio_backlog is None else ratio_backlog <= 3,
        "critical_p99_with_backlog_under_100ms": None if p99_backlog is None else p99_backlog < 100,
        "throughput_at_least_half_the_floor": None if throughput_ratio is None else throughput_ratio >= 0.5,
    }
    return summary


def machine_description():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    with open("/proc/meminfo") as f:
        memory_kib = int(f.readline().split()[1])
    return {"cpu": cpu, "cores": _cores(), "memory_gib": round(memory_kib / 1024 ** 2, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "load_average_when_written": [round(v, 2) for v in os.getloadavg()]}


def _cores():
    return len(os.sched_getaffinity(0))


def harness_version():
    """The commit of the benchmark itself, and whether bench/ differs from it."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--", "bench"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    return {"commit": head or None, "bench_uncommitted_changes": bool(changed)}


def git_commit():
    exported = os.environ.get("SANAD_BENCH_EXPORTED_COMMIT")
    if exported:  # set by --at: the services are an export of exactly that commit
        return {"commit": exported, "uncommitted_changes": False,
                "patches": json.loads(os.environ.get("SANAD_BENCH_PATCHES", "[]")),
                "benchmark_from": json.loads(os.environ.get("SANAD_BENCH_HARNESS", "null"))}
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
        return {"commit": head, "uncommitted_changes": bool(dirty)}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "uncommitted_changes": None}


def run_benchmark(config, out_dir, database_url=None, amqp_uri=None, keys_file=None, extra_env=None, log=print):
    """Run everything and write the results into `out_dir`; returns the results as a dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    environment = BenchEnvironment(out_dir / "logs", database_url, amqp_uri, keys_file, extra_env)
    log(f"starting the stack (logs in {out_dir / 'logs'})")

    def results_of(runs, profile=None, rejected=None, complete=False):
        return {
            "command": os.environ.get("SANAD_BENCH_COMMAND") or command_line(sys.argv[1:]),
            "started_at": started.isoformat(timespec="seconds"),
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "complete": complete,
            "config": asdict(config),
            "git": git_commit(),
            "machine": machine_description(),
            "webhooks_rejected_by_partner": rejected,
            "summary": summarise(runs, config),
            "runs": runs,
            "profile": profile,
        }

    try:
        environment.open()
        benchmark = Benchmark(config, environment, log)
        runs = benchmark.run(after_each=lambda so_far: report.write(results_of(so_far), out_dir))
        profile = None
        if config.profile_seconds > 0:
            from bench import profiling
            log(f"profiling every service for {config.profile_seconds} s under a flood")
            profile = profiling.profile_under_load(benchmark, out_dir / "profile", config.profile_seconds)
        rejected = environment.receiver.rejected
    finally:
        environment.close()
    results = results_of(runs, profile, rejected, complete=True)
    report.write(results, out_dir)
    return results


def command_line(argv):
    return " ".join(["python -m bench", *argv])


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    for field in fields(Config):
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=type(field.default), default=None,
                            metavar=field.name.upper())
    parser.add_argument("--smoke", action="store_true", help="tiny numbers: checks that every phase runs")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/<UTC timestamp>)")
    parser.add_argument("--at", metavar="REV", help="measure the services of this commit, exported with "
                        "`git archive` into a temporary folder (with this benchmark copied in), rather than the "
                        "working tree, which others may be editing")
    parser.add_argument("--patch", action="append", default=[], metavar="FILE",
                        help="with --at: apply this patch to the export first (repeatable)")
    return parser.parse_args(argv)


@contextmanager
def exported(revision, patches=()):
    """(folder, commit): `revision` exported with `git archive` into a temporary folder, with this
    benchmark copied in and `patches` applied (an experiment on the services: see bench/experiments/);
    the working tree is left alone. The folder is removed when the block ends."""
    commit = subprocess.run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.strip()
    export = Path(tempfile.mkdtemp(prefix=f"sanad-at-{commit[:10]}-"))
    try:
        archive = subprocess.Popen(["git", "archive", commit], cwd=ROOT, stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(export)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise SystemExit(f"bench: {revision} cannot be exported")
        # The instrument is this benchmark; what is measured is the services of `revision`.
        shutil.rmtree(export / "bench", ignore_errors=True)
        shutil.copytree(ROOT / "bench", export / "bench", ignore=shutil.ignore_patterns("results", "__pycache__"))
        for patch in patches:
            subprocess.run(["git", "apply", str(Path(patch).resolve())], cwd=export, check=True)
        yield export, commit
    finally:
        shutil.rmtree(export, ignore_errors=True)


def without_options(argv, options):
    """`argv` less each of `options` and its value."""
    rest, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f"{option}=" for option in options)):
            rest.append(arg)
    return rest


def run_in_child(module, args, export, env=None):
    """Run `python -m module args` in `export`; stopping this process stops the child first."""
    child = subprocess.Popen([sys.executable, "-m", module, *args], cwd=export,
                             env={**os.environ, "PYTHONPATH": str(export), **(env or {})})
    try:
        return child.wait()
    except SystemExit:
        child.terminate()  # the child stops its stack and drops what it made
        child.wait()
        raise


def run_at(revision, argv, out, patches=()):
    """Run this same benchmark command in an export of `revision` (`exported`)."""
    with exported(revision, patches) as (export, commit):
        env = {"SANAD_BENCH_EXPORTED_COMMIT": commit,
               "SANAD_BENCH_PATCHES": json.dumps([Path(p).name for p in patches]),
               "SANAD_BENCH_HARNESS": json.dumps(harness_version()),
               "SANAD_BENCH_COMMAND": command_line(argv)}
        rest = without_options(argv, ("--at", "--out", "--patch"))
        return run_in_child("bench", [*rest, "--out", str(out.resolve())], export, env)


def stop_cleanly(signum, frame):
    """SIGTERM and SIGINT end the run through its finally blocks: the stack stopped, the database and
    vhost dropped (a shell's background job ignores SIGINT unless told otherwise)."""
    raise SystemExit(128 + signum)


def main(argv=None):
    signal.signal(signal.SIGTERM, stop_cleanly)
    signal.signal(signal.SIGINT, stop_cleanly)
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    out = args.out or RESULTS / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if args.at:
        return run_at(args.at, argv, out, args.patch)
    if args.patch:
        raise SystemExit("bench: --patch needs --at")
    config = Config.smoke() if args.smoke else Config()
    for field in fields(Config):
        value = getattr(args, field.name)
        if value is not None:
            setattr(config, field.name, value)
    started = time.monotonic()
    results = run_benchmark(config, out)
    print(report.markdown(results))
    print(f"\nwrote {out} in {time.monotonic() - started:.0f} s")
    return 0
