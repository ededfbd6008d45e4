"""The Prometheus metrics of the indexer's consumer loop (events, batches, freshness, lag,
retries and dead letters), by event kind or consumer."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("semantic_indexer_events_total", "Events handled", ["kind", "outcome"])
DEAD_LETTERS = Counter("semantic_indexer_dead_letters_total", "Events dead-lettered", ["reason"])
BATCH_SIZE = Histogram(
    "semantic_indexer_batch_size",
    "Events per applied batch",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
APPLY_SECONDS = Histogram(
    "semantic_indexer_apply_seconds", "Apply time of one batch (embed + write)", ["kind"]
)
FRESHNESS = Histogram(
    "semantic_indexer_freshness_seconds",
    "Publish (or, without it, occurred_at) to commit, seconds",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
LAG = Gauge(
    "semantic_indexer_consumer_lag", "Events not yet delivered to the consumer", ["consumer"]
)
ACK_PENDING = Gauge(
    "semantic_indexer_ack_pending", "Events delivered and not yet acked", ["consumer"]
)
RETRIES = Counter("semantic_indexer_retries_total", "Batches nak'ed for a retry", ["kind"])
