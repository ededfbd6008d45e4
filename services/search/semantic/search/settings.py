"""Settings of the search service (environment variables SEMANTIC_*)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from pydantic import Field

from semantic.common.auth import AuthSettings
from semantic.core.domain import MAX_EXPANSION_DOCS, MAX_HYBRID_CANDIDATES, Fusion
from semantic.core.recommend.settings import RecommendSettings
from semantic.core.settings import (
    InputLimitSettings,
    MaintenanceSettings,
    RankingSettings,
    RetrievalSettings,
    SnapshotSettings,
    WritePathSettings,
)
from semantic.store.nats.settings import EventStreamSettings
from semantic.store.postgres.guardian import DatabaseRecoverySettings


class SearchSettings(
    WritePathSettings,
    MaintenanceSettings,
    RetrievalSettings,
    RankingSettings,
    InputLimitSettings,
    AuthSettings,
    RecommendSettings,
    DatabaseRecoverySettings,
    EventStreamSettings,
    SnapshotSettings,
):
    """Every field reads SEMANTIC_<FIELD NAME>; DATABASE_URL is required. NATS_URL is
    optional: with it the Admin service reports the indexer's backlog and manages the
    dead letters (the stream and consumer names are the indexer's settings)."""

    grpc_port: int = Field(50052, ge=0, le=65535, description="gRPC port (0 picks a free one).")
    metrics_port: int = Field(9092, ge=0, le=65535, description="Prometheus port (0: off).")

    http_enabled: bool = Field(
        True, description="Serve the HTTP/JSON API and the console beside gRPC."
    )
    http_host: str = Field("0.0.0.0", description="Address the HTTP server binds.")
    http_port: int = Field(
        8080, ge=0, le=65535, description="HTTP port of the API and console (0 picks a free one)."
    )
    http_max_body_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest HTTP request body (413 above)."
    )
    search_query_embed_timeout_s: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Longest wait for a query's embedding, retries included (UNAVAILABLE "
        "after it: an embedder that stopped answering).",
    )
    http_max_head_bytes: int = Field(
        64 * 1024,
        ge=4096,
        le=16 * 1024 * 1024,
        description="Largest HTTP request line and headers together (431 above).",
    )
    http_cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed by CORS (e.g. https://app.example.com); "
        "empty: no cross-origin access.",
    )
    http_allowed_hosts: str = Field(
        "",
        description="Comma-separated host names a request without credentials may name "
        "(authentication off) beside localhost and IP addresses.",
    )
    http_forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description="Proxies trusted for X-Forwarded-For/-Proto (comma-separated IPs, or *).",
    )

    search_pool_min: int = Field(2, ge=1, description="PostgreSQL pool: connections kept open.")
    search_pool_max: int = Field(16, ge=1, description="PostgreSQL pool: connections at most.")
    search_rrf_k: int = Field(60, ge=1, description="Default k of reciprocal rank fusion.")
    search_fusion: Fusion = Field(
        Fusion.RELATIVE_SCORE,
        description="Default fusion of hybrid search: rrf, relative_score or distribution.",
    )
    search_hybrid_candidates: int = Field(
        100, ge=1, le=MAX_HYBRID_CANDIDATES, description="Candidates per side fused in hybrid mode."
    )
    search_expansion_docs: int = Field(
        1,
        ge=0,
        le=MAX_EXPANSION_DOCS,
        description="Default number of first-pass hits a hybrid query's vector is expanded"
        " with (pseudo-relevance feedback; 0: off).",
    )
    search_expansion_weight: float = Field(
        3.0,
        ge=0,
        allow_inf_nan=False,
        description="Default weight of the expansion hits' mean vector added to the query's.",
    )
    search_nats_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Timeout of each NATS JetStream request of the Admin RPCs (health report,"
        " dead letters).",
    )

    search_max_check_bytes: int = Field(
        1 << 20, ge=1, description="Size of the text of a Check, in UTF-8 bytes (1 MiB)."
    )
    search_check_budget_ms: int = Field(
        2000,
        ge=1,
        description="Milliseconds a Check may search before it answers with what it found"
        " (budget_exceeded); a request may ask for less.",
    )
    search_max_check_violations: int = Field(
        1000, ge=1, description="Violations a Check may return (its max_violations)."
    )
    search_check_concurrency: int = Field(
        4,
        ge=1,
        description="Checks searching at once per process, each on its own thread (more:"
        " RESOURCE_EXHAUSTED).",
    )

    search_local_index: bool = Field(
        True,
        description="Keep a local vector index of the active space that answers dense Search"
        " and Nearest while PostgreSQL is unreachable (degraded mode).",
    )
    search_local_first: bool = Field(
        True,
        description="Dense Search takes its candidates from the local vector index (when it is"
        " on and current) and scores them, and every node changed since its last sync, exactly"
        " in PostgreSQL, instead of running PostgreSQL's HNSW index scan.",
    )
    search_local_index_ef_search: int = Field(
        128,
        ge=16,
        le=1000,
        description="Candidates the local index's HNSW graph explores per search (usearch's"
        " expansion_search): local-first and degraded searches.",
    )
    search_local_first_max_busy: int = Field(
        0,
        ge=0,
        le=1000,
        description="Local-first dense search runs while at most this many other dense"
        " searches are under way in the process; beyond, PostgreSQL's index scan answers.",
    )
    search_local_index_dir: str = Field(
        "",
        description="Folder of the local vector index (empty: a folder under the system temp"
        " dir named after the database and the gRPC port; in Kubernetes an emptyDir).",
    )
    search_local_index_sync_s: float = Field(
        2.0, gt=0, description="Seconds between two syncs of the local index with PostgreSQL."
    )
    search_local_index_save_s: float = Field(
        30.0,
        gt=0,
        description="Least seconds between two saves of the local index to its folder (a"
        " changed index is saved at the first sync after them, and at shutdown).",
    )

    def local_index_dir(self) -> Path:
        """``search_local_index_dir``, or its default (see the field)."""
        if self.search_local_index_dir:
            return Path(self.search_local_index_dir)
        tag = hashlib.sha256(f"{self.dsn()}|{self.grpc_port}".encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / "semantic-local-index" / tag

    def allowed_hosts(self) -> list[str]:
        """``http_allowed_hosts`` as a list."""
        return [h.strip() for h in self.http_allowed_hosts.split(",") if h.strip()]

    def cors_origins(self) -> list[str]:
        """``http_cors_origins`` as a list."""
        return [o.strip() for o in self.http_cors_origins.split(",") if o.strip()]
