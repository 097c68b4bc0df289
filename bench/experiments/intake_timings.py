"""Summarise what bench/experiments/intake_timings.patch logged: the steps of intake's handler for each
critical case, with no flood and behind it (docs/performance-runs.md, "Inside intake").

    python -m bench --at REV --patch bench/experiments/intake_timings.patch --repetitions 1 ... --out DIR
    python bench/experiments/intake_timings.py DIR/logs/intake.log [critical cases a phase, default 300]

The patch is written against intake's handler as b9bd637 left it; for an older commit, the marks go in the
same places by hand. Each repetition logs the warm-up's critical cases, then those sent with no flood, then those behind the
flood: the last repetition's two phases are read by count from the end of the log."""
import json
import sys

# (label, where the step begins: the first of these marks the case has, where it ends)
STEPS = (
    ("reading, checking and screening the body before the caller's check (a caller allowed lately)",
     ("start",), "read_first"),
    ("the caller's check (BEGIN and the first round trip)", ("read_first", "start"), "authorised"),
    ("reading, checking and screening the body after the check", ("authorised",), "screened"),
    ("the case's insert", ("screened", "authorised"), "inserted"),
    ("audit and outbox rows with COMMIT", ("inserted",), "committed"),
    ("the answer handed to the HTTP server, then the event published with the broker's confirm",
     ("committed",), "published"),
    ("the whole handler", ("start",), "published"),
)


def cases(path):
    with open(path, encoding="utf-8") as log:
        for line in log:
            if "intake timings" in line:
                message = json.loads(line)["message"]
                yield dict(json.loads(message.split(" ", 2)[2]))


def percentile(values, share):
    ordered = sorted(values)
    return ordered[int(share * (len(ordered) - 1))]


def main(path, per_phase=300):
    everything = list(cases(path))
    phases = {"no flood": everything[-2 * per_phase:-per_phase], "behind the flood": everything[-per_phase:]}
    print(f"| step (ms, p50 / p90 / p99) | {' | '.join(f'{name} ({len(rows)})' for name, rows in phases.items())} |")
    print("|---" * (1 + len(phases)) + "|")
    for label, begins, end in STEPS:
        cells = []
        for rows in phases.values():
            spans = [row[end] - row[begin] for row in rows if end in row
                     for begin in [next((mark for mark in begins if mark in row), None)] if begin is not None]
            cells.append(" / ".join(f"{percentile(spans, share):.1f}" for share in (0.5, 0.9, 0.99)) if spans else "")
        print(f"| {label} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main(sys.argv[1], *(int(arg) for arg in sys.argv[2:3]))
