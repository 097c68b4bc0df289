"""Referral's use cases, each taking its dependencies as arguments."""
import uuid
from datetime import datetime, timezone

from sanad.contracts.events import new_event
from sanad.contracts.vocabulary import lane_for
from services.referral import sql
from services.referral.matching import Partner, referable_services, route

PRODUCER = "referral"


def refer_case(cur, event, outbox, now=None):
    """Offer each consented need of a triaged case to the best partner; say so when none can take it."""
    data = event.data
    now = now or datetime.now(timezone.utc)
    lane = lane_for(data["level"])
    services = referable_services(data["needs"], data["consents"])
    if not services:
        return []
    cur.execute(sql.PARTNERS_FOR, {"services": services, "governorate": data["governorate"]})
    partners = [Partner(**{**row, "services": tuple(row["services"]),
                           "governorates": tuple(row["governorates"])}) for row in cur.fetchall()]
    routing = route(data["needs"], data["consents"], data["governorate"], partners)
    created = []
    for match in routing.matches:
        referral_id = uuid.uuid4()
        cur.execute(sql.INSERT_REFERRAL, {
            "id": referral_id, "case_id": data["case_id"], "reference": data["reference"],
            "partner_id": match.partner.id, "service": match.service, "level": data["level"], "now": now,
        })
        if cur.fetchone() is None:
            continue  # this need of this case was referred already
        outbox.add(cur, new_event("referral.created", {
            "referral_id": referral_id, "case_id": data["case_id"], "reference": data["reference"],
            "partner_id": match.partner.id, "partner_name": match.partner.name, "service": match.service,
            "level": data["level"], "governorate": data["governorate"], "created_at": now,
        }, producer=PRODUCER, correlation_id=event.correlation_id, lane=lane))
        created.append(match.service)
    if routing.unmatched:
        outbox.add(cur, new_event("case.unmatched", {
            "case_id": data["case_id"], "reference": data["reference"], "level": data["level"],
            "governorate": data["governorate"], "services": list(routing.unmatched),
        }, producer=PRODUCER, correlation_id=event.correlation_id, lane=lane))
    return created


def add_partner(cur, name, services, governorates, accepting=True):
    partner_id = uuid.uuid4()
    cur.execute(sql.INSERT_PARTNER, {
        "id": partner_id, "name": name, "services": list(services), "governorates": list(governorates),
        "accepting": accepting,
    })
    return partner_id
