"""The ports of the core: what the use cases need from the outside, as ``typing.Protocol``s.

    port              what it does                        adapter (in semantic.store.postgres)
    Embedder          texts -> vectors with a space's model   (semantic.common.embedder_client)
    SpaceRegistry     read, create and switch spaces          spaces.PostgresSpaces
    NodeStore         versioned writes of nodes and vectors,  nodes.PostgresNodes
                      reads by id or slug, tombstoned deletes
    Retrieval         dense and keyword candidates under a    retrieval.PostgresRetrieval
                      filter
    SearchStatistics  counts for Stats                        statistics.PostgresStatistics
    MaintenanceStore  the node walks of heal/backfill/reindex maintenance.PostgresMaintenance
                      and the cross-process pass locks
    ConsistencyStore  the reads of CheckConsistency          consistency.PostgresConsistency
    ExploreStore      a seeded sample of a space's vectors    explore.PostgresExplore

The ports of degraded reads (``ChangeFeed``, adapter ``changes.PostgresChanges``, and
``LocalIndex``, adapter ``semantic.store.local.index.UsearchIndex``) live in
:mod:`semantic.core.degraded`; those of relations (``RelationStore``, adapter
``relations.PostgresRelations``) in :mod:`semantic.core.relations`, and of relation
discovery (``DiscoveryStore``, adapter ``discovery.PostgresDiscovery``) in
:mod:`semantic.core.discovery`.

The values the embedder port speaks (:data:`InputType`, defined in
:mod:`semantic.common.embedding`, :class:`Embedded`,
:class:`ModelDescription`) live here too. Nothing here knows SQL, asyncpg or protobuf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from semantic.common.embedding import InputType

if TYPE_CHECKING:
    from semantic.core.consistency import AliasState, Offenders, SchemaState, SpaceTables
    from semantic.core.degraded import LocalCandidates
    from semantic.core.domain import DenseHit, NodeRecord, SearchQuery
    from semantic.core.explore import ExploreQuery, Sample
    from semantic.core.nodes import (
        DeleteOutcome,
        DeleteResult,
        Deletion,
        NodeWrite,
        Stored,
        VectorRow,
        WriteResult,
    )
    from semantic.core.service import Stats
    from semantic.core.spaces import Space

Key = tuple[str, str]
"""A node's key: (tenant, id)."""


@dataclass(frozen=True)
class ModelDescription:
    """What the embedder says about one of its models."""

    model_id: str
    sha256: str
    dim: int
    max_tokens: int


@dataclass(frozen=True)
class Embedded:
    """Vectors for a list of texts, with their token accounting."""

    vectors: np.ndarray[Any, Any]  # float32 [n, dim]
    tokens: list[int]
    truncated: list[bool]
    model_id: str
    model_sha256: str


class Embedder(Protocol):
    """Texts to vectors (the embedder service's gRPC client provides it)."""

    async def embed(
        self, texts: Sequence[str], *, input_type: InputType = ..., model_id: str = ...
    ) -> Embedded: ...


class SpaceRegistry(Protocol):
    """The embedding spaces and the ``active`` alias."""

    async def active(self) -> Space:
        """The space search reads; NoActiveSpace when none is set up yet."""
        ...

    async def get(self, space_id: int) -> Space:
        """One space by id; NotFound when it does not exist."""
        ...

    async def list_all(self) -> list[Space]:
        """Every space, newest first."""
        ...

    async def activate(
        self, space_id: int, *, allow_building: bool = False
    ) -> tuple[int | None, Space]:
        """Point ``active`` at ``space_id``; (previous id, new space)."""
        ...

    async def rollback(self) -> tuple[int, Space]:
        """Point ``active`` back at the previous space; (space left, new active)."""
        ...

    async def mark_ready(self, space_id: int) -> Space:
        """A built space waits for a manual switch."""
        ...

    async def save_build(self, space_id: int, build: dict[str, Any]) -> None:
        """Record the progress of a space build."""
        ...

    async def reindex(
        self,
        *,
        model_id: str,
        model_sha256: str,
        dim: int,
        build: dict[str, Any],
        force_new: bool = False,
    ) -> tuple[Space, bool]:
        """A BUILDING space for this model and whether it was created (an existing
        building, ready or active space of the model is returned unless ``force_new``)."""
        ...

    async def vector_counts(self, found: Sequence[Space]) -> dict[int, tuple[int, int]]:
        """(vectors, nodes with vectors) of each space."""
        ...

    async def vector_extension(self) -> str:
        """What serves the vectors, with its version (a health probe)."""
        ...


class NodeStore(Protocol):
    """Nodes (the source of truth) and their vectors in each space."""

    async def stored(self, keys: Sequence[Key]) -> dict[Key, Stored]:
        """Current state of (tenant, id) keys, tombstones included."""
        ...

    async def write(
        self, space: Space, writes: Sequence[NodeWrite], deletes: Sequence[Deletion] = ()
    ) -> tuple[list[WriteResult], list[DeleteResult]]:
        """Upserts and deletes in one transaction (deletes reach every space); raises
        ``Replan`` when stored content moved after the vectors were computed."""
        ...

    async def replace_vectors(
        self,
        space: Space,
        computed: Mapping[Key, Sequence[VectorRow]],
        expected_hash: Mapping[Key, str],
    ) -> list[Key]:
        """Replace computed vectors of nodes whose content is still ``expected_hash``."""
        ...

    async def get(
        self, tenant: str, *, ids: Sequence[str] = (), slugs: Sequence[str] = ()
    ) -> list[NodeRecord]:
        """Nodes by id and/or slug, in no particular order."""
        ...

    async def ids_by_slug(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The node id of each (tenant, slug) that names a node."""
        ...

    async def centre(
        self, space: Space, tenant: str, *, node_id: str | None, slug: str | None, name: str
    ) -> tuple[str, np.ndarray[Any, Any] | None] | None:
        """A node (by id, else slug) and the mean of its ``name`` vectors in ``space``
        (None when it has none); None when there is no such node."""
        ...

    async def vectors(
        self, space: Space, tenant: str, ids: Sequence[str], *, name: str | None = None
    ) -> dict[str, list[VectorRow]]:
        """Stored vectors of nodes in ``space`` by node id (of one vector name if given),
        in chunk order."""
        ...

    async def delete(
        self,
        tenant: str,
        ids: Sequence[str],
        version: int = 0,
        unheld_slugs: Sequence[str] = (),
        named_slugs: Mapping[str, str] | None = None,
    ) -> list[tuple[str, str | None, DeleteOutcome]]:
        """Delete nodes and their vectors in every space, leaving tombstones.
        ``unheld_slugs``: slugs no node held when resolved, each deleted as the id an upsert
        by it creates (``Deletion.by_slug``); a result that found nothing names the slug
        (``("", slug, NOT_FOUND)``); ``named_slugs``: id -> the slug the delete named that
        node by (a versioned delete tombstones the slug too: ``Deletion.named_slug``)."""
        ...


class Retrieval(Protocol):
    """Candidates for a query, best first, the query's filter applied."""

    async def dense(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        limit: int,
        *,
        attach_after: int | None = None,
    ) -> list[DenseHit]:
        """The ``limit`` nodes most similar to ``vector`` (node rows attached after
        ``attach_after`` hits)."""
        ...

    async def dense_candidates(
        self,
        space: Space,
        query: SearchQuery,
        vector: np.ndarray[Any, Any],
        limit: int,
        candidates: LocalCandidates,
        *,
        attach_after: int | None = None,
    ) -> list[DenseHit] | None:
        """The ``limit`` nodes most similar to ``vector`` among a local index's candidates
        and every node changed since its cursor, scored exactly (first target only; node rows
        attached after ``attach_after`` hits); None when the source of truth cannot tell which
        nodes changed since (the caller runs :meth:`dense` then)."""
        ...

    async def keyword(self, query: SearchQuery, limit: int) -> list[tuple[str, float]]:
        """The ``limit`` best ``(node_id, bm25)`` for the query text."""
        ...

    async def mean_vectors(
        self, space: Space, tenant: str, ids: Sequence[str], names: Sequence[str]
    ) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
        """node id -> vector name -> the mean of the node's chunk vectors of that name in the
        space, for the given nodes and names (what a node lacks is left out)."""
        ...


class SearchStatistics(Protocol):
    """Counts for Stats."""

    async def stats(self, tenant: str | None, *, sizes: bool) -> Stats:
        """Counts of ``tenant`` (None: every tenant): nodes per type, vectors and nodes per
        space, users and events, the active space's heal backlog; ``sizes``: the tables'
        and indexes' sizes."""
        ...


@dataclass(frozen=True)
class HealRow:
    """A node seen by a heal pass, with the state of its vectors in the space."""

    node: NodeRecord
    missing: bool
    stale: bool


class MaintenanceStore(Protocol):
    """The node walks of maintenance, in (tenant, id) order, and its pass locks."""

    async def count_nodes(self, content_type: str | None) -> int:
        """Nodes (of one content type when given)."""
        ...

    async def heal_page(
        self, space: Space, after: Key, content_type: str | None, limit: int
    ) -> list[HealRow]:
        """Up to ``limit`` nodes after ``after`` with the state of their vectors."""
        ...

    async def missing_window(
        self, space: Space, after: Key, limit: int
    ) -> tuple[list[NodeRecord], set[Key], Key | None]:
        """The nodes of a window without any vector in ``space``, the window's keys and
        its last key (None when no node follows ``after``)."""
        ...

    async def remove_orphans(self, space: Space, *, dry_run: bool) -> int:
        """Delete the vector rows of ``space`` whose node no longer exists (only count
        them on a dry run); how many."""
        ...

    def exclusive(self, lock: str, space_id: int) -> AbstractAsyncContextManager[bool]:
        """Hold the cross-process lock ``lock`` ("build" or "heal") of a space while the
        block runs; the block gets False (and runs unlocked) when another holds it."""
        ...


class ConsistencyStore(Protocol):
    """What CheckConsistency reads (``semantic.core.consistency``); reads only."""

    async def schema(self) -> SchemaState:
        """The migrations shipped and recorded, and what a bootstrap would create."""
        ...

    async def alias(self) -> AliasState:
        """The ``active`` alias, the spaces in state active, the aliased table's column."""
        ...

    async def space_tables(self) -> list[SpaceTables]:
        """Every registered space with whether its table and HNSW index exist."""
        ...

    async def missing_vectors(self, space: Space, limit: int) -> Offenders:
        """Nodes with text and no vector row in ``space`` (the heal backlog's missing)."""
        ...

    async def stale_vectors(self, space: Space, limit: int) -> Offenders:
        """Nodes with computed vectors from another content hash (the backlog's stale)."""
        ...

    async def orphan_vectors(self, space: Space, limit: int) -> Offenders:
        """Vector rows of ``space`` whose node no longer exists (examples: their nodes)."""
        ...


class ExploreStore(Protocol):
    """The seeded sample Explore maps (``semantic.core.explore``)."""

    async def sample(self, space: Space, query: ExploreQuery) -> Sample:
        """Up to ``query.sample`` vector rows of the query's tenant, name and content
        types, in seeded hash order, with the number of rows that matched."""
        ...
