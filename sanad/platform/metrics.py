"""Metrics every service exports. Labels name queues, event types and outcomes, never anything personal."""
from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double every counter and answer no question ops ask.
disable_created_metrics()

EVENTS_CONSUMED = Counter(
    "sanad_events_consumed_total", "Events taken from a queue, by what became of them.", ["queue", "outcome"],
)
EVENT_HANDLING_SECONDS = Histogram(
    "sanad_event_handling_seconds", "Time to handle one event, committed effect included.", ["queue"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_BATCH_SIZE = Histogram(
    "sanad_event_batch_size", "Events handed over together, to be handled in one transaction and one commit.",
    ["queue"],
    buckets=(1, 2, 4, 8, 16, 32, 64),
)
DEAD_LETTERS = Counter(
    "sanad_dead_letters_total", "Messages set aside because they could not be handled.", ["queue", "reason"],
)
EVENTS_PUBLISHED = Counter("sanad_events_published_total", "Events relayed from the outbox.", ["type"])
PUBLISH_FAILURES = Counter("sanad_outbox_publish_failures_total", "Failed attempts to relay the outbox.")
OUTBOX_PENDING = Gauge("sanad_outbox_pending", "Events in the outbox not yet published.")
OUTBOX_OLDEST_AGE = Gauge("sanad_outbox_oldest_age_seconds", "Age of the oldest unpublished event (0 if none).")
PRECEDENCE_WAITS = Counter(
    "sanad_precedence_waits_total",
    "Round trips to PostgreSQL that waited for a critical case's request to finish first, by how the wait "
    "ended (cleared: it finished; limit: the wait reached its limit).",
    ["outcome"],
)

# Measured in the background by sanad.platform.observability.Probe, from the process's own schema and the
# queues it consumes (a passive declare: no management API needed).
QUEUE_MESSAGES_READY = Gauge(
    "sanad_queue_messages_ready", "Messages waiting in a queue this process consumes (consumer lag).", ["queue"],
)
QUEUE_CONSUMERS = Gauge("sanad_queue_consumers", "Consumers attached to a queue this process consumes.", ["queue"])
DEAD_LETTERS_STORED = Gauge(
    "sanad_dead_letters_stored", "Messages kept in the schema's dead_letters table, awaiting a person.", ["schema"],
)
DEPENDENCY_UP = Gauge("sanad_dependency_up", "1 when the process reached the dependency on its last probe.",
                      ["dependency"])
