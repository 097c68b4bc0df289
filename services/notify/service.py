"""Notify: delivers signed webhooks to partners, retrying on the policy's schedule.

Two service classes run as separate processes: one for the normal lane and one for the critical lane,
each consuming its own queue and retrying only its own deliveries, so a critical webhook never waits
behind a backlog or behind the retries of a failing partner.
"""
from nameko.messaging import consume
from nameko.timer import timer
from prometheus_client import Counter

from sanad.contracts import routing
from sanad.platform.database import Database
from sanad.platform.inbox import handle_event
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.notify import handlers, sender

DELIVERIES = Counter(
    "sanad_webhook_deliveries_total", "Webhook delivery attempts, by outcome and lane.", ["outcome", "lane"],
)


class NotifyService(Observable):
    name = "notify"
    lane = "normal"

    db = Database("notify")
    outbox = Outbox()
    keys = KeyFile()

    @consume(routing.NOTIFY_REFERRAL_CREATED, requeue_on_error=True)
    def on_referral_created(self, body):
        self._deliver_new(routing.NOTIFY_REFERRAL_CREATED.name, body)

    @timer(interval=1)
    def retry_due(self):
        """Deliveries whose time has come: retries, and any a crash left behind."""
        while True:
            claimed = handlers.claim_due(self.db, self.lane)
            for delivery in claimed:
                self._attempt(delivery)
            if len(claimed) < handlers.SWEEP_BATCH:
                return

    def _deliver_new(self, queue, body):
        delivery_id = handle_event(self.db, queue, body, handlers.schedule_delivery)
        if delivery_id:
            for delivery in handlers.claim_one(self.db, delivery_id):
                self._attempt(delivery)

    def _attempt(self, delivery):
        outcome = handlers.attempt(self.db, self.outbox, self.keys, delivery, sender.post)
        if outcome:
            DELIVERIES.labels(outcome=outcome, lane=self.lane).inc()


class CriticalNotifyService(NotifyService):
    name = "notify_critical"
    lane = "critical"

    @consume(routing.NOTIFY_REFERRAL_CREATED_CRITICAL, requeue_on_error=True)
    def on_referral_created(self, body):
        self._deliver_new(routing.NOTIFY_REFERRAL_CREATED_CRITICAL.name, body)
