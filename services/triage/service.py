"""Triage: assesses every received case and announces its risk level.

Two service classes run as separate processes, as in referral and notify: the normal one assesses the
cases intake sends on the normal lane, as many to a transaction as are waiting (sanad.platform.inbox
.consume_batches), and keeps the overrides; the critical one assesses only the cases whose checklist already
says a life is in danger, one at a time, from a queue of its own, so they never wait behind a backlog (see
services.intake.cases.triage_lane).
"""
from functools import partial

from prometheus_client import Counter

from sanad.contracts import routing
from sanad.platform.database import Database
from sanad.platform.inbox import BUSY_LINGER, consume, consume_batches, handle_batch, handle_event
from sanad.platform.keys import KeyFile
from sanad.platform.observability import Observable
from sanad.platform.outbox import Outbox
from services.triage import handlers
from services.triage.risk_model import RiskModel

CASES_TRIAGED = Counter("sanad_cases_triaged_total", "Cases assessed by triage, by risk level.", ["level"])
RISK_OVERRIDES = Counter("sanad_risk_overrides_total", "Risk levels set by staff, by the new level.", ["level"])


class TriageService(Observable):
    name = "triage"

    db = Database("triage")
    outbox = Outbox()
    keys = KeyFile()
    risk_model = RiskModel()

    @consume_batches(routing.TRIAGE_CASE_RECEIVED, requeue_on_error=True, linger_when_busy=BUSY_LINGER)
    def on_case_received(self, bodies):
        self._triage(routing.TRIAGE_CASE_RECEIVED.name, bodies)

    @consume(routing.TRIAGE_RISK_OVERRIDDEN, requeue_on_error=True)
    def on_risk_overridden(self, body):
        handler = partial(handlers.override_case, outbox=self.outbox, keys=self.keys)
        level = handle_event(self.db, routing.TRIAGE_RISK_OVERRIDDEN.name, body, handler)
        if level:
            RISK_OVERRIDES.labels(level=level).inc()

    def _triage(self, queue, bodies):
        assessments = handlers.Assessments()
        handler = partial(handlers.triage_case, outbox=self.outbox, keys=self.keys, assessor=self.risk_model,
                          assessments=assessments)
        for level in handle_batch(self.db, queue, bodies, handler, prepare=assessments.read):
            if level:
                CASES_TRIAGED.labels(level=level).inc()


class CriticalTriageService(TriageService):
    name = "triage_critical"

    @consume(routing.TRIAGE_CASE_RECEIVED_CRITICAL, requeue_on_error=True)
    def on_case_received(self, body):
        self._triage(routing.TRIAGE_CASE_RECEIVED_CRITICAL.name, [body])

    def on_risk_overridden(self, body):
        """Not here: overrides stay with the normal process."""
