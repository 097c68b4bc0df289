"""bench/report.py: a repetition whose wall clock moved gives no stage figures, and the table says why."""
from bench import report


def stage(p50, p99):
    return {"count": 40, "p50_ms": p50, "p99_ms": p99}


def repetition(moved_ms, whole_path=None):
    stages = {"wall_clock_moved_ms": moved_ms}
    if whole_path is not None:
        stages["received_to_partner"] = stage(*whole_path)
    return {"stages": {"critical_alone": stages, "critical_with_backlog": stages}}


def test_a_repetition_whose_wall_clock_moved_is_left_out_of_the_stages_and_named():
    lines = report._stage_lines([repetition(0.02, (40.0, 90.0)), repetition(-245.3)])
    whole_path = next(line for line in lines if line.startswith("| intake recorded the case"))
    assert whole_path.endswith("| 40.0 | 90.0 | 40.0 | 90.0 |")
    assert lines[-1].startswith("Left out: repetition 2, whose wall clock moved -245.3 ms")


def test_nothing_is_left_out_while_the_clocks_held():
    lines = report._stage_lines([repetition(0.02, (40.0, 90.0))])
    assert not any(line.startswith("Left out") for line in lines)
