"""Referral's use cases, each taking its dependencies as arguments.

Every state change and the events announcing it are written in one transaction (the caller's cursor);
time comes in as `now`, so tests move the clock instead of sleeping.
"""
import collections
import dataclasses
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sanad.contracts.events import new_event, particulars
from sanad.contracts.sealing import preferences_context
from sanad.contracts.vocabulary import lane_for, partner_unreachable
from sanad.platform.pool import CONNECTION_ERRORS, PLAIN_INDEX_SCANS
from sanad.platform.reseal import BATCH as RESEAL_BATCH
from sanad.platform.reseal import reseal_rows
from services.referral import escalation, lifecycle, sql
from services.referral.directory import PartnerEntry, ServiceTerms, closing_for_storage, partner_from_row
from services.referral.escalation import Chain, Policy
from services.referral.matching import (
    NO_PREFERENCES, Preferences, family_contact_asked, may_refer_anyway, rank, referable_services, route,
)

log = logging.getLogger(__name__)

PRODUCER = "referral"
REFER_ANYWAY_REASONS = ("no_partner_matched", "partner_agreed_by_phone", "urgent_risk", "victim_request", "other")
# A deadline whose escalation raised is retried after this pause; a normal one is set aside after this many
# failures, a critical one never (sql.DEADLINE_FAILED).
DEADLINE_RETRY_SECONDS = 5
DEADLINE_MAX_FAILURES = 5
DEADLINE_LOG_EVERY = 12  # failures between two tracebacks of a deadline retried for ever (once a minute)


class NotFound(Exception):
    pass


class Refusal(Exception):
    """A request the rules forbid, naming the field and a code; `status` is the HTTP status that says so
    (422 for a request that can never be right, 409 for one the case's state forbids)."""

    def __init__(self, code, field_name, message, status=422):
        super().__init__(message)
        self.code = code
        self.field = field_name
        self.message = message
        self.status = status


class OfferLost(Exception):
    """An offer whose attempt was taken by another offer of the same need: it was not made, and must never
    pass for made (no page naming its partner, no referral id). The transaction is rolled back."""


class InvalidEntry(Exception):
    def __init__(self, problems):
        super().__init__(f"directory entry has problems: {sorted(problems)}")
        self.problems = problems


@dataclass
class Effects:
    """What a use case did, for the service's metrics once the transaction has committed."""
    created: list = field(default_factory=list)        # (service, lane)
    escalated: list = field(default_factory=list)      # (reason, lane)
    status_changes: list = field(default_factory=list)  # (status, changed_by)


def _utcnow(now):
    return now or datetime.now(timezone.utc)


# The directory ------------------------------------------------------------------------------------------

def create_partner(cur, entry, now=None):
    problems = entry.problems()
    if problems:
        raise InvalidEntry(problems)
    partner_id = uuid.uuid4()
    cur.execute(sql.INSERT_PARTNER, {
        "id": partner_id, "name": entry.name.strip(), "description": entry.description, "address": entry.address,
        "confidential_address": entry.confidential_address, "phone": entry.phone, "email": entry.email,
        "website": entry.website, "accepting": entry.accepting,
    })
    for terms in entry.services:
        _store_service(cur, partner_id, terms)
    return partner_id


def add_partner(cur, name, services, governorates, accepting=True):
    """A partner offering `services` in `governorates` around the clock (the short form the CLI's
    defaults and the tests use)."""
    terms = tuple(ServiceTerms(service=s, governorates=tuple(governorates), contacts_family=s == "mediation")
                  for s in services)
    return create_partner(cur, PartnerEntry(name=name, services=terms, accepting=accepting))


def _store_service(cur, partner_id, terms):
    cur.execute(sql.UPSERT_SERVICE, {
        "id": uuid.uuid4(), "partner_id": partner_id, "service": terms.service,
        "governorates": list(terms.governorates), "languages": list(terms.languages),
        "staff_genders": list(terms.staff_genders), "always_open": terms.always_open, "min_age": terms.min_age,
        "max_age": terms.max_age, "eligibility": terms.eligibility, "contacts_family": terms.contacts_family,
    })
    service_id = cur.fetchone()["id"]
    cur.execute(sql.DELETE_HOURS, {"service_id": service_id})
    for hours in terms.hours:
        cur.execute(sql.INSERT_HOURS, {"service_id": service_id, "weekday": hours.weekday, "opens": hours.opens,
                                       "closes": closing_for_storage(hours.closes)})


def set_service(cur, partner_id, terms, now=None):
    """Add or replace the terms on which a partner offers one service."""
    problems = terms.problems()
    if problems:
        raise InvalidEntry(problems)
    cur.execute(sql.TOUCH_PARTNER, {"id": partner_id, "now": _utcnow(now)})
    if cur.rowcount == 0:
        raise NotFound(partner_id)
    _store_service(cur, partner_id, terms)


def remove_service(cur, partner_id, service, now=None):
    cur.execute(sql.DELETE_SERVICE, {"partner_id": partner_id, "service": service})
    if cur.fetchone() is None:
        raise NotFound(partner_id)
    cur.execute(sql.TOUCH_PARTNER, {"id": partner_id, "now": _utcnow(now)})


def update_partner(cur, partner_id, changes, now=None):
    """Change an organisation's own fields; `changes` holds only the fields to change."""
    params = {"id": partner_id, "now": _utcnow(now)}
    for name in ("description", "confidential_address", "active"):
        params[name] = changes.get(name)
    for name in ("address", "phone", "email", "website"):
        params[f"set_{name}"] = name in changes
        params[name] = changes.get(name)
    cur.execute(sql.UPDATE_PARTNER, params)
    if cur.fetchone() is None:
        raise NotFound(partner_id)


def set_accepting(cur, partner_id, accepting, by, now=None):
    """Capacity: whether the partner takes new cases. Matching reads it at the next offer."""
    cur.execute(sql.SET_ACCEPTING, {"id": partner_id, "accepting": accepting, "by": by, "now": _utcnow(now)})
    if cur.fetchone() is None:
        raise NotFound(partner_id)


def directory(cur, partner_id=None, reveal_confidential=True):
    """Directory entries. A confidential address is withheld unless `reveal_confidential` (the CLI on
    the server): a shelter's whereabouts must not leak through an API."""
    cur.execute(sql.DIRECTORY, {"partner_id": partner_id})
    entries = cur.fetchall()
    if not reveal_confidential:
        entries = [{**e, "address": None} if e["confidential_address"] else e for e in entries]
    return entries


def load_offers(cur, services):
    cur.later(PLAIN_INDEX_SCANS)  # the partners' unfolded load changes, past the folded ones' dead entries
    cur.execute(sql.OFFERS_FOR, {"services": list(services)})
    return [partner_from_row(row) for row in cur.fetchall()]


def fold_partner_load(pool) -> bool:
    """Fold the open-referral changes noted since the last fold into each partner's count (the timer's
    use case). False when another process is folding right now."""
    with pool.transaction() as cur:
        cur.execute(sql.FOLD_LOCK)
        if not cur.fetchone()["mine"]:
            return False
        cur.later(sql.FOLD_PARTNER_LOAD)
    return True


def explain_match(cur, service, governorate, now, preferences=NO_PREFERENCES, needs=None, consents=None):
    """The ranking matching would make right now, with the reason each other partner is passed over."""
    needs = [service] if needs is None else needs
    consents = [service] if consents is None else consents
    ranking = rank(service, governorate, load_offers(cur, [service]), now, preferences,
                   family_contact_asked(service, needs, consents, preferences))
    return ranking.explain()


# Policies -----------------------------------------------------------------------------------------------

def policies(cur):
    cur.execute(sql.POLICIES)
    return sorted(cur.fetchall(), key=lambda row: ("critical", "high", "medium", "low").index(row["level"]))


def set_policy(cur, policy, by, now=None):
    """Change a level's policy for chains that start from now on; running chains keep their snapshot."""
    problems = policy.problems()
    if problems:
        raise InvalidEntry(problems)
    cur.execute(sql.SET_POLICY, {"level": policy.level, "ack_seconds": policy.ack_seconds,
                                 "max_reoffers": policy.max_reoffers, "by": by, "now": _utcnow(now)})
    return cur.fetchone()


def _policy_for(cur, level):
    cur.execute(sql.POLICY_FOR, {"level": level})
    return _policy_from_row(level, cur.fetchone())


def _policy_from_row(level, row):
    if row is None:
        log.warning("no escalation policy row for level %s; using the built-in default", level)
        return escalation.DEFAULT_POLICIES[level]
    return Policy(level=row["level"], ack_seconds=row["ack_seconds"], max_reoffers=row["max_reoffers"],
                  version=row["version"])


@dataclass(frozen=True)
class Assessed:
    """A case's risk level, and when triage (or staff overriding it) assessed it: the case.triaged event's
    time, which orders the assessments however late their events arrive."""
    level: str
    at: datetime


class CasesAtHand:
    """What refer_case reads before it offers: each case's level, and when it was assessed, as referral
    last recorded them (its row locked), the escalation policies, and, for a batch, the partners offering
    the batch's services. `read` fetches them for a batch's events in three round trips (before, two for
    every case, then another for every case's partners); refer_case then answers from memory and keeps
    the assessments and the partners' open referrals up to date as the batch goes, as the tables would
    be. A batch's first offer of a case referral had not seen then goes to PostgreSQL with the COMMIT
    (`offers_later`). One instance a transaction."""

    def __init__(self):
        self._assessed = {}  # case id -> Assessed as recorded, None for a case referral has not seen
        self._policies = None
        self._partners = None  # service -> [Partner] as read for a batch, open referrals as they were then
        self._offered = collections.Counter()  # partner id -> referrals offered in this transaction since

    def read(self, cur, events):
        self._read_assessed(cur, {event.data["case_id"] for event in events})
        self._read_policies(cur)
        services = {service for event in events
                    for service in referable_services(event.data["needs"], event.data["consents"])}
        self._partners = {service: [] for service in services}
        for partner in load_offers(cur, sorted(services)) if services else ():
            self._partners[partner.services[0]].append(partner)

    @property
    def offers_later(self) -> bool:
        """Whether a case's first offers may go with the COMMIT: in a batch, whose cases were read first. A
        case referral has not seen has no referral to conflict with, unless another process offers it in
        the meantime; then the offer fails the batch on the referrals' key, and the consumer hands the
        batch over one event at a time, where each insert says whether it took place."""
        return self._partners is not None

    def assessment_recorded(self, cur, case_id):
        """The case's level and when it was assessed, as referral last recorded them (None if new), its row
        locked."""
        self._read_assessed(cur, {case_id})
        return self._assessed[case_id]

    def now_recorded(self, case_id, assessed):
        """This transaction has recorded `assessed` (an Assessed) for the case."""
        self._assessed[case_id] = assessed

    def policy(self, cur, level):
        self._read_policies(cur)
        return _policy_from_row(level, self._policies.get(level))

    def offers(self, cur, services):
        """The partners offering `services`, each with its open referrals as this transaction has left
        them: from what the batch read, or read now."""
        if self._partners is None or not self._partners.keys() >= set(services):
            return load_offers(cur, services)
        return [dataclasses.replace(partner, open_referrals=partner.open_referrals + self._offered[partner.id])
                for service in services for partner in self._partners[service]]

    def offered(self, partner_id):
        """A referral to the partner was offered in this transaction."""
        self._offered[partner_id] += 1

    def _read_policies(self, cur):
        if self._policies is None:
            cur.execute(sql.EVERY_POLICY)
            self._policies = {row["level"]: row for row in cur.fetchall()}

    def _read_assessed(self, cur, case_ids):
        wanted = case_ids - self._assessed.keys()
        if wanted:
            cur.execute(sql.CASE_LEVELS_FOR_UPDATE, {"case_ids": sorted(wanted)})
            self._assessed.update(dict.fromkeys(wanted))
            self._assessed.update({row["case_id"]: Assessed(row["level"], row["triaged_at"])
                                   for row in cur.fetchall()})


# Offering -----------------------------------------------------------------------------------------------

def _case_from_event(data, correlation_id):
    return {key: data[key] for key in ("case_id", "reference", "level", "governorate", "needs", "consents")} | {
        "correlation_id": correlation_id}


def _case(cur, case_id):
    cur.execute(sql.CASE_BY_ID, {"case_id": case_id})
    return cur.fetchone()


def refer_case(cur, event, outbox, keys, now=None, at_hand=None):
    """Offer each consented need of a triaged case to the best partner. A need nobody can take goes to the
    on-duty supervisor at once (referral.escalated, reason no_match), and case.unmatched tells intake.
    `keys` opens the victim's preferences (sealed on the broker) and seals them to keep; `at_hand`
    (CasesAtHand) may hold what the case's batch read beforehand."""
    data, now, effects = event.data, _utcnow(now), Effects()
    at_hand = at_hand or CasesAtHand()
    case = _case_from_event(data, event.correlation_id)
    before = at_hand.assessment_recorded(cur, case["case_id"])
    if before is not None and before.at > event.occurred_at:
        # An older assessment than the one in force, its event late (a normal lane's backlog, say, behind
        # staff raising the case to critical): the newer one has routed the case already, and the older
        # level must not take its place.
        log.info("case.triaged %s is older than the case's assessment in force; it changes nothing", event.id)
        return effects
    at_hand.now_recorded(case["case_id"], Assessed(case["level"], event.occurred_at))
    previous_level = before and before.level
    preferences = particulars(event, keys.transport)["preferences"]
    cur.later(sql.UPSERT_CASE, {
        **case, "needs": list(case["needs"]), "consents": list(case["consents"]), "triaged_at": event.occurred_at,
        "preferences_sealed": keys.data.seal(json.dumps(preferences), preferences_context(case["case_id"]))})
    raised = previous_level is not None and escalation.more_urgent(case["level"], previous_level)
    if raised:
        _raise_level(cur, case, now, at_hand.policy(cur, case["level"]))
    services = referable_services(case["needs"], case["consents"])
    in_hand = NeedsInHand()
    if before is not None:
        # What a supervisor's refer-anyway, or a re-offer, did meanwhile is read under their lock.
        _lock_case_offers(cur, case["case_id"])
        in_hand = _needs_in_hand(cur, case["case_id"])
    # A case triaged again (staff raising its level, say) routes only the needs nobody has: one already
    # placed with a partner who has since stopped accepting is not unmatched, nor is one carried through.
    # A need whose offers were all declined or withdrawn was left so by people; only a more urgent level
    # asks for it again, of a partner not asked before, as a re-offer would.
    fresh = tuple(service for service in services if service not in in_hand.live | in_hand.settled | in_hand.ended)
    again = tuple(service for service in services if raised and service in in_hand.ended)
    if not fresh and not again:
        return effects
    routing = route(case["needs"], case["consents"], case["governorate"], at_hand.offers(cur, fresh), now,
                    preferences=Preferences(**preferences))
    unmatched = [service for service in routing.unmatched if service in fresh]
    policy = at_hand.policy(cur, case["level"])

    def terms():
        return "matching", Chain(policy), uuid.uuid4(), escalation.first_deadline(policy, now), now, effects
    for match in routing.matches:
        if match.service in fresh and _offer(cur, outbox, case, match.service, match.partner, 1, *terms(),
                                             first=previous_level is None and at_hand.offers_later):
            at_hand.offered(match.partner.id)
    for service in again:
        partner = _next_partner(cur, case, service, now, Preferences(**preferences))
        if partner is None:
            unmatched.append(service)
            continue
        cur.execute(sql.NEXT_ATTEMPT, {"case_id": case["case_id"], "service": service})
        _new_offer(cur, outbox, case, service, partner, cur.fetchone()["attempt"], *terms())
    if unmatched or in_hand.announced:
        # Every need nobody can take now, which intake shows as it is told (none left clears it).
        outbox.add(cur, new_event("case.unmatched", {
            "case_id": case["case_id"], "reference": case["reference"], "level": case["level"],
            "governorate": case["governorate"], "services": unmatched,
        }, producer=PRODUCER, correlation_id=case["correlation_id"], lane=lane_for(case["level"])))
    for service in unmatched:
        if _announce_no_match(case["level"], in_hand.announced.get(service, ())):
            _announce(cur, outbox, case, service, "no_match", step=1, referral_id=None, reoffered_to=None,
                      chain_id=None, new_referral_id=None, now=now, fired_by=PRODUCER, effects=effects)
    return effects


@dataclass(frozen=True)
class NeedsInHand:
    """What became of each need of a case routed before: `live`, those with an offer standing or taken up;
    `settled`, those carried through (completed, closed); `ended`, those whose every offer was declined or
    withdrawn; `announced`, the levels at which each need's no_match went out."""
    live: frozenset = frozenset()
    settled: frozenset = frozenset()
    ended: frozenset = frozenset()
    announced: dict = field(default_factory=dict)


def _needs_in_hand(cur, case_id) -> NeedsInHand:
    cur.execute(sql.NEEDS_IN_HAND, {"case_id": case_id})
    kinds, announced = collections.defaultdict(set), collections.defaultdict(list)
    for row in cur.fetchall():
        if row["kind"] == "no_match":
            announced[row["service"]].append(row["level"])
        else:
            kinds[row["kind"]].add(row["service"])
    live, settled = frozenset(kinds["live"]), frozenset(kinds["settled"] - kinds["live"])
    return NeedsInHand(live, settled, frozenset(kinds["ended"] - live - settled), dict(announced))


def _announce_no_match(level, announced_at):
    """Whether a need nobody can take is announced at `level`: not when announced already at that level or
    a more urgent one; again when the case was raised since (a critical case pages on its own lane)."""
    return all(escalation.more_urgent(level, before) for before in announced_at)


def _raise_level(cur, case, now, policy):
    """Staff raised the case's risk: what is already offered is chased on the new level's terms (`policy`)
    at once. A lowered risk changes nothing that is running: a deadline is never pushed back."""
    cur.later(sql.RELEVEL_OPEN_REFERRALS, {"case_id": case["case_id"], "level": case["level"], "now": now})
    cur.later(sql.HASTEN_PENDING_DEADLINES, {
        "case_id": case["case_id"], "level": policy.level, "version": policy.version,
        "ack_seconds": policy.ack_seconds, "max_reoffers": policy.max_reoffers, "lane": lane_for(case["level"]),
    })


def _offer(cur, outbox, case, service, partner, attempt, offered_by, chain, chain_id, due_at, now, effects,
           first=False):
    """Offer one need of a case to one partner, with the deadline for its acknowledgement. Returns the
    referral id, or None when this attempt exists already (a repeated event). `first`: the caller knows
    it does not (CasesAtHand.offers_later), and the referral goes to PostgreSQL with the next statement."""
    referral_id, lane = uuid.uuid4(), lane_for(case["level"])
    referral = {
        "id": referral_id, "case_id": case["case_id"], "reference": case["reference"], "partner_id": partner.id,
        "service": service, "level": case["level"], "governorate": case["governorate"], "attempt": attempt,
        "offered_by": offered_by, "now": now,
    }
    if first:
        cur.later(sql.INSERT_NEW_REFERRAL, referral)
    else:
        cur.execute(sql.INSERT_REFERRAL, referral)
        if cur.fetchone() is None:
            return None
    _schedule(cur, referral_id, chain, chain_id, lane, due_at, now)
    outbox.add(cur, new_event("referral.created", {
        "referral_id": referral_id, "case_id": case["case_id"], "reference": case["reference"],
        "partner_id": partner.id, "partner_name": partner.name, "service": service, "level": case["level"],
        "governorate": case["governorate"], "created_at": now,
    }, producer=PRODUCER, correlation_id=case["correlation_id"], lane=lane))
    effects.created.append((service, lane))
    return referral_id


def _lock_case_offers(cur, case_id):
    cur.execute(sql.LOCK_CASE_OFFERS, {"case_id": case_id})


def _new_offer(cur, outbox, case, service, partner, attempt, *args):
    """_offer for an attempt taken from NEXT_ATTEMPT under the case's lock: it is new, or the offer is lost."""
    referral_id = _offer(cur, outbox, case, service, partner, attempt, *args)
    if referral_id is None:
        raise OfferLost(f"attempt {attempt} of {service} for case {case['case_id']} was offered already")
    return referral_id


def _schedule(cur, referral_id, chain, chain_id, lane, due_at, now):
    cur.later(sql.INSERT_DEADLINE, {
        "id": uuid.uuid4(), "referral_id": referral_id, "chain_id": chain_id, "lane": lane, "due_at": due_at,
        "steps_taken": chain.steps_taken, "policy_level": chain.policy.level,
        "policy_version": chain.policy.version, "ack_seconds": chain.policy.ack_seconds,
        "max_reoffers": chain.policy.max_reoffers, "now": now,
    })


def _announce(cur, outbox, case, service, reason, step, referral_id, reoffered_to, chain_id, new_referral_id, now,
              fired_by, effects):
    lane = lane_for(case["level"])
    event = new_event("referral.escalated", {
        "referral_id": referral_id, "case_id": case["case_id"], "reference": case["reference"],
        "level": case["level"], "service": service, "governorate": case["governorate"], "reason": reason,
        "step": step, "reoffered_to": reoffered_to, "escalated_at": now,
    }, producer=PRODUCER, correlation_id=case["correlation_id"], lane=lane)
    cur.later(sql.INSERT_ESCALATION, {
        "id": uuid.uuid4(), "event_id": event.id, "chain_id": chain_id, "referral_id": referral_id,
        "case_id": case["case_id"], "service": service, "level": case["level"], "reason": reason, "step": step,
        "reoffered_to": reoffered_to, "new_referral_id": new_referral_id, "escalated_at": now, "fired_by": fired_by,
    })
    outbox.add(cur, event)
    effects.escalated.append((reason, lane))


# Escalating ---------------------------------------------------------------------------------------------

def _chain_of(deadline):
    policy = Policy(level=deadline["policy_level"], ack_seconds=deadline["ack_seconds"],
                    max_reoffers=deadline["max_reoffers"], version=deadline["policy_version"])
    return Chain(policy=policy, steps_taken=deadline["steps_taken"])


def _chain_of_referral(cur, referral):
    """The chain a referral belongs to, from its latest deadline (locked), and that chain's id. A referral
    made before deadlines existed starts a chain under today's policy."""
    cur.execute(sql.LATEST_DEADLINE_OF, {"referral_id": referral["id"]})
    deadline = cur.fetchone()
    if deadline is None:
        return Chain(_policy_for(cur, referral["level"])), uuid.uuid4()
    return _chain_of(deadline), deadline["chain_id"]


def _lock_referral(cur, referral_id):
    cur.execute(sql.LOCK_REFERRAL, {"id": referral_id})
    return cur.fetchone()


def _case_of_referral(cur, referral):
    """Referral's record of the case; referrals older than that record stand in with what they know."""
    case = _case(cur, referral["case_id"])
    if case is not None:
        return case
    return {"case_id": referral["case_id"], "reference": referral["reference"], "level": referral["level"],
            "governorate": referral["governorate"], "needs": [], "consents": [], "correlation_id": referral["case_id"]}


def _kept_preferences(case, keys) -> Preferences:
    """What the victim asked of her helpers, as referral keeps the case: sealed, or in the clear in a case
    recorded before migration 0006 and not resealed since. A case recorded before referral kept them
    (migration 0004), or a referral older than referral's case record, has none."""
    if case.get("preferences_sealed"):
        return Preferences(**json.loads(keys.data.open(case["preferences_sealed"],
                                                       preferences_context(case["case_id"]))))
    return Preferences(**(case.get("preferences") or {}))


def _next_partner(cur, case, service, now, preferences):
    """The best partner for a need of the case not offered it yet, matched on the victim's `preferences`
    as the first offer was."""
    if service not in referable_services(case["needs"], case["consents"]):
        return None  # consent withdrawn since, or a referral older than referral's case record
    cur.execute(sql.PARTNERS_OFFERED, {"case_id": case["case_id"], "service": service})
    offered = frozenset(row["partner_id"] for row in cur.fetchall())
    ranking = rank(service, case["governorate"], load_offers(cur, [service]), now, preferences,
                   family_contact_asked(service, case["needs"], case["consents"], preferences), exclude=offered)
    return ranking.best


def _escalate(cur, outbox, keys, referral, chain, chain_id, reason, now, fired_by, effects):
    """One escalation of a running offer: maybe withdraw it, maybe re-offer the need to the next partner
    (`keys` opens the victim's preferences for matching), maybe set the next deadline, and always page the
    supervisor."""
    case = _case_of_referral(cur, referral)
    service = referral["service"]
    _lock_case_offers(cur, case["case_id"])
    candidate = None
    if escalation.may_reoffer(chain, reason):
        candidate = _next_partner(cur, case, service, now, _kept_preferences(case, keys))
    decision = escalation.decide(chain, reason, now, candidate)
    if decision.withdraw_current and referral["status"] in lifecycle.OPEN:
        _set_status(cur, outbox, referral, lifecycle.Change(referral["status"], "withdrawn", reason), "system", now,
                    case["correlation_id"], effects)
    new_referral_id = None
    lane = lane_for(case["level"])
    if decision.reoffer_to is not None:
        cur.execute(sql.NEXT_ATTEMPT, {"case_id": case["case_id"], "service": service})
        new_referral_id = _new_offer(cur, outbox, case, service, decision.reoffer_to, cur.fetchone()["attempt"],
                                     "reoffer", escalation.advanced(chain, decision), chain_id,
                                     decision.next_deadline_at, now, effects)
    elif decision.next_deadline_at is not None:
        _schedule(cur, referral["id"], escalation.advanced(chain, decision), chain_id, lane,
                  decision.next_deadline_at, now)
    _announce(cur, outbox, case, service, reason, decision.step, referral["id"],
              decision.reoffer_to.id if decision.reoffer_to else None, chain_id, new_referral_id, now, fired_by,
              effects)
    return decision


def escalate_due(pool, outbox, keys, lanes, now=None, fired_by=PRODUCER, limit=100):
    """Fire the deadlines due by `now` on `lanes`, critical first, one per transaction, so a failing one
    never holds back the others. Returns the Effects and how late each deadline fired, by lane."""
    now, effects, delays = _utcnow(now), Effects(), []
    for _ in range(limit):
        claimed = None
        try:
            with pool.transaction() as cur:
                cur.execute(sql.CLAIM_DUE_DEADLINE, {"now": now, "lanes": list(lanes)})
                claimed = cur.fetchone()
                if claimed is None:
                    break
                fired = Effects()
                _fire(cur, outbox, keys, claimed, now, fired_by, fired)
        except CONNECTION_ERRORS:
            raise  # the database is away; the deadline stays pending and the next tick tries again
        except Exception:
            if claimed is None:
                raise
            _deadline_failed(pool, claimed, now)
            continue
        effects.created += fired.created
        effects.escalated += fired.escalated
        effects.status_changes += fired.status_changes
        delays.append((claimed["lane"], (now - claimed["due_at"]).total_seconds()))
    return effects, delays


def _fire(cur, outbox, keys, deadline, now, fired_by, effects):
    referral = _lock_referral(cur, deadline["referral_id"])
    if referral["status"] != "offered":
        # Answered in the same instant the deadline fell due: the answer wins, nobody is paged.
        cur.later(sql.FINISH_DEADLINE, {"id": deadline["id"], "status": "cancelled", "now": now})
        return None
    cur.later(sql.FINISH_DEADLINE, {"id": deadline["id"], "status": "fired", "now": now})
    return _escalate(cur, outbox, keys, referral, _chain_of(deadline), deadline["chain_id"], "ack_timeout", now,
                     fired_by, effects)


def _deadline_failed(pool, claimed, now):
    """Count a failed escalation of the deadline `claimed` and set its retry, from inside the handler of
    the exception. The traceback is logged for the first failures, then once a minute: a critical deadline
    is retried every DEADLINE_RETRY_SECONDS until it fires, and must not bury the log."""
    with pool.transaction() as cur:
        cur.execute(sql.DEADLINE_FAILED, {"id": claimed["id"], "now": now, "max_failures": DEADLINE_MAX_FAILURES,
                                          "retry_at": now + timedelta(seconds=DEADLINE_RETRY_SECONDS)})
        row = cur.fetchone()
    failures = row["failures"] if row else claimed["failures"] + 1
    if failures <= DEADLINE_MAX_FAILURES or failures % DEADLINE_LOG_EVERY == 0:
        log.exception("escalating deadline %s failed (%s times); it will be retried", claimed["id"], failures)
    if row and row["status"] == "failed":
        log.error("deadline %s failed %s times and is set aside for a person to look at", claimed["id"],
                  row["failures"])
    elif row and row["lane"] == "critical" and failures == DEADLINE_MAX_FAILURES:
        log.error("critical deadline %s has failed %s times; it is retried until it fires and counts as "
                  "overdue meanwhile", claimed["id"], failures)


def delivery_exhausted(cur, event, outbox, keys, now=None, fired_by=PRODUCER):
    """notify gave up delivering an offer: the partner never got it, so it goes to the next partner. A
    partner notify cannot reach at all (its endpoint disabled, gone, or never registered) also stops
    taking new cases, as if it had said so: matching would otherwise offer it case after case, each
    failing at once and paging the supervisors. Its capacity is set again by the partner or an admin
    once its endpoint works (docs/operations.md)."""
    now, effects = _utcnow(now), Effects()
    data = event.data
    if partner_unreachable(data["last_status_code"], data["last_error"]):
        cur.execute(sql.STOP_ACCEPTING, {"id": data["partner_id"], "now": now, "by": "system: webhook unreachable"})
        if cur.fetchone() is not None:
            log.warning("partner %s takes no new cases: its webhook endpoint cannot be reached (%s)",
                        data["partner_id"], data["last_error"] or f"status {data['last_status_code']}")
    referral = _lock_referral(cur, data["referral_id"])
    if referral is None or referral["status"] != "offered":
        return effects  # answered through the API all the same, or already moved on
    chain, chain_id = _chain_of_referral(cur, referral)
    cur.later(sql.CANCEL_PENDING_DEADLINES, {"referral_id": referral["id"], "now": now})
    _escalate(cur, outbox, keys, referral, chain, chain_id, "delivery_exhausted", now, fired_by, effects)
    return effects


# The referral's life ------------------------------------------------------------------------------------

def _set_status(cur, outbox, referral, change, changed_by, now, correlation_id, effects):
    cur.later(sql.SET_REFERRAL_STATUS, {
        "id": referral["id"], "status": change.status, "note_code": change.note_code, "now": now,
        "acknowledges": lifecycle.acknowledges(change.status),
    })
    outbox.add(cur, new_event("referral.status_changed", {
        "referral_id": referral["id"], "case_id": referral["case_id"], "reference": referral["reference"],
        "partner_id": referral["partner_id"], "status": change.status, "previous_status": change.previous,
        "note_code": change.note_code, "changed_at": now, "changed_by": changed_by,
    }, producer=PRODUCER, correlation_id=correlation_id, lane=lane_for(referral["level"])))
    effects.status_changes.append((change.status, changed_by))


def change_status(cur, outbox, keys, referral_id, requested, note_code, changed_by, now=None, partner_id=None,
                  fired_by=PRODUCER):
    """A partner (only on its own referrals) or staff moves a referral along. An answer to the offer
    cancels its pending deadline in the same transaction, so nobody is paged after it; a decline goes to
    the next partner at once. Returns (changed, Effects); raises NotFound or lifecycle.TransitionRefused."""
    now, effects = _utcnow(now), Effects()
    referral = _lock_referral(cur, referral_id)
    if referral is None or (partner_id is not None and referral["partner_id"] != partner_id):
        raise NotFound(referral_id)
    change = lifecycle.change(referral["status"], requested, changed_by, note_code)
    if change is None:
        return False, effects
    case = _case_of_referral(cur, referral)
    _set_status(cur, outbox, referral, change, changed_by, now, case["correlation_id"], effects)
    if change.previous == "offered":
        chain, chain_id = _chain_of_referral(cur, referral)
        cur.later(sql.CANCEL_PENDING_DEADLINES, {"referral_id": referral["id"], "now": now})
        if change.status == "declined":
            _escalate(cur, outbox, keys, {**referral, "status": "declined"}, chain, chain_id, "declined", now,
                      fired_by, effects)
    return True, effects


def refer_anyway(cur, outbox, keys, case_id, service, partner_id, now=None, fired_by=PRODUCER):
    """A supervisor's override: offer a need to a partner matching would not choose (closed, full, far
    away, not fitting a preference). Never without consent, never family contact the victim did not ask
    for, never on a case `sanad purge` has purged. Starts a fresh chain under today's policy. Returns
    (referral id, Effects)."""
    now, effects = _utcnow(now), Effects()
    case = _case(cur, case_id)
    if case is None:
        raise NotFound(case_id)
    cur.execute(sql.CASE_PURGED, {"case_id": case_id})
    if cur.fetchone() is not None:
        # Its personal data is gone, and a refer-anyway would bring some back (the supervisor's sealed note),
        # where no later purge would look for it.
        raise Refusal("case_purged", "case_id", "This case's personal data has been purged (sanad purge); it "
                      "can no longer be referred. Open a new case if the victim calls again.", status=409)
    cur.execute(sql.OFFER_OF, {"partner_id": partner_id, "service": service})
    row = cur.fetchone()
    if row is None:
        raise Refusal("not_offered", "partner_id", "This partner does not offer that service (or is inactive).")
    partner = partner_from_row(row)
    forbidden = may_refer_anyway(service, case["needs"], case["consents"], partner, _kept_preferences(case, keys))
    if forbidden == "no_consent":
        raise Refusal("no_consent", "service", "The victim did not consent to this service; nobody may refer it.")
    if forbidden == "family_contact":
        raise Refusal("family_contact", "partner_id",
                      "This partner contacts the family, which the victim did not ask for.")
    policy = _policy_for(cur, case["level"])
    _lock_case_offers(cur, case_id)
    cur.execute(sql.NEXT_ATTEMPT, {"case_id": case_id, "service": service})
    attempt = cur.fetchone()["attempt"]
    chain_id = uuid.uuid4()
    referral_id = _new_offer(cur, outbox, case, service, partner, attempt, "refer_anyway", Chain(policy), chain_id,
                             escalation.first_deadline(policy, now), now, effects)
    _announce(cur, outbox, case, service, "refer_anyway", step=1, referral_id=referral_id, reoffered_to=partner.id,
              chain_id=chain_id, new_referral_id=referral_id, now=now, fired_by=fired_by, effects=effects)
    return referral_id, effects


# What people see ----------------------------------------------------------------------------------------

def partner_view(row):
    """What a partner needs to act on a referral, and nothing more: no case id, no name, no narrative.
    Seam: the sealed personal details the victim consented to share with this partner arrive in a later
    issue as a separate, audited read (GET /partner/v1/referrals/{id}/details), never folded in here."""
    return {
        "id": str(row["id"]), "reference": row["reference"], "level": row["level"], "service": row["service"],
        "governorate": row["governorate"], "status": row["status"], "note_code": row["note_code"],
        "offered_at": row["created_at"].isoformat(),
        "acknowledge_by": row["acknowledge_by"].isoformat() if row["acknowledge_by"] else None,
        "acknowledged_at": row["acknowledged_at"].isoformat() if row["acknowledged_at"] else None,
        "updated_at": row["updated_at"].isoformat(),
    }


def partner_referral(cur, referral_id, partner_id):
    cur.execute(sql.PARTNER_REFERRAL, {"id": referral_id, "partner_id": partner_id})
    row = cur.fetchone()
    if row is None:
        raise NotFound(referral_id)
    return row


def referral_row(cur, referral_id):
    """A referral as partner_view shows it, whoever's it is (for staff, and after a partner's change)."""
    cur.execute(sql.REFERRAL_VIEW, {"id": referral_id})
    return cur.fetchone()


def partner_referrals(cur, partner_id, status=None, limit=100, before=None):
    """A partner's referrals, newest first, at most `limit`; after the referral `before`, one of its own (the
    last of the page before), when given. Raises Refusal for a `before` that is not its own, as for one
    that does not exist (the service answers 404: no such page)."""
    if before is not None:
        owner = referral_owner(cur, before)
        if owner is None or owner["partner_id"] != partner_id:
            raise Refusal("unknown_page", "before", "No such page: `before` is not one of your referrals. "
                          "Follow the `next` link of the page before.")
    cur.execute(sql.PARTNER_REFERRALS, {"partner_id": partner_id, "status": status, "limit": limit,
                                        "before": before})
    return cur.fetchall()


def referral_owner(cur, referral_id):
    cur.execute(sql.REFERRAL_OWNER, {"id": referral_id})
    return cur.fetchone()


def case_referrals(cur, case_id):
    """A supervisor's view of one case: every offer and every escalation."""
    case = _case(cur, case_id)
    if case is None:
        raise NotFound(case_id)
    cur.execute(sql.REFERRALS_OF_CASE, {"case_id": case_id})
    referrals = cur.fetchall()
    cur.execute(sql.ESCALATIONS_OF_CASE, {"case_id": case_id})
    return {"case_id": case_id, "reference": case["reference"], "level": case["level"],
            "governorate": case["governorate"], "referrals": referrals, "escalations": cur.fetchall()}


# Key rotation ------------------------------------------------------------------------------------------------

def note_context(case_id) -> str:
    """What a supervisor's refer-anyway note, kept sealed in the audit log, is bound to."""
    return f"referral-audit:{case_id}:note"


def reseal(pool, ring, batch=RESEAL_BATCH) -> dict:
    """The audit log's sealed notes and the cases' sealed preferences under `ring`'s primary key, and the
    preferences kept in the clear before migration 0006 sealed (`sanad keys reseal`)."""
    return {
        "audit_log": reseal_rows(pool, ring, sql.NOTES_TO_RESEAL, sql.UPDATE_NOTE_SEAL,
                                 {"note_sealed": lambda row: note_context(row["case_id"])}, start=0, batch=batch),
        "cases": reseal_rows(pool, ring, sql.CASES_TO_RESEAL, sql.UPDATE_CASE_SEAL,
                             {"preferences_sealed": lambda row: preferences_context(row["case_id"])},
                             key="case_id", batch=batch,
                             in_the_clear={"preferences_sealed": "preferences"}),
    }
