"""services/intake/slots.py: how many normal cases intake records at once, and who never waits for a slot."""
import eventlet
import eventlet.event
import pytest
from prometheus_client import REGISTRY

from services.intake.slots import RecordingSlots, Slots


def recording(slots, lane, log, name, release=None):
    """A green thread recording one case on `lane`: it logs when it holds its slot, and keeps it until
    `release` (an eventlet Event) is sent."""
    def record():
        with slots.held_for(lane):
            log.append(name)
            if release is not None:
                release.wait()
    return eventlet.spawn(record)


def test_a_normal_case_waits_while_every_slot_is_held_and_goes_in_when_one_is_freed():
    slots, log = Slots(2), []
    releases = [eventlet.event.Event(), eventlet.event.Event()]
    holders = [recording(slots, "normal", log, f"holder {i}", release) for i, release in enumerate(releases)]
    eventlet.sleep(0)
    waiting = recording(slots, "normal", log, "third")
    eventlet.sleep(0.05)
    assert log == ["holder 0", "holder 1"], "the third normal case waits: both slots are held"

    releases[0].send()
    waiting.wait()
    assert log == ["holder 0", "holder 1", "third"]
    releases[1].send()
    for holder in holders:
        holder.wait()


@pytest.mark.parametrize("lane", ["critical", None])
def test_a_critical_case_or_one_whose_lane_is_not_known_yet_takes_no_slot(lane):
    slots, log = Slots(1), []
    release = eventlet.event.Event()
    holder = recording(slots, "normal", log, "holder", release)
    eventlet.sleep(0)

    with eventlet.Timeout(1):
        recording(slots, lane, log, "unslotted").wait()
    assert log == ["holder", "unslotted"], "it went in while the only slot was held"
    release.send()
    holder.wait()


def slot_waits():
    """(waits measured so far, those of them of 25 ms or less)."""
    name = "sanad_intake_recording_slot_wait_seconds"
    return (REGISTRY.get_sample_value(f"{name}_count"),
            REGISTRY.get_sample_value(f"{name}_bucket", {"le": "0.025"}))


def test_each_wait_for_a_slot_is_measured_and_a_critical_case_has_none():
    slots, log = Slots(1), []
    waits_before, short_before = slot_waits()
    release = eventlet.event.Event()
    holder = recording(slots, "normal", log, "holder", release)
    eventlet.sleep(0)
    recording(slots, "critical", log, "critical").wait()
    waiting = recording(slots, "normal", log, "second")
    eventlet.sleep(0.05)
    release.send()
    waiting.wait()
    holder.wait()

    waits, short = slot_waits()
    assert waits - waits_before == 2, "the two normal cases' waits, not the critical one's"
    assert short - short_before == 1, "the first found its slot free; the second waited about 50 ms"


def test_a_slot_is_given_back_when_recording_fails():
    slots = Slots(1)
    with pytest.raises(RuntimeError):
        with slots.held_for("normal"):
            raise RuntimeError("the database went away")
    with eventlet.Timeout(1):
        with slots.held_for("normal"):
            pass


def assert_setting_gives_slots(monkeypatch, setting, count):
    """With SANAD_INTAKE_RECORDING_SLOTS set to `setting`, the provider's slots let `count` normal cases
    in at once, and the next one waits until they are freed."""
    monkeypatch.setenv("SANAD_INTAKE_RECORDING_SLOTS", setting)
    provider = RecordingSlots()
    provider.setup()
    slots, log = provider.get_dependency(None), []
    release = eventlet.event.Event()
    holders = [recording(slots, "normal", log, f"holder {n}", release) for n in range(count)]
    eventlet.sleep(0)
    waiting = recording(slots, "normal", log, "next")
    eventlet.sleep(0.05)
    assert sorted(log) == [f"holder {n}" for n in range(count)]
    release.send()
    waiting.wait()
    for holder in holders:
        holder.wait()
    assert log[-1] == "next"


def test_the_number_of_slots_comes_from_the_environment_and_must_be_a_whole_number_of_at_least_one(monkeypatch):
    assert_setting_gives_slots(monkeypatch, "1", 1)

    for wrong in ("0", "three", "-1", "²", "2.5"):
        monkeypatch.setenv("SANAD_INTAKE_RECORDING_SLOTS", wrong)
        with pytest.raises(ValueError, match="SANAD_INTAKE_RECORDING_SLOTS"):
            RecordingSlots().setup()


def test_an_empty_slot_setting_means_the_default_of_three(monkeypatch):
    assert_setting_gives_slots(monkeypatch, "", 3)
