"""Writing the results: results.json (every figure and every latency sample), results.md (a short
table) and latency.png (the distribution of critical latency with and without the backlog)."""
import json
from pathlib import Path

from bench import stats

LATENCY_ROWS = (
    ("floor", "floor: bare 4-hop pipeline, paced"),
    ("critical_alone", "critical case, no backlog"),
    ("critical_with_backlog", "critical case, behind the normal backlog"),
    ("normal_at_50pct", "normal case at 50% of throughput"),
    ("normal_at_90pct", "normal case at 90% of throughput"),
)


def write(results, out_dir):
    out_dir = Path(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    (out_dir / "results.md").write_text(markdown(results) + "\n")
    results["plot"] = plot(results, out_dir / "latency.png")
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")


def _cut_short(results):
    if results.get("complete", True):
        return ""
    return f" (the run was cut short: {results['config']['repetitions']} were asked for)"


def _fmt(value, digits=1):
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    return f"{value:,.{digits}f}"


def _cell(spread, digits=1):
    if spread["median"] is None:
        return "–"
    if len([v for v in spread["runs"] if v is not None]) < 2:
        return _fmt(spread["median"], digits)
    return f"{_fmt(spread['median'], digits)} ({_fmt(spread['min'], digits)}–{_fmt(spread['max'], digits)})"


def _precedence_waits(backlog):
    """A sentence on intake's waits for critical requests, or nothing for a commit that does not count them."""
    cleared, limit = backlog.get("precedence_waits_cleared"), backlog.get("precedence_waits_limit")
    if not cleared or cleared["median"] is None:
        return ""
    return (f" Intake's other requests waited for a critical one to go first {_cell(cleared, 0)} times until "
            f"it had, and {_cell(limit, 0)} times until the wait's 0.1 s limit.")


def markdown(results):
    s = results["summary"]
    cfg = results["config"]
    lines = [
        f"Sanad benchmark, {results['started_at']}, commit {str(results['git']['commit'])[:10]}"
        f"{' (with uncommitted changes)' if results['git']['uncommitted_changes'] else ''}"
        f"{''.join(f' + {p}' for p in results['git'].get('patches', []))}; "
        f"{results['machine']['cores']} cores, {results['machine']['cpu']}.",
        f"Medians of {len(results['runs'])} repetitions{_cut_short(results)}"
        " (min–max in brackets); ratios are to the floor of the same repetition.",
        "",
        "| latency, 201 → verified webhook (ms) | p50 | p95 | p99 | p50 / floor | p99 / floor |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in LATENCY_ROWS:
        if key == "floor":
            f = s["floor"]
            lines.append(f"| {label} | {_cell(f['latency_p50_ms'])} | {_cell(f['latency_p95_ms'])} | "
                         f"{_cell(f['latency_p99_ms'])} | 1 | 1 |")
            continue
        row = s[key]
        lines.append(f"| {label} | {_cell(row['p50_ms'])} | {_cell(row['p95_ms'])} | {_cell(row['p99_ms'])} | "
                     f"{_cell(row['p50_ms_vs_floor'], 2)} | {_cell(row['p99_ms_vs_floor'], 2)} |")
    t = s["throughput"]
    backlog = s["critical_with_backlog"]
    lines += [
        "",
        f"Critical cases measured behind the backlog: {_cell(backlog['measured_under_backlog'], 0)} of "
        f"{cfg['critical_cases']}, sent while {cfg['backlog_cases']:,} normal cases flooded intake; at each "
        f"critical case's 201, normal cases accepted but not yet delivered (median): "
        f"{_cell(backlog['normal_in_flight_at_critical'], 0)}, still waiting for intake to accept them: "
        f"{_cell(backlog['normal_not_yet_accepted_at_critical'], 0)}. Intake answered the critical cases in "
        f"{_cell(backlog['intake_answer_p99_ms'])} ms (p99), time the latencies above leave out; from the "
        f"moment the operator's request left to the verified webhook, intake's time included, critical cases "
        f"took {_cell(s['critical_alone']['from_send_p50_ms'])} / {_cell(s['critical_alone']['from_send_p99_ms'])} "
        f"ms (p50 / p99) alone and {_cell(backlog['from_send_p50_ms'])} / {_cell(backlog['from_send_p99_ms'])} "
        f"ms behind the backlog. Intake's "
        f"case views (what operators see) showed every case delivered "
        f"{_cell(backlog['intake_views_behind_partners_s'])} s after the partners had every webhook."
        + _precedence_waits(backlog),
        "",
        "| throughput and cost | stack | floor | stack / floor |",
        "|---|---|---|---|",
        f"| cases (messages) per second, received → delivered | {_cell(t['per_s'])} | "
        f"{_cell(s['floor']['throughput_per_s'])} | {_cell(t['per_s_vs_floor'], 2)} |",
        f"| CPU ms per case, all service processes (floor: its four hops) | "
        f"{_cell(_scaled(t['services_cpu_seconds_per_case']), 2)} | "
        f"{_cell(_scaled(s['floor']['cpu_seconds_per_message']), 2)} | {_cell(t['services_cpu_vs_floor'], 1)} |",
        f"| CPU ms per case, PostgreSQL backends of the benchmark's database | "
        f"{_cell(_scaled(t['postgres_cpu_seconds_per_case']), 2)} | "
        f"{_cell(_scaled(s['floor']['postgres_cpu_seconds_per_message']), 2)} | {_cell(t['postgres_cpu_vs_floor'], 1)} |",
        f"| CPU ms per case, RabbitMQ (the whole broker) | "
        f"{_cell(_scaled(t['broker_cpu_seconds_per_case']), 2)} | "
        f"{_cell(_scaled(s['floor']['broker_cpu_seconds_per_message']), 2)} | {_cell(t['broker_cpu_vs_floor'], 1)} |",
        f"| CPU ms per case, the benchmark's flooding operators / the partners' receiver | "
        f"{_cell(_scaled(t['operators_cpu_seconds_per_case']), 2)} / "
        f"{_cell(_scaled(t['receiver_cpu_seconds_per_case']), 2)} | | |",
        f"| CPU ms per case, whole machine (shared: includes RabbitMQ, the client, others' work) | "
        f"{_cell(_scaled(t['machine_cpu_seconds_per_case']), 2)} | | |",
        f"| cases per second intake accepted during the flood | {_cell(t['intake_accepted_per_s'])} | | |",
        f"| PostgreSQL commits per case (floor: 5 per message) | {_cell(t['postgres_commits_per_case'])} | 5 | |",
        f"| broker messages published / delivered per case (floor: 4 / 4) | "
        f"{_cell(t['broker_publishes_per_case'])} / {_cell(t['broker_deliveries_per_case'])} | 4 / 4 | |",
        "",
        "| service process | RSS after the flood (MiB) | peak RSS (MiB) | CPU ms per case |",
        "|---|---|---|---|",
    ]
    for name, memory in s["memory_mib"].items():
        lines.append(f"| {name} | {_cell(memory['rss'])} | {_cell(memory['peak_rss'])} | "
                     f"{_cell(_scaled(s['cpu_seconds_per_case'][name]), 2)} |")
    lines += _stage_lines(results["runs"])
    profile = results.get("profile")
    if profile:
        lines += ["", f"Profile (py-spy, {profile['seconds']:.0f} s under a flood): where each service's busy "
                  "time went.", "", "| service | busy | largest shares of busy samples |", "|---|---|---|"]
        for name, summary in profile["services"].items():
            if "error" in summary:
                lines.append(f"| {name} | – | py-spy failed: {summary['error'][:80]} |")
                continue
            busy = None if summary["idle_share"] is None else 1 - summary["idle_share"]
            parts = ", ".join(f"{c['what']} {c['share']:.0%}" for c in summary["by_component"][:4])
            lines.append(f"| {name} | {_fmt(busy and busy * 100, 0)}% | {parts} |")
    lines += ["", "| target | met |", "|---|---|"]
    for name, met in s["targets"].items():
        lines.append(f"| {name.replace('_', ' ')} | {_fmt(met)} |")
    return "\n".join(lines)


STAGES = (
    ("received_to_partner", "intake recorded the case → the partner has the verified webhook (the whole path)"),
    ("answered_to_triaged", "intake's 201 → triage has assessed it"),
    ("triaged_to_referred", "→ referral has offered it"),
    ("referred_to_partner", "→ the partner has the verified webhook"),
    ("referred_to_request", "of which: referral's offer → notify starts the request"),
    ("request_to_partner", "of which: the request → the partner has verified it"),
    ("partner_to_answer_recorded", "(→ notify has recorded the partner's answer)"),
)


def _stage_lines(runs):
    """Where a sample of critical cases spent their time (Benchmark.stages): medians over repetitions of
    each repetition's p50 and p99."""
    def spread(phase, stage, figure):
        return _fmt(stats.median_of([run["stages"][phase].get(stage, {}).get(figure) for run in runs]))
    lines = ["", "Where a sample of critical cases spent their time (ms; medians over repetitions):", "",
             "| stage | p50, no backlog | p99, no backlog | p50, behind the backlog | p99, behind the backlog |",
             "|---|---|---|---|---|"]
    for stage, label in STAGES:
        cells = [spread(phase, stage, figure) for phase in ("critical_alone", "critical_with_backlog")
                 for figure in ("p50_ms", "p99_ms")]
        lines.append(f"| {label} | {' | '.join(cells)} |")
    left_out = []
    for number, run in enumerate(runs, 1):
        stages = run["stages"]["critical_with_backlog"]
        if "received_to_partner" not in stages:
            left_out.append(f"repetition {number}, whose wall clock moved {stages['wall_clock_moved_ms']:+,.1f} ms")
    if left_out:
        lines += ["", f"Left out: {'; '.join(left_out)} against the monotonic clock while it ran (the stages set "
                  "the two clocks side by side)."]
    return lines


def _scaled(spread, factor=1000):
    """Seconds to milliseconds, for a spread of values."""
    def scale(v):
        return None if v is None else v * factor
    return {"median": scale(spread["median"]), "min": scale(spread["min"]), "max": scale(spread["max"]),
            "runs": [scale(v) for v in spread["runs"]]}


def plot(results, path):
    """The cumulative distribution of critical latency alone and behind the backlog, and the floor's.
    Returns the file name, or None when matplotlib is not installed (it is a benchmark-only dependency)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series = (
        ("floor", "floor (bare 4-hop pipeline)", "tab:gray"),
        ("critical_alone", "critical, no backlog", "tab:blue"),
        ("critical_with_backlog", "critical, behind the normal backlog", "tab:red"),
    )
    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for key, label, colour in series:
        samples = sorted(v * 1000 for run in results["runs"] for v in run["samples_s"][key])
        if not samples:
            continue
        share = [(i + 1) / len(samples) for i in range(len(samples))]
        axes.step(samples, share, where="post", label=f"{label} (n={len(samples)})", color=colour)
    axes.axhline(0.99, color="black", linewidth=0.5, linestyle=":")
    axes.axvline(100, color="black", linewidth=0.5, linestyle="--")
    axes.set_xscale("log")
    axes.set_xlabel("latency from intake's 201 to the verified webhook (ms, log scale)")
    axes.set_ylabel("share of cases")
    axes.set_title(f"Critical latency, all {results['config']['repetitions']} repetitions pooled")
    axes.legend(loc="lower right", fontsize="small")
    axes.grid(True, which="both", linewidth=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path).name
