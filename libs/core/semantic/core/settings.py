"""Settings of the core's use cases, shared by every process that runs them.

Search and the indexer both inherit these classes, so a direct call and an event write and
read the same way; each default is defined here once and read by whoever needs it
(``WritePathSettings.model_fields[...].default``), never copied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from semantic.common.settings import BaseServiceSettings
from semantic.core.discovery import DiscoveryConfig
from semantic.core.spaces import (
    DEFAULT_ACTIVE_SPACE_TTL_S,
    DEFAULT_INDEX_PRECISION,
    IndexPrecision,
)


class WritePathSettings(BaseServiceSettings):
    """How nodes become vectors and keyword postings; shared by search and the indexer so
    both write paths index the same way."""

    embedder_address: str = Field(
        "127.0.0.1:50051", description="host:port of the embedder service."
    )
    search_text_config: str = Field(
        "english", description="PostgreSQL text search configuration of the keyword index."
    )
    search_chunking: bool = Field(True, description="Split long texts into word-piece windows.")
    search_chunk_window: int = Field(
        256, ge=8, description="Word-pieces per chunk ([CLS]/[SEP] incl.)."
    )
    search_chunk_overlap: int = Field(
        32, ge=0, description="Word-pieces shared by neighbouring chunks."
    )
    search_tokenizer: Path = Field(
        Path("models/all-minilm-l6-v2/tokenizer.json"),
        description="tokenizer.json of the embedding model, for chunking.",
    )
    search_title_vector: bool = Field(False, description="Also embed titles as the `title` vector.")
    search_active_space_ttl_s: float = Field(
        DEFAULT_ACTIVE_SPACE_TTL_S,
        ge=0,
        description="Seconds a resolved active space is kept; a switch made elsewhere reaches "
        "this process within that time (0: read it every time).",
    )
    vector_index_precision: IndexPrecision = Field(
        DEFAULT_INDEX_PRECISION,
        description="HNSW index precision of a space created from now on: float32, or half "
        "(the index on embedding::halfvec, half its size; vectors and scores stay float32). "
        "An existing space keeps its own; reindex to change it.",
    )


class MaintenanceSettings(BaseServiceSettings):
    """How heal, backfill and reindex walk the nodes (the indexer's heal loop, Admin's
    Heal/Reindex, ``semantic heal``)."""

    indexer_heal_batch_size: int = Field(64, ge=1, description="Nodes per heal/backfill batch.")


class RelationDiscoverySettings(BaseServiceSettings):
    """Discovered `similar` relations (``semantic.core.discovery``): found by the indexer's
    heal loop and by ``semantic heal``."""

    # On: it runs off the write path (in the heal loop, in bounded steps), discovered
    # relations are marked and left out of Related unless asked for, and it is cheap: over
    # NFCorpus (3,633 documents) a whole run took 9-10 s against 537-612 s to ingest them.
    relations_discover: bool = Field(
        True, description="Find `similar` relations from nearest neighbours (heal loop)."
    )
    # all-MiniLM-L6-v2 on NFCorpus: 28% of the documents have another at or above 0.8 (0.55
    # relations per document at k = 5), pairs about one topic; 66% at 0.7, where sharing a
    # field is enough; 4% at 0.9, one question studied twice or the same paper twice
    # (`semantic bench discover`; README_vector.md, "Discovered relations").
    relations_similar_threshold: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Cosine similarity of two nodes' mean `content` vectors at or above which "
        "they are related as `similar`.",
    )
    relations_similar_k: int = Field(
        5, ge=1, le=100, description="Discovered `similar` relations per node at most."
    )
    relations_discover_batch_size: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Nodes examined per discovery step (one k-NN query each, one transaction).",
    )

    def discovery_config(self) -> DiscoveryConfig:
        """The core's value of these settings."""
        return DiscoveryConfig(
            threshold=self.relations_similar_threshold,
            k=self.relations_similar_k,
            batch_size=self.relations_discover_batch_size,
        )


class RetrievalSettings(BaseServiceSettings):
    """How the read path ranks: BM25, HNSW and the exact-scan threshold."""

    # Lucene's defaults. On NFCorpus (test split) nDCG@10 is 0.3231 with these, 0.3219 with
    # Anserini's 0.9 / 0.4; the dev split agrees (0.2970 vs 0.2959): the choice hardly matters.
    search_bm25_k1: float = Field(1.2, gt=0, description="BM25 term-frequency saturation.")
    search_bm25_b: float = Field(0.75, ge=0, le=1, description="BM25 length normalisation.")
    # At 100k embedding-like vectors (`semantic bench search`) recall@10 was 0.9745-0.994
    # at 100 depending on the index build, 0.9895-0.999 at 150.
    # 200: recall@10 >= 0.98 at 100k in every HNSW build measured (0.989-0.9945 over seven
    # builds); 150 gave 0.9795-0.9945, below 0.98 in one build of nine (2026-12-07).
    search_ef_search: int = Field(
        200,
        ge=1,
        le=1000,
        description="HNSW ef_search per query (200: recall@10 >= 0.98 at 100k, see the bench).",
    )
    # At 1M vectors a fixed 150 gave recall@10 0.920; 300 gave 0.959 and 400 0.974
    # (`semantic bench search --n 1000000`): a bigger graph needs a wider search. 0.225
    # from 200 gives 336 at 1M, as 0.35 from 150 did (recall 0.961-0.969 there).
    search_ef_search_growth: float = Field(
        0.225,
        ge=0,
        le=1,
        description="Above 100k vectors in a space, ef_search grows as "
        "(vectors / 100k) ** this (1M vectors: x1.68 at 0.225); 0 keeps it fixed.",
    )
    search_exact_threshold: int = Field(
        2000, ge=0, description="Filters matching at most this many nodes are scanned exactly."
    )
    search_local_first_max_changes: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="A local-first dense search scores the nodes changed since the local "
        "index's last sync in PostgreSQL; with more than this many it runs the HNSW index scan.",
    )


class RankingSettings(BaseServiceSettings):
    """Score modifiers' defaults and the feedback prior (README_vector.md, "Score modifiers"
    and "Feedback and confidence")."""

    search_score_modifiers: str = Field(
        "",
        description="Default score modifiers per content type: a JSON object of content type "
        "(or `*`) -> list of ScoreModifier in protobuf JSON; empty: none.",
    )
    search_modifier_candidates: int = Field(
        100,
        ge=1,
        le=2000,
        description="Candidates a query with score modifiers re-ranks (at least offset + top_k).",
    )
    feedback_prior_success: float = Field(
        1.0, gt=0, le=1000, description="Beta prior a of the success rate (successes assumed)."
    )
    feedback_prior_failure: float = Field(
        1.0, gt=0, le=1000, description="Beta prior b of the success rate (failures assumed)."
    )


class InputLimitSettings(BaseServiceSettings):
    """Input limits of the API and of content events (``semantic.wire.convert.Limits``)."""

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
    search_max_relations: int = Field(
        100, ge=0, description="Relations a node may carry on a write (Node.relations)."
    )
    search_max_related: int = Field(
        1000, ge=1, description="Nodes a Related call may ask for (its limit)."
    )
    search_max_rules: int = Field(
        50,
        ge=0,
        description="Guardian rules a node may hold (Node.rules, WriteRules, RemoveRules).",
    )


class SnapshotSettings(BaseServiceSettings):
    """Where backups go and how often the schedule takes one (the Admin ``Snapshot`` RPC,
    the search service's schedule and ``python -m semantic.search.backup``)."""

    snapshot_location: str = Field(
        "",
        description="Folder or fsspec URL the snapshots are written to (e.g. /backups, "
        "s3://bucket/semantic with s3fs installed); empty: no snapshots.",
    )
    snapshot_storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description='fsspec options of the location as a JSON object (e.g. {"endpoint_url": '
        '"https://minio:9000"}); credentials come from the storage\'s own environment '
        "variables (AWS_ACCESS_KEY_ID, ...), not from here.",
    )
    snapshot_interval_s: float = Field(
        0,
        ge=0,
        description="Seconds between scheduled snapshots of the whole installation "
        "(0: no schedule).",
    )
    snapshot_retention: int = Field(
        7, ge=1, description="Scheduled snapshots kept (older ones are removed)."
    )
    snapshot_staging_dir: str = Field(
        "",
        description="Local folder where a snapshot's files are written before they are packed "
        "to the location (empty: the system temp dir); needs room for one snapshot.",
    )

    def staging_dir(self) -> Path | None:
        """``snapshot_staging_dir`` as a path (None: the system temp dir)."""
        return Path(self.snapshot_staging_dir) if self.snapshot_staging_dir else None
