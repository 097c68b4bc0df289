"""Which partner each consented need goes to. Pure: no framework, no database.

The rule, in order, so an operator can explain any choice:
1. only needs the victim consented to are referred (tribal or religious mediation included: never
   without an explicit request and consent);
2. only partners that offer the service, accept new cases, and serve the victim's governorate or the
   whole country;
3. a partner in the victim's governorate before a nationwide one;
4. then the partner with the fewest open referrals, so work spreads;
5. then by name, so the choice is stable.
"""
from dataclasses import dataclass

from sanad.contracts.vocabulary import NATIONWIDE


@dataclass(frozen=True)
class Partner:
    id: object
    name: str
    services: tuple
    governorates: tuple
    accepting: bool = True
    open_referrals: int = 0


@dataclass(frozen=True)
class Match:
    service: str
    partner: Partner


@dataclass(frozen=True)
class Routing:
    matches: tuple
    unmatched: tuple  # consented services no partner can take


def referable_services(needs, consents):
    """Needs the victim consented to, in the order the needs were recorded."""
    consented = set(consents)
    return [need for need in needs if need in consented]


def _serves(partner, governorate):
    return governorate in partner.governorates or NATIONWIDE in partner.governorates


def _preference(partner, governorate):
    return (0 if governorate in partner.governorates else 1, partner.open_referrals, partner.name)


def route(needs, consents, governorate, partners) -> Routing:
    matches, unmatched = [], []
    for service in referable_services(needs, consents):
        candidates = [
            p for p in partners if p.accepting and service in p.services and _serves(p, governorate)
        ]
        if candidates:
            matches.append(Match(service, min(candidates, key=lambda p: _preference(p, governorate))))
        else:
            unmatched.append(service)
    return Routing(tuple(matches), tuple(unmatched))
