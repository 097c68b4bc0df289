"""Referral: offers triaged cases to partner organisations.

Two service classes run the same handler as separate processes: one for the normal lane and one for
the critical lane, so a critical case never waits behind a backlog of others.
"""
from functools import partial

from nameko.messaging import consume
from prometheus_client import Counter

from sanad.contracts import routing
from sanad.platform.database import Database
from sanad.platform.inbox import handle_event
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.referral import handlers

REFERRALS_CREATED = Counter(
    "sanad_referrals_created_total", "Referrals offered to partners, by service and lane.", ["service", "lane"],
)


class ReferralService(Observable):
    name = "referral"
    lane = "normal"

    db = Database("referral")
    outbox = Outbox()

    @consume(routing.REFERRAL_CASE_TRIAGED, requeue_on_error=True)
    def on_case_triaged(self, body):
        self._refer(routing.REFERRAL_CASE_TRIAGED.name, body)

    def _refer(self, queue, body):
        created = handle_event(self.db, queue, body, partial(handlers.refer_case, outbox=self.outbox))
        for service in created or ():
            REFERRALS_CREATED.labels(service=service, lane=self.lane).inc()


class CriticalReferralService(ReferralService):
    name = "referral_critical"
    lane = "critical"

    @consume(routing.REFERRAL_CASE_TRIAGED_CRITICAL, requeue_on_error=True)
    def on_case_triaged(self, body):
        self._refer(routing.REFERRAL_CASE_TRIAGED_CRITICAL.name, body)
