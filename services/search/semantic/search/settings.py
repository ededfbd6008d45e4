"""Settings of the search service (environment variables SEMANTIC_*)."""

from __future__ import annotations

from pydantic import Field

from semantic.common.auth import AuthSettings
from semantic.core.recommend.settings import RecommendSettings
from semantic.core.settings import RetrievalSettings, WritePathSettings
from semantic.store.postgres.guardian import DatabaseRecoverySettings


class SearchSettings(
    WritePathSettings,
    RetrievalSettings,
    AuthSettings,
    RecommendSettings,
    DatabaseRecoverySettings,
):
    """Every field reads SEMANTIC_<FIELD NAME>; DATABASE_URL is required."""

    grpc_port: int = Field(50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(9092, ge=0, le=65535, description="Prometheus port (0: off).")

    search_pool_min: int = Field(2, ge=1, description="PostgreSQL pool: connections kept open.")
    search_pool_max: int = Field(16, ge=1, description="PostgreSQL pool: connections at most.")
    search_rrf_k: int = Field(60, ge=1, description="Default k of reciprocal rank fusion.")
    search_hybrid_candidates: int = Field(
        100, ge=1, le=2000, description="Candidates per side fused in hybrid mode."
    )
    search_max_top_k: int = Field(1000, ge=1, description="Largest top_k a request may ask.")
    search_max_offset: int = Field(10_000, ge=0, description="Largest offset a request may ask.")
    search_max_nodes_per_upsert: int = Field(500, ge=1, description="Nodes per Upsert call.")
    search_max_get: int = Field(1000, ge=1, description="Ids + slugs per Get call.")
    search_max_title_chars: int = Field(1000, ge=1, description="Characters of a node title.")
    search_max_text_chars: int = Field(
        1_000_000, ge=1, description="Characters of a node body or one of its texts."
    )
    search_max_query_chars: int = Field(10_000, ge=1, description="Characters of a query text.")
    search_max_tags: int = Field(64, ge=0, description="Tags per node.")
    search_max_metadata_bytes: int = Field(
        65_536, ge=2, description="Size of a node's metadata (protobuf Struct), in bytes."
    )
