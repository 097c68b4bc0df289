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
