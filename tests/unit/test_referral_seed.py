"""The fictional Dhi Qar seed directory loads, is well formed, and matching on it behaves as a counsellor
would expect at the hours that matter; a broken seed file is refused saying where."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sanad.contracts.vocabulary import SERVICE_TYPES
from services.referral.matching import Partner, Preferences, rank, route
from services.referral.seed import SeedError, load

SEED = Path(__file__).resolve().parents[2] / "deploy" / "seed" / "dhi_qar_partners.yaml"
SUNDAY_10_IN_NASIRIYAH = datetime(2024, 3, 10, 7, 0, tzinfo=timezone.utc)
FRIDAY_23_IN_NASIRIYAH = datetime(2024, 3, 8, 20, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def seeded():
    return load(SEED)


@pytest.fixture(scope="module")
def directory(seeded):
    """The seed as matching sees it: one Partner per (organisation, service)."""
    return [Partner(id=p.entry.name, name=p.entry.name, services=(t.service,), governorates=t.governorates,
                    accepting=p.entry.accepting, always_open=t.always_open, hours=t.hours,
                    staff_genders=t.staff_genders, languages=t.languages, min_age=t.min_age, max_age=t.max_age,
                    contacts_family=t.contacts_family)
            for p in seeded for t in p.entry.services]


def test_the_seed_is_fictional_and_covers_every_service_in_dhi_qar(seeded):
    assert all("(fictional)" in p.entry.name for p in seeded)
    assert all(".example.org/" in p.webhook_url for p in seeded), "reserved domain: no real server is called"
    offered = {t.service for p in seeded for t in p.entry.services if "dhi_qar" in t.governorates
               or "nationwide" in t.governorates}
    assert offered == set(SERVICE_TYPES)


def test_the_shelter_keeps_its_address_confidential_and_mediation_contacts_the_family(seeded):
    shelters = [p.entry for p in seeded if any(t.service == "shelter" for t in p.entry.services)]
    assert shelters and all(s.confidential_address for s in shelters)
    assert all(t.contacts_family for p in seeded for t in p.entry.services if t.service == "mediation")


def test_on_a_friday_night_a_critical_counselling_need_goes_to_the_24_7_line(directory):
    routing = route(["counselling"], ["counselling"], "dhi_qar", directory, FRIDAY_23_IN_NASIRIYAH)
    assert [m.partner.name for m in routing.matches] == ["Amal Nationwide Support Line (fictional)"]


def test_on_a_sunday_morning_a_victim_asking_for_a_woman_goes_to_the_local_women_s_centre(directory):
    ranking = rank("counselling", "dhi_qar", directory, SUNDAY_10_IN_NASIRIYAH, Preferences(staff_gender="female"))
    assert ranking.best.name == "Nakhla Centre for Women's Counselling (fictional)"


def test_the_clinic_at_capacity_is_passed_over_and_says_so(directory):
    ranking = rank("legal_aid", "dhi_qar", directory, SUNDAY_10_IN_NASIRIYAH)
    assert ("Rifai Legal Aid Clinic (fictional)", "not_accepting") in [
        (o.partner.name, o.reason) for o in ranking.passed_over]


def test_a_minor_needing_the_police_is_not_sent_to_the_office_that_tells_her_family_unless_she_agreed(directory):
    minor = Preferences(victim_age=16)
    assert rank("police_cybercrime", "dhi_qar", directory, SUNDAY_10_IN_NASIRIYAH, minor).best is None
    agreed = Preferences(victim_age=16, family_contact=True)
    assert rank("police_cybercrime", "dhi_qar", directory, SUNDAY_10_IN_NASIRIYAH, agreed).best.name == \
        "Nasiriyah Juvenile Protection Office (fictional)"


def test_a_broken_seed_file_is_refused_saying_which_entry_and_field(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("partners:\n  - name: A (fictional)\n    webhook_url: https://a.example.org/h\n"
                      "    services:\n      - service: counselling\n        governorates: [dhi_qar]\n"
                      "        hours: ['sun-thu 16:00-08:00']\n")
    with pytest.raises(SeedError, match=r"partners\[0\]\.services\[0\]\.hours"):
        load(broken)
    broken.write_text("partners:\n  - name: B (fictional)\n    webhook_url: https://b.example.org/h\n"
                      "    services:\n      - service: babysitting\n        governorates: [dhi_qar]\n"
                      "        always_open: true\n")
    with pytest.raises(SeedError, match=r"partners\[0\].*services\.0\.service"):
        load(broken)
