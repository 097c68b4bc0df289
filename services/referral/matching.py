"""Which partner each consented need goes to, and why. Pure: no framework, no database, no clock.

A `Partner` here is one organisation's offer of services on one set of terms (Open Referral calls it a
service: where it is offered, when, by whom, to whom). An organisation offering counselling and legal aid
on different terms appears once per offer.

Who may be chosen for a service. Every rule must hold; a partner that fails one is passed over with the
code of the first rule it fails, so an operator can say why:
  consent         the victim needs the service and consented to it (checked per service, before partners)
  not_offered     the partner offers the service
  outside_area    it serves the victim's governorate or the whole country
  not_accepting   it accepts new cases
  closed_now      it is open around the clock, or open now (Iraq time)
  no_staff_gender it has staff of the gender the victim asked for
  no_language     it works in the language the victim asked for
  age_ineligible  the victim's age is within its eligibility
  family_contact  it contacts the victim's family only when the victim asked for that (tribal or religious
                  mediation is family contact by nature, so asking for mediation is asking for it)
  already_offered it was not offered this need of this case before (re-offers go to someone new)

Order among those who may, so the choice can be explained in one sentence:
  1. a partner in the victim's governorate before a nationwide one;
  2. then the one with the fewest open referrals, so work spreads;
  3. then by name, so the choice is stable.
"""
from dataclasses import dataclass, field
from datetime import time, timedelta, timezone

from sanad.contracts.vocabulary import NATIONWIDE

# Iraq has kept UTC+3 all year since it abolished daylight saving in 2008; a fixed offset needs no tz data.
IRAQ_TIME = timezone(timedelta(hours=3), "Asia/Baghdad")

FAMILY_CONTACT_BY_NATURE = frozenset({"mediation"})


@dataclass(frozen=True)
class Hours:
    """Open on `weekday` (0 Monday .. 6 Sunday, Iraq time) from `opens` until just before `closes`, or to
    the end of the day when `closes` is END_OF_DAY (24:00)."""
    weekday: int
    opens: time
    closes: time


# 24:00, which Python's time cannot hold: a period closing at midnight. Stored as PostgreSQL's '24:00'.
END_OF_DAY = time.max


@dataclass(frozen=True)
class Partner:
    id: object
    name: str
    services: tuple
    governorates: tuple
    accepting: bool = True
    open_referrals: int = 0
    always_open: bool = True
    hours: tuple = ()
    staff_genders: tuple = ()
    languages: tuple = ()
    min_age: int = None
    max_age: int = None
    contacts_family: bool = False


@dataclass(frozen=True)
class Preferences:
    """What the victim asked for beyond the service itself. None means "no preference"."""
    staff_gender: str = None
    language: str = None
    victim_age: int = None
    family_contact: bool = False  # the victim asked that the partner may contact her family


NO_PREFERENCES = Preferences()


@dataclass(frozen=True)
class Match:
    service: str
    partner: Partner


@dataclass(frozen=True)
class Routing:
    matches: tuple
    unmatched: tuple  # consented services no partner can take


@dataclass(frozen=True)
class PassedOver:
    partner: Partner
    reason: str


@dataclass(frozen=True)
class Ranking:
    """Every partner considered for one service: those who may take it, best first, and why the rest
    may not."""
    service: str
    governorate: str
    eligible: tuple
    passed_over: tuple = field(default=())

    @property
    def best(self):
        return self.eligible[0] if self.eligible else None

    def explain(self) -> dict:
        """The ranking as data an operator (or the admin API) can read."""
        return {
            "service": self.service,
            "governorate": self.governorate,
            "rule": "local before nationwide, then fewest open referrals, then name",
            "eligible": [{"partner_id": p.id, "name": p.name, "rank": i + 1, "local": _is_local(p, self.governorate),
                          "open_referrals": p.open_referrals} for i, p in enumerate(self.eligible)],
            "passed_over": [{"partner_id": o.partner.id, "name": o.partner.name, "reason": o.reason}
                            for o in self.passed_over],
        }


def referable_services(needs, consents):
    """Needs the victim consented to, in the order the needs were recorded."""
    consented = set(consents)
    return [need for need in needs if need in consented]


def is_open(partner, now) -> bool:
    if partner.always_open:
        return True
    if now is None:
        raise ValueError("the time is needed to know whether a partner with opening hours is open")
    local = now.astimezone(IRAQ_TIME)
    moment = local.time().replace(tzinfo=None)
    return any(h.weekday == local.weekday() and h.opens <= moment and (moment < h.closes or h.closes == END_OF_DAY)
               for h in partner.hours)


def _is_local(partner, governorate):
    return governorate in partner.governorates


def _contacts_family(partner, service):
    return partner.contacts_family or service in FAMILY_CONTACT_BY_NATURE


def passed_over_because(partner, service, governorate, now, preferences, family_contact_asked, exclude):
    """The first rule this partner fails for this service, or None when it may take it."""
    if service not in partner.services:
        return "not_offered"
    if not (_is_local(partner, governorate) or NATIONWIDE in partner.governorates):
        return "outside_area"
    if not partner.accepting:
        return "not_accepting"
    if not is_open(partner, now):
        return "closed_now"
    if preferences.staff_gender and preferences.staff_gender not in partner.staff_genders:
        return "no_staff_gender"
    if preferences.language and partner.languages and preferences.language not in partner.languages:
        return "no_language"
    age = preferences.victim_age
    if age is not None and ((partner.min_age is not None and age < partner.min_age)
                            or (partner.max_age is not None and age > partner.max_age)):
        return "age_ineligible"
    if _contacts_family(partner, service) and not family_contact_asked:
        return "family_contact"
    if partner.id in exclude:
        return "already_offered"
    return None


def family_contact_asked(service, needs, consents, preferences) -> bool:
    """Whether the victim asked for what would let a partner contact her family for this service."""
    if service in FAMILY_CONTACT_BY_NATURE:
        return service in referable_services(needs, consents)
    return preferences.family_contact


def rank(service, governorate, partners, now=None, preferences=NO_PREFERENCES, family_contact_ok=None,
         exclude=frozenset()) -> Ranking:
    """Rank the partners for one service. Consent is the caller's to check (see `route`), and so is
    `family_contact_ok` for mediation; left out, it is the victim's family-contact preference."""
    if family_contact_ok is None:
        family_contact_ok = preferences.family_contact and service not in FAMILY_CONTACT_BY_NATURE
    eligible, passed_over = [], []
    for partner in partners:
        if service not in partner.services:
            continue  # not a candidate at all; listing every other service's partners explains nothing
        reason = passed_over_because(partner, service, governorate, now, preferences, family_contact_ok, exclude)
        if reason:
            passed_over.append(PassedOver(partner, reason))
        else:
            eligible.append(partner)
    eligible.sort(key=lambda p: (0 if _is_local(p, governorate) else 1, p.open_referrals, p.name))
    passed_over.sort(key=lambda o: o.partner.name)
    return Ranking(service, governorate, tuple(eligible), tuple(passed_over))


def route(needs, consents, governorate, partners, now=None, preferences=NO_PREFERENCES) -> Routing:
    """The best partner for each need the victim consented to, and the consented needs nobody can take."""
    matches, unmatched = [], []
    for service in referable_services(needs, consents):
        ranking = rank(service, governorate, partners, now, preferences,
                       family_contact_asked(service, needs, consents, preferences))
        if ranking.best:
            matches.append(Match(service, ranking.best))
        else:
            unmatched.append(service)
    return Routing(tuple(matches), tuple(unmatched))


def may_refer_anyway(service, needs, consents, partner, preferences=NO_PREFERENCES):
    """A supervisor may override capacity, hours, area and preferences, never consent or family contact.
    Returns the code of the rule that forbids it, or None."""
    if service not in consents:
        return "no_consent"
    if service not in partner.services:
        return "not_offered"
    if _contacts_family(partner, service) and not family_contact_asked(service, needs, consents, preferences):
        return "family_contact"
    return None
