"""bench/stages.py: each stage's rate, and the stage that falls behind shown as a wait growing through the
flood."""
from bench import stages


def test_the_stage_that_falls_behind_shows_as_a_wait_growing_through_the_flood(capsys):
    # 100 cases recorded 10 ms apart; triage and referral keep up, notify finishes one every 20 ms.
    times = [(i * 0.01, i * 0.01 + 0.002, i * 0.01 + 0.004, 0.004 + i * 0.02) for i in range(100)]
    stages._report(times)
    lines = capsys.readouterr().out.splitlines()

    rates = {line.split(":")[0].strip(): round(float(line.split(":")[1].split()[0])) for line in lines[1:5]}
    assert rates == {"recorded": 100, "assessed": 100, "offered": 100, "delivered": 50}
    tenths = [[int(field) for field in line.split()] for line in lines[-10:]]
    assert [tenth[0] for tenth in tenths] == list(range(1, 11))
    assert {tenth[1] for tenth in tenths} == {2} and {tenth[2] for tenth in tenths} == {2}
    delivery_waits = [tenth[3] for tenth in tenths]
    assert delivery_waits == sorted(delivery_waits) and delivery_waits[-1] > 10 * delivery_waits[0]
