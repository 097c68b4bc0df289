"""Who hears which event: the one exchange, and every consumer queue with its bindings.

All queues are declared by `sanad migrate` and again by every service at start-up, because RabbitMQ
drops an event published before the queue that should hold it exists. Queue arguments cannot change on
an existing queue, so a change here needs a new queue name.
"""
import os

from kombu import Exchange, Queue, binding

EXCHANGE = Exchange("sanad.events", type="topic", durable=True)


def _queue(name, *routing_keys):
    arguments = {}
    if os.environ.get("SANAD_QUEUE_TYPE") == "quorum":
        arguments["x-queue-type"] = "quorum"
    return Queue(
        name,
        bindings=[binding(EXCHANGE, routing_key=key) for key in routing_keys],
        durable=True,
        queue_arguments=arguments,
    )


# Triage assesses every case. Intake sends a case on the critical lane when the operator's checklist
# already says a life is in danger, and triage's critical process assesses it from a queue of its own.
TRIAGE_CASE_RECEIVED = _queue("triage.case_received", "case.received.normal")
TRIAGE_CASE_RECEIVED_CRITICAL = _queue("triage.case_received.critical", "case.received.critical")

# Referral and notify keep the critical lane in queues and processes of its own, so a critical case
# never waits behind a backlog of normal ones.
REFERRAL_CASE_TRIAGED = _queue("referral.case_triaged", "case.triaged.normal")
REFERRAL_CASE_TRIAGED_CRITICAL = _queue("referral.case_triaged.critical", "case.triaged.critical")
# Referral treats a webhook notify gave up on as an offer the partner never got, and escalates it.
REFERRAL_NOTIFICATION_EXHAUSTED = _queue("referral.notification_exhausted", "notification.exhausted.normal")
REFERRAL_NOTIFICATION_EXHAUSTED_CRITICAL = _queue(
    "referral.notification_exhausted.critical", "notification.exhausted.critical",
)
NOTIFY_REFERRAL_CREATED = _queue("notify.referral_created", "referral.created.normal")
NOTIFY_REFERRAL_CREATED_CRITICAL = _queue("notify.referral_created.critical", "referral.created.critical")
# Notify stops offering a referral that referral withdrew (a missed deadline, a webhook given up on, a
# supervisor reassigning it): its offer's retries are cancelled and it is never replayed.
NOTIFY_REFERRAL_STATUS_CHANGED = _queue("notify.referral_status_changed", "referral.status_changed.normal")
NOTIFY_REFERRAL_STATUS_CHANGED_CRITICAL = _queue(
    "notify.referral_status_changed.critical", "referral.status_changed.critical",
)
# The supervisors' pager: escalations, on the lane of the case's level.
NOTIFY_REFERRAL_ESCALATED = _queue("notify.referral_escalated", "referral.escalated.normal")
NOTIFY_REFERRAL_ESCALATED_CRITICAL = _queue("notify.referral_escalated.critical", "referral.escalated.critical")

# Intake keeps the case status operators see: risk, referrals, deliveries.
INTAKE_CASE_STATUS = _queue(
    "intake.case_status", "case.triaged.*", "case.unmatched.*", "referral.created.*", "delivery.attempted.*",
    "referral.status_changed.*", "referral.escalated.*",
)

# Triage keeps the original assessment of a case whose level staff overrode, and announces the new level.
TRIAGE_RISK_OVERRIDDEN = _queue("triage.risk_overridden", "case.risk_overridden.*")

ALL_QUEUES = (
    TRIAGE_CASE_RECEIVED,
    TRIAGE_CASE_RECEIVED_CRITICAL,
    REFERRAL_CASE_TRIAGED,
    REFERRAL_CASE_TRIAGED_CRITICAL,
    REFERRAL_NOTIFICATION_EXHAUSTED,
    REFERRAL_NOTIFICATION_EXHAUSTED_CRITICAL,
    NOTIFY_REFERRAL_CREATED,
    NOTIFY_REFERRAL_CREATED_CRITICAL,
    NOTIFY_REFERRAL_ESCALATED,
    NOTIFY_REFERRAL_ESCALATED_CRITICAL,
    NOTIFY_REFERRAL_STATUS_CHANGED,
    NOTIFY_REFERRAL_STATUS_CHANGED_CRITICAL,
    INTAKE_CASE_STATUS,
    TRIAGE_RISK_OVERRIDDEN,
)


# Bindings of earlier versions, removed where they still exist: RabbitMQ keeps a queue's bindings when the
# code that declared them changes. (queue, routing key)
RETIRED_BINDINGS = (
    (TRIAGE_CASE_RECEIVED, "case.received.*"),  # before the critical lane into triage
)


def declare_all(connection) -> None:
    channel = connection.default_channel
    EXCHANGE(channel).declare()
    for queue in ALL_QUEUES:
        queue(channel).declare()
    for queue, routing_key in RETIRED_BINDINGS:
        channel.queue_unbind(queue.name, EXCHANGE.name, routing_key)
