"""Notify: delivers signed webhooks to partners and pages the on-duty supervisors, retrying on the
policy's schedule.

Two service classes run as separate processes: one for the normal lane and one for the critical lane,
each consuming its own queues and retrying only its own deliveries, so a critical webhook never waits
behind a backlog or behind the retries of a failing partner. The normal lane records its offers as many
to a transaction as are waiting (sanad.platform.inbox.consume_batches); the critical lane one at a time.
Within a process, attempts run side by side in a bounded pool, with a few requests at most open to any
one endpoint, so one slow partner holds up only its own webhooks.
"""
import time
from functools import partial

from nameko.timer import timer
from prometheus_client import Counter, Gauge, Histogram

from sanad.contracts import routing
from sanad.contracts.vocabulary import LANES
from sanad.platform.database import Database
from sanad.platform.inbox import BUSY_LINGER, consume, consume_batches, handle_batch
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.notify import handlers
from services.notify.dependencies import Webhooks, sweep_timer

SWEEP_INTERVAL = 1
SWEEP_SECONDS = 5  # one sweep keeps claiming as slots free up, for at most this long
MEASURE_SECONDS = 5.0
ALERT_KINDS = ("endpoint_disabled", "pager_exhausted", "no_pager_endpoint")

DELIVERIES = Counter(
    "sanad_webhook_deliveries_total", "Webhook delivery attempts, by outcome and lane.", ["outcome", "lane"],
)
EXHAUSTED = Counter(
    "sanad_webhook_exhausted_total", "Webhooks whose every attempt failed (dead letters), by lane and target.",
    ["lane", "target"],
)
ENDPOINTS_DISABLED = Counter(
    "sanad_webhook_endpoints_disabled_total", "Partner endpoints disabled because their deliveries kept failing.",
)
OPEN_ALERTS = Gauge(
    "sanad_notify_open_alerts", "Alerts for the supervisors not yet acknowledged (sanad alerts), by kind.", ["kind"],
)
IN_FLIGHT = Gauge("sanad_webhook_attempts_in_flight", "Webhook attempts running in this process.", ["lane"])
ATTEMPTS_TAKEN = Histogram(
    "sanad_webhook_attempts", "Attempts a delivery took until it finished, by lane and outcome.",
    ["lane", "outcome"], buckets=(1, 2, 3, 4, 5, 6, 7, 8, 10, 15),
)
PARTNER_ENDPOINTS = Gauge(
    "sanad_partner_endpoints", "Partner endpoints by state (failing: enabled, and the last 3 attempts to it "
    "failed).", ["state"],
)

# Counters an alert watches exist at zero from the start: increase() misses a series' first increment.
for _lane in LANES:
    for _outcome in ("delivered", "retrying", "failed"):
        DELIVERIES.labels(outcome=_outcome, lane=_lane)
    for _target in ("partner", "oncall"):
        EXHAUSTED.labels(lane=_lane, target=_target)


class NotifyService(Observable):
    name = "notify"
    lane = "normal"

    db = Database("notify")
    outbox = Outbox()
    keys = KeyFile()
    webhooks = Webhooks()

    @consume_batches(routing.NOTIFY_REFERRAL_CREATED, requeue_on_error=True, linger_when_busy=BUSY_LINGER)
    def on_referral_created(self, bodies):
        self._offer(routing.NOTIFY_REFERRAL_CREATED.name, bodies)

    @consume(routing.NOTIFY_REFERRAL_ESCALATED, requeue_on_error=True)
    def on_referral_escalated(self, body):
        self._page(routing.NOTIFY_REFERRAL_ESCALATED.name, [body])

    @consume(routing.NOTIFY_REFERRAL_STATUS_CHANGED, requeue_on_error=True)
    def on_referral_status_changed(self, body):
        handle_batch(self.db, routing.NOTIFY_REFERRAL_STATUS_CHANGED.name, [body], handlers.referral_status_changed)

    @sweep_timer(interval=SWEEP_INTERVAL)
    def retry_due(self):
        """Deliveries whose time has come: retries, replays, and any a crash or a full pool left behind."""
        pool, settings = self.webhooks.pool, self.webhooks.settings
        stop_at = time.monotonic() + SWEEP_SECONDS
        while time.monotonic() < stop_at and not pool.closed:
            room = pool.free()
            if room <= 0:  # below zero when offers took slots while this sweep was claiming
                pool.wait_for_room(timeout=stop_at - time.monotonic())
                continue
            in_flight = pool.in_flight()
            claimed = handlers.claim_due(self.db, self.lane, room, in_flight, settings)
            for delivery in claimed:
                pool.run(delivery["endpoint_id"], self._attempt, delivery)
            IN_FLIGHT.labels(lane=self.lane).set(pool.size - pool.free())
            if not claimed and not in_flight:
                break  # nothing due
            if len(claimed) < room:
                # What is still due waits for its endpoint's slots: claim again when an attempt ends or lets
                # go of its endpoint.
                pool.wait_for_an_attempt(timeout=min(SWEEP_INTERVAL, stop_at - time.monotonic()))

    def _offer(self, queue, bodies):
        self._schedule(queue, bodies, partial(handlers.schedule_offer, public_url=self.webhooks.settings.public_url))

    def _page(self, queue, bodies):
        self._schedule(queue, bodies, handlers.schedule_pages)

    def _schedule(self, queue, bodies, schedule):
        """Record the events' deliveries and, in the same transaction, claim those the pool has room to
        attempt now, then attempt them at once; the sweep takes up the rest. One commit, not two, stands
        between a referral and its webhook."""
        pool, settings = self.webhooks.pool, self.webhooks.settings
        reserved = []  # endpoints of slots taken; given back unless their attempt starts

        def schedule_and_claim(cur, event):
            claimed = []
            for delivery_id, endpoint_id in schedule(cur, event):
                if pool.reserve(endpoint_id):
                    reserved.append(str(endpoint_id))
                    claimed += handlers.claim(cur, delivery_id, settings)
            return claimed

        claimed = []
        try:
            for claimed_for_event in handle_batch(self.db, queue, bodies, schedule_and_claim):
                claimed += claimed_for_event or []
        finally:
            for delivery in claimed:
                reserved.remove(str(delivery["endpoint_id"]))
            for endpoint_id in reserved:
                pool.release(endpoint_id)
        for delivery in claimed:
            pool.run(delivery["endpoint_id"], self._attempt, delivery, reserved=True)

    def _attempt(self, delivery, request_ended):
        # The attempt outlives the worker that started it: its events go out as it commits them.
        attempted = handlers.attempt(self.db, self.outbox.detached(), self.keys, delivery, self.webhooks,
                                     request_ended)
        if attempted is None:
            return
        DELIVERIES.labels(outcome=attempted.outcome, lane=self.lane).inc()
        if attempted.outcome == "failed":
            EXHAUSTED.labels(lane=self.lane, target=attempted.target).inc()
        if attempted.outcome in ("delivered", "failed"):
            ATTEMPTS_TAKEN.labels(lane=self.lane, outcome=attempted.outcome).observe(attempted.attempts)
        if attempted.endpoint_disabled:
            ENDPOINTS_DISABLED.inc()

    @timer(interval=MEASURE_SECONDS)
    def measure(self):
        """The gauges alerts watch, read from notify's schema on a timer of their own rather than at every
        one-second sweep."""
        open_alerts = handlers.open_alerts_by_kind(self.db)
        for kind in set(ALERT_KINDS) | set(open_alerts):
            OPEN_ALERTS.labels(kind=kind).set(open_alerts.get(kind, 0))
        for state, count in handlers.endpoint_states(self.db).items():
            PARTNER_ENDPOINTS.labels(state=state).set(count)


class CriticalNotifyService(NotifyService):
    name = "notify_critical"
    lane = "critical"

    @consume(routing.NOTIFY_REFERRAL_CREATED_CRITICAL, requeue_on_error=True)
    def on_referral_created(self, body):
        self._offer(routing.NOTIFY_REFERRAL_CREATED_CRITICAL.name, [body])

    @consume(routing.NOTIFY_REFERRAL_ESCALATED_CRITICAL, requeue_on_error=True)
    def on_referral_escalated(self, body):
        self._page(routing.NOTIFY_REFERRAL_ESCALATED_CRITICAL.name, [body])

    @consume(routing.NOTIFY_REFERRAL_STATUS_CHANGED_CRITICAL, requeue_on_error=True)
    def on_referral_status_changed(self, body):
        handle_batch(self.db, routing.NOTIFY_REFERRAL_STATUS_CHANGED_CRITICAL.name, [body],
                     handlers.referral_status_changed)
