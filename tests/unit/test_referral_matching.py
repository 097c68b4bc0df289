"""Which partner each consented need goes to, and which needs no partner can take."""
import random

import pytest

from services.referral.matching import Match, Partner, Routing, referable_services, route


def partner(name, services, governorates, accepting=True, open_referrals=0):
    return Partner(id=f"id-{name}", name=name, services=tuple(services), governorates=tuple(governorates),
                   accepting=accepting, open_referrals=open_referrals)


BASRA_LEGAL = partner("Basra Legal Aid", ["legal_aid"], ["basra"])
BASRA_COUNSEL = partner("Basra Counselling", ["counselling"], ["basra", "maysan"])
NATIONAL_HELPLINE = partner("National Helpline", ["counselling", "legal_aid", "content_removal"], ["nationwide"])
ERBIL_SHELTER = partner("Erbil Shelter", ["shelter"], ["erbil"])
TRIBAL_MEDIATOR = partner("Basra Tribal Council", ["mediation"], ["basra"])
DIRECTORY = [BASRA_LEGAL, BASRA_COUNSEL, NATIONAL_HELPLINE, ERBIL_SHELTER, TRIBAL_MEDIATOR]


def chosen(routing):
    return {match.service: match.partner.name for match in routing.matches}


# Consent

def test_only_consented_needs_are_referred_in_the_order_the_needs_were_recorded():
    assert referable_services(["shelter", "counselling", "legal_aid"], ["legal_aid", "shelter"]) == [
        "shelter", "legal_aid"]


def test_consent_for_something_not_needed_refers_nothing_for_it():
    assert referable_services(["counselling"], ["counselling", "legal_aid"]) == ["counselling"]


def test_a_need_without_consent_is_neither_referred_nor_reported_unmatched():
    routing = route(["counselling", "legal_aid"], ["counselling"], "basra", DIRECTORY)
    assert chosen(routing) == {"counselling": "Basra Counselling"}
    assert routing.unmatched == ()


def test_no_consent_at_all_refers_nothing():
    assert route(["counselling", "legal_aid"], [], "basra", DIRECTORY) == Routing(matches=(), unmatched=())


def test_mediation_is_never_referred_without_consent_even_when_a_mediator_serves_the_governorate():
    routing = route(["mediation", "counselling"], ["counselling"], "basra", DIRECTORY)
    assert "mediation" not in chosen(routing)
    assert all(match.partner is not TRIBAL_MEDIATOR for match in routing.matches)
    assert "mediation" not in routing.unmatched


def test_mediation_is_referred_when_the_victim_needs_and_consents_to_it():
    routing = route(["mediation"], ["mediation"], "basra", DIRECTORY)
    assert routing.matches == (Match("mediation", TRIBAL_MEDIATOR),)


def test_consent_alone_without_a_recorded_need_does_not_refer_mediation():
    routing = route(["counselling"], ["counselling", "mediation"], "basra", DIRECTORY)
    assert "mediation" not in chosen(routing)


def test_a_partner_offering_mediation_is_not_picked_for_another_service_it_does_not_offer():
    routing = route(["legal_aid"], ["legal_aid"], "basra", [TRIBAL_MEDIATOR])
    assert routing == Routing(matches=(), unmatched=("legal_aid",))


# Where partners work, and whether they take cases

def test_partner_in_another_governorate_is_not_chosen():
    routing = route(["shelter"], ["shelter"], "basra", DIRECTORY)
    assert routing == Routing(matches=(), unmatched=("shelter",))


def test_partner_serving_the_governorate_among_several_is_chosen():
    routing = route(["counselling"], ["counselling"], "maysan", [BASRA_COUNSEL])
    assert chosen(routing) == {"counselling": "Basra Counselling"}


def test_nationwide_partner_serves_a_governorate_no_local_partner_covers():
    routing = route(["legal_aid", "content_removal"], ["legal_aid", "content_removal"], "halabja", DIRECTORY)
    assert chosen(routing) == {"legal_aid": "National Helpline", "content_removal": "National Helpline"}
    assert routing.unmatched == ()


def test_partner_not_accepting_new_cases_is_never_chosen_even_when_it_is_the_only_one():
    closed = partner("Basra Legal Aid", ["legal_aid"], ["basra"], accepting=False)
    assert route(["legal_aid"], ["legal_aid"], "basra", [closed]) == Routing(matches=(), unmatched=("legal_aid",))


def test_partner_not_accepting_is_skipped_for_the_next_best():
    closed_local = partner("Basra Legal Aid", ["legal_aid"], ["basra"], accepting=False)
    routing = route(["legal_aid"], ["legal_aid"], "basra", [closed_local, NATIONAL_HELPLINE])
    assert chosen(routing) == {"legal_aid": "National Helpline"}


# Preference among those who can take it

def test_local_partner_comes_before_a_nationwide_one_even_with_more_open_referrals():
    busy_local = partner("Basra Legal Aid", ["legal_aid"], ["basra"], open_referrals=40)
    idle_national = partner("National Helpline", ["legal_aid"], ["nationwide"], open_referrals=0)
    routing = route(["legal_aid"], ["legal_aid"], "basra", [idle_national, busy_local])
    assert chosen(routing) == {"legal_aid": "Basra Legal Aid"}


def test_partner_listing_both_the_governorate_and_nationwide_counts_as_local():
    both = partner("Zeta Both", ["legal_aid"], ["nationwide", "basra"], open_referrals=5)
    national = partner("Alpha National", ["legal_aid"], ["nationwide"], open_referrals=0)
    assert chosen(route(["legal_aid"], ["legal_aid"], "basra", [national, both])) == {"legal_aid": "Zeta Both"}


def test_among_local_partners_the_one_with_fewest_open_referrals_is_chosen():
    partners = [
        partner("Alpha Legal", ["legal_aid"], ["basra"], open_referrals=7),
        partner("Zulu Legal", ["legal_aid"], ["basra"], open_referrals=2),
        partner("Mike Legal", ["legal_aid"], ["basra"], open_referrals=3),
    ]
    assert chosen(route(["legal_aid"], ["legal_aid"], "basra", partners)) == {"legal_aid": "Zulu Legal"}


def test_among_nationwide_partners_the_one_with_fewest_open_referrals_is_chosen():
    partners = [
        partner("Alpha National", ["counselling"], ["nationwide"], open_referrals=9),
        partner("Bravo National", ["counselling"], ["nationwide"], open_referrals=1),
    ]
    assert chosen(route(["counselling"], ["counselling"], "duhok", partners)) == {"counselling": "Bravo National"}


def test_equal_partners_are_broken_by_name_whatever_order_the_directory_lists_them():
    partners = [
        partner("Nour Centre", ["counselling"], ["basra"], open_referrals=3),
        partner("Amal Centre", ["counselling"], ["basra"], open_referrals=3),
        partner("Salam Centre", ["counselling"], ["basra"], open_referrals=3),
    ]
    for seed in range(6):
        shuffled = partners[:]
        random.Random(seed).shuffle(shuffled)
        assert chosen(route(["counselling"], ["counselling"], "basra", shuffled)) == {"counselling": "Amal Centre"}


def test_each_service_is_matched_on_its_own_merits():
    routing = route(["counselling", "legal_aid"], ["counselling", "legal_aid"], "basra", DIRECTORY)
    assert routing.matches == (Match("counselling", BASRA_COUNSEL), Match("legal_aid", BASRA_LEGAL))


# What cannot be matched

def test_consented_services_no_partner_can_take_are_reported_in_need_order():
    routing = route(["shelter", "counselling", "medical"], ["medical", "counselling", "shelter"], "basra",
                    DIRECTORY)
    assert chosen(routing) == {"counselling": "Basra Counselling"}
    assert routing.unmatched == ("shelter", "medical")


def test_empty_directory_reports_every_consented_need_unmatched():
    routing = route(["counselling", "legal_aid"], ["counselling", "legal_aid"], "basra", [])
    assert routing == Routing(matches=(), unmatched=("counselling", "legal_aid"))


def test_routing_is_immutable_tuples():
    routing = route(["counselling"], ["counselling"], "basra", DIRECTORY)
    assert isinstance(routing.matches, tuple) and isinstance(routing.unmatched, tuple)
    with pytest.raises(AttributeError):
        routing.matches = ()


# Opening hours (Iraq time, UTC+3 all year)

from datetime import datetime, time, timezone  # noqa: E402

from services.referral.matching import (  # noqa: E402
    Hours, Preferences, family_contact_asked, is_open, may_refer_anyway, rank,
)

SUNDAY_TO_THURSDAY_8_TO_14 = tuple(Hours(day, time(8), time(14)) for day in (6, 0, 1, 2, 3))
OFFICE = partner("Nasiriyah Legal Office", ["legal_aid"], ["dhi_qar"])
OFFICE = Partner(**{**OFFICE.__dict__, "always_open": False, "hours": SUNDAY_TO_THURSDAY_8_TO_14})


def utc(*args):
    return datetime(*args, tzinfo=timezone.utc)


def test_a_partner_with_hours_is_open_inside_them_in_iraq_time_not_utc():
    sunday_0830_in_iraq = utc(2024, 3, 10, 5, 30)
    assert is_open(OFFICE, sunday_0830_in_iraq)
    sunday_0730_in_iraq_but_0830_somewhere_else = utc(2024, 3, 10, 4, 30)
    assert not is_open(OFFICE, sunday_0730_in_iraq_but_0830_somewhere_else)


def test_closing_time_is_exclusive_and_friday_is_closed():
    assert not is_open(OFFICE, utc(2024, 3, 10, 11, 0)), "14:00 in Nasiriyah: closed"
    assert is_open(OFFICE, utc(2024, 3, 10, 10, 59))
    assert not is_open(OFFICE, utc(2024, 3, 8, 7, 0)), "Friday 10:00: closed"


def test_a_night_service_open_to_midnight_and_from_midnight_is_never_closed_in_between():
    from services.referral.directory import hours_as_data, parse_hours
    nights = parse_hours("sun-thu 20:00-24:00") + parse_hours("mon-fri 00:00-08:00")
    night_line = Partner(**{**OFFICE.__dict__, "always_open": False, "hours": nights})
    sunday_2359_30_in_iraq = datetime(2024, 3, 10, 20, 59, 30, tzinfo=timezone.utc)
    assert is_open(night_line, sunday_2359_30_in_iraq)
    assert is_open(night_line, datetime(2024, 3, 10, 20, 59, 59, 999999, tzinfo=timezone.utc))
    assert is_open(night_line, utc(2024, 3, 10, 21, 0)), "Monday 00:00"
    assert not is_open(night_line, utc(2024, 3, 10, 16, 59)), "Sunday 19:59"
    assert hours_as_data(parse_hours("sun 20:00-24:00")) == [{"weekday": 6, "opens": "20:00", "closes": "24:00"}]


@pytest.mark.parametrize("text", ["sun 24:00-08:00", "sun 20:00-24:01", "sun 20:00-25:00"])
def test_24_00_is_only_a_closing_time(text):
    from services.referral.directory import parse_hours
    with pytest.raises(ValueError, match="or 24:00 to close at midnight"):
        parse_hours(text)


def test_a_partner_with_hours_needs_the_time_to_be_judged():
    with pytest.raises(ValueError):
        is_open(OFFICE, None)


def test_a_closed_partner_is_passed_over_for_a_24_7_one_and_the_ranking_says_why():
    night = utc(2024, 3, 10, 20, 0)  # 23:00 in Nasiriyah
    helpline = partner("National Helpline", ["legal_aid"], ["nationwide"])
    ranking = rank("legal_aid", "dhi_qar", [OFFICE, helpline], night)
    assert ranking.best is helpline
    assert [(o.partner.name, o.reason) for o in ranking.passed_over] == [("Nasiriyah Legal Office", "closed_now")]


def test_an_open_local_office_beats_a_24_7_nationwide_partner_in_its_hours():
    helpline = partner("National Helpline", ["legal_aid"], ["nationwide"])
    assert rank("legal_aid", "dhi_qar", [helpline, OFFICE], utc(2024, 3, 10, 6, 0)).best is OFFICE


# Preferences

FEMALE_COUNSEL = Partner(id="f", name="Zainab Centre", services=("counselling",), governorates=("dhi_qar",),
                         staff_genders=("female",), languages=("ar",), open_referrals=9)
MALE_COUNSEL = Partner(id="m", name="Ahmed Centre", services=("counselling",), governorates=("dhi_qar",),
                       staff_genders=("male",), languages=("ar", "en"), open_referrals=0)


def test_a_victim_asking_for_a_female_counsellor_never_gets_a_male_one_even_if_he_is_less_busy():
    ranking = rank("counselling", "dhi_qar", [MALE_COUNSEL, FEMALE_COUNSEL],
                   preferences=Preferences(staff_gender="female"))
    assert ranking.eligible == (FEMALE_COUNSEL,)
    assert [(o.partner.id, o.reason) for o in ranking.passed_over] == [("m", "no_staff_gender")]


def test_without_a_gender_preference_the_less_busy_partner_is_chosen():
    assert rank("counselling", "dhi_qar", [FEMALE_COUNSEL, MALE_COUNSEL]).best is MALE_COUNSEL


def test_when_nobody_fits_the_preference_the_need_is_unmatched_not_given_to_someone_unfit():
    routing = route(["counselling"], ["counselling"], "dhi_qar", [MALE_COUNSEL],
                    preferences=Preferences(staff_gender="female"))
    assert routing == Routing(matches=(), unmatched=("counselling",))


def test_a_language_preference_passes_over_partners_who_list_other_languages_only():
    ranking = rank("counselling", "dhi_qar", [FEMALE_COUNSEL, MALE_COUNSEL], preferences=Preferences(language="en"))
    assert ranking.eligible == (MALE_COUNSEL,)
    assert ranking.passed_over[0].reason == "no_language"


def test_a_minor_is_not_referred_to_a_partner_serving_adults_only():
    adults = Partner(id="a", name="Adults Only", services=("shelter",), governorates=("dhi_qar",), min_age=18)
    ranking = rank("shelter", "dhi_qar", [adults], preferences=Preferences(victim_age=16))
    assert ranking.eligible == () and ranking.passed_over[0].reason == "age_ineligible"
    assert rank("shelter", "dhi_qar", [adults], preferences=Preferences(victim_age=18)).best is adults


# Family contact

POLICE_CALLS_FAMILY = Partner(id="p", name="Cybercrime Unit", services=("police_cybercrime",),
                              governorates=("dhi_qar",), contacts_family=True)


def test_a_partner_that_contacts_the_family_is_never_chosen_unless_the_victim_asked_for_that():
    routing = route(["police_cybercrime"], ["police_cybercrime"], "dhi_qar", [POLICE_CALLS_FAMILY])
    assert routing.unmatched == ("police_cybercrime",)
    assert rank("police_cybercrime", "dhi_qar", [POLICE_CALLS_FAMILY]).passed_over[0].reason == "family_contact"
    allowed = route(["police_cybercrime"], ["police_cybercrime"], "dhi_qar", [POLICE_CALLS_FAMILY],
                    preferences=Preferences(family_contact=True))
    assert chosen(allowed) == {"police_cybercrime": "Cybercrime Unit"}


def test_asking_for_mediation_is_asking_for_family_contact_for_mediation_only():
    assert family_contact_asked("mediation", ["mediation"], ["mediation"], Preferences())
    assert not family_contact_asked("police_cybercrime", ["mediation", "police_cybercrime"],
                                    ["mediation", "police_cybercrime"], Preferences())
    assert not family_contact_asked("mediation", ["mediation"], [], Preferences(family_contact=True)), \
        "a family-contact preference does not stand in for consent to mediation"


# Re-offers and explanations

def test_a_partner_already_offered_this_need_is_passed_over_for_the_next_best():
    first, second = BASRA_COUNSEL, NATIONAL_HELPLINE
    ranking = rank("counselling", "basra", DIRECTORY, exclude=frozenset({first.id}))
    assert ranking.best is second
    assert ("Basra Counselling", "already_offered") in [(o.partner.name, o.reason) for o in ranking.passed_over]


def test_the_explanation_lists_the_order_and_every_partner_passed_over_with_its_reason():
    closed = partner("Basra Legal Aid", ["legal_aid"], ["basra"], accepting=False)
    explained = rank("legal_aid", "basra", [closed, NATIONAL_HELPLINE, TRIBAL_MEDIATOR]).explain()
    assert explained["eligible"] == [{"partner_id": NATIONAL_HELPLINE.id, "name": "National Helpline", "rank": 1,
                                      "local": False, "open_referrals": 0}]
    assert explained["passed_over"] == [{"partner_id": closed.id, "name": "Basra Legal Aid",
                                         "reason": "not_accepting"}]
    assert "local before nationwide" in explained["rule"]


# Refer anyway

def test_refer_anyway_may_override_capacity_hours_and_area_but_never_consent_or_family_contact():
    closed_far_away = Partner(id="x", name="Erbil Office", services=("legal_aid",), governorates=("erbil",),
                              accepting=False, always_open=False, hours=())
    assert may_refer_anyway("legal_aid", ["legal_aid"], ["legal_aid"], closed_far_away) is None
    assert may_refer_anyway("legal_aid", ["legal_aid"], [], closed_far_away) == "no_consent"
    assert may_refer_anyway("counselling", ["counselling"], ["counselling"], closed_far_away) == "not_offered"
    assert may_refer_anyway("police_cybercrime", ["police_cybercrime"], ["police_cybercrime"],
                            POLICE_CALLS_FAMILY) == "family_contact"
    assert may_refer_anyway("mediation", [], ["mediation"], TRIBAL_MEDIATOR) == "family_contact", \
        "consent to mediation without asking for it is not asking"
