"""The names of the event streams and durable consumers, shared by every process that
reads them: the indexer creates and consumes them, the search service reports their
backlog and manages the dead letters. Defined here once so both read the same names."""

from __future__ import annotations

from pydantic import Field

from semantic.common.settings import BaseServiceSettings


class EventStreamSettings(BaseServiceSettings):
    """Stream and consumer names (``SEMANTIC_INDEXER_*``, the names the indexer made)."""

    indexer_stream: str = Field("SEMANTIC", description="JetStream stream of the events.")
    indexer_dlq_stream: str = Field("SEMANTIC_DLQ", description="Stream of the dead letters.")
    indexer_consumer: str = Field("indexer", description="Durable consumer of content events.")
    indexer_user_consumer: str = Field(
        "indexer-users", description="Durable consumer of user events."
    )
    indexer_feedback_consumer: str = Field(
        "indexer-feedback", description="Durable consumer of feedback events."
    )
