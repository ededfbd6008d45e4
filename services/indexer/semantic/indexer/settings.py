"""Settings of the indexer (environment variables SEMANTIC_*)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from semantic.core.recommend.settings import RecommendSettings
from semantic.core.settings import (
    InputLimitSettings,
    MaintenanceSettings,
    RankingSettings,
    RelationDiscoverySettings,
    WritePathSettings,
)
from semantic.store.nats.settings import EventStreamSettings
from semantic.store.postgres.guardian import DatabaseRecoverySettings


class IndexerSettings(
    WritePathSettings,
    MaintenanceSettings,
    RankingSettings,
    RelationDiscoverySettings,
    RecommendSettings,
    DatabaseRecoverySettings,
    EventStreamSettings,
):
    """Every field reads SEMANTIC_<FIELD NAME>; DATABASE_URL and NATS_URL are required.

    The stream and consumer names (``EventStreamSettings``) are read by the search service
    too. The write-path fields (``SEMANTIC_SEARCH_CHUNKING`` and friends) and the tracking
    weights (``SEMANTIC_RECOMMEND_WEIGHT_*``, ``..._JOURNEY_HALF_LIFE_HOURS``) are shared
    with the search service so events and direct calls have the same effect.
    """

    grpc_port: int = Field(50053, ge=0, le=65535, description="gRPC port (health only).")
    metrics_port: int = Field(9093, ge=0, le=65535, description="Prometheus port (0: off).")
    indexer_subjects: list[str] = Field(
        default_factory=lambda: ["semantic.content.>", "semantic.user.>", "semantic.feedback.>"],
        description="Subjects the event stream captures (JSON list).",
    )
    indexer_stream_replicas: int = Field(1, ge=1, le=5, description="Stream replicas.")
    indexer_stream_retention: Literal["interest", "limits"] = Field(
        "interest",
        description="Event stream retention: interest (an event leaves once every consumer "
        "acked it) or limits (kept until max age).",
    )
    indexer_stream_max_age_hours: float = Field(
        168.0, ge=0, description="Longest the stream keeps an event, acked or not (0: forever)."
    )
    indexer_duplicate_window_s: float = Field(
        120.0, gt=0, description="JetStream duplicate window for Nats-Msg-Id."
    )
    indexer_batch_size: int = Field(256, ge=1, le=1000, description="Events fetched per batch.")
    indexer_concurrency: int = Field(
        3, ge=1, le=16, description="Batches in flight per replica (embedding overlaps writing)."
    )
    indexer_ack_wait_s: float = Field(
        30.0, ge=1, description="Redelivery after this long without ack or progress signal."
    )
    indexer_max_deliver: int = Field(
        10, ge=1, description="Attempts before an event failing for its own reasons is dead."
    )
    indexer_max_ack_pending: int = Field(
        4096, ge=1, description="Events in flight across all replicas."
    )
    indexer_retry_initial_s: float = Field(
        0.5, gt=0, description="First redelivery delay after a transient failure."
    )
    indexer_retry_max_s: float = Field(30.0, gt=0, description="Largest redelivery delay.")
    indexer_max_event_bytes: int = Field(
        1024 * 1024, ge=1024, description="Larger events are dead-lettered (too_large)."
    )
    indexer_heavy_event_bytes: int = Field(
        64 * 1024,
        ge=1,
        description="A content event this large is applied after its batch, alone (when no "
        "other event of the batch names its node), so the batch does not wait for its "
        "embedding.",
    )
    indexer_max_text_chars: int = Field(
        InputLimitSettings.model_fields["search_max_text_chars"].default,
        ge=1,
        description="Characters per title/body/text of an event (default: as in a direct call).",
    )
    indexer_heal_interval_s: float = Field(
        300.0, ge=0, description="Seconds between heal passes (0: no heal loop)."
    )
    indexer_completeness_check_s: float = Field(
        5.0,
        ge=0,
        description="Seconds between checks of the next window of nodes for missing vectors;"
        " a finding starts a heal pass at once (0: off; runs only with the heal loop).",
    )
    indexer_pool_max: int = Field(8, ge=2, description="PostgreSQL pool: connections at most.")
