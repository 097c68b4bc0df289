"""Percentiles, rates and medians over repetitions: pure arithmetic, no I/O."""
import statistics

PERCENTILES = (50, 95, 99)


def percentile(values, p):
    """The p-th percentile by linear interpolation between closest ranks (numpy's default method)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds):
    """p50/p95/p99, mean and max of latencies given in seconds, in milliseconds."""
    if not seconds:
        return {"count": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None, "mean_ms": None, "max_ms": None}
    return {
        "count": len(seconds),
        **{f"p{p}_ms": round(percentile(seconds, p) * 1000, 3) for p in PERCENTILES},
        "mean_ms": round(statistics.fmean(seconds) * 1000, 3),
        "max_ms": round(max(seconds) * 1000, 3),
    }


def steady_rate(finish_times, trim=0.1):
    """Completions per second between the `trim` and 1-`trim` quantiles of the finish times, so the
    ramp-up at the start and the stragglers at the end do not count; None with too few samples."""
    if len(finish_times) < 10:
        return None
    ordered = sorted(finish_times)
    first = int(len(ordered) * trim)
    last = len(ordered) - 1 - first
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else None


def ratio(value, floor):
    if value is None or not floor:
        return None
    return round(value / floor, 3)


def median_of(values):
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values):
    """The median of the repetitions' values, with their minimum and maximum."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "runs": list(values)}
    return {"median": round(statistics.median(present), 6), "min": round(min(present), 6),
            "max": round(max(present), 6), "runs": list(values)}
