"""Degraded reads: the values and ports of the local vector index that answers dense reads
while PostgreSQL is unreachable.

Each search replica keeps a copy of the active space's vectors and of the node fields the
filters of degraded mode need (id, slug, content type, title, tags, version, updated_at) in
a local index (:class:`LocalIndex`, adapter ``semantic.store.local``). A
:class:`semantic.core.local_sync.LocalIndexFollower` fills it from PostgreSQL at start and
keeps it current by following PostgreSQL's change log (:class:`ChangeFeed`, adapter
``semantic.store.postgres.changes``): every writer (search replicas, the indexer) writes
PostgreSQL, so the index never relies on this process's own writes.

When a read's primary path raises ``DependencyUnavailable``, the ``SearchService`` answers
from the index instead (dense, with content-type, tag and id filters) and flags the answer
as degraded. Filters the index cannot evaluate (metadata, created/updated ranges) are
refused with ``DependencyUnavailable`` naming them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, Protocol

import numpy as np

from semantic.common.errors import DependencyUnavailable
from semantic.core.domain import DenseHit, Filter, NodeRecord, VectorTarget
from semantic.core.spaces import Space

Key = tuple[str, str]
"""A node's key: (tenant, id)."""


@dataclass(frozen=True)
class IndexedNode:
    """The fields of a node the local index keeps (enough for hits and its filters)."""

    tenant: str
    id: str
    content_type: str
    slug: str | None = None
    title: str = ""
    tags: tuple[str, ...] = ()
    version: int = 0
    updated_at: datetime | None = None

    @property
    def key(self) -> Key:
        """(tenant, id)."""
        return (self.tenant, self.id)

    def record(self) -> NodeRecord:
        """As a NodeRecord (body, texts and metadata are not kept locally: empty)."""
        return NodeRecord(
            tenant=self.tenant,
            id=self.id,
            content_type=self.content_type,
            slug=self.slug,
            title=self.title,
            tags=self.tags,
            version=self.version,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class IndexedVector:
    """One chunk vector of a node in the indexed space."""

    name: str
    chunk: int
    span_start: int
    span_end: int
    embedding: np.ndarray[Any, Any]


@dataclass(frozen=True)
class NodeChange:
    """The current state of one changed node: ``node`` None when it no longer exists."""

    key: Key
    node: IndexedNode | None
    vectors: tuple[IndexedVector, ...] = ()


@dataclass(frozen=True)
class ChangeBatch:
    """What one read of the change log found."""

    cursor: int
    """Where the next read starts (the oldest transaction still open at this read)."""
    changed: int
    """Nodes whose current state was handed to the caller."""
    log_rows: int
    """Change-log rows read (several rows may name one node)."""
    reset: str = ""
    """Why the changes cannot be followed and the index must be rebuilt from a snapshot
    (nothing was handed to the caller then); empty when they were followed."""


Apply = Callable[[Sequence[NodeChange]], Awaitable[None]]


class ChangeFeed(Protocol):
    """The active space and its node changes, read from the source of truth."""

    async def active_space(self) -> Space:
        """The active space, read now (no cache)."""
        ...

    async def snapshot(self, space: Space, apply: Apply, *, batch: int) -> int:
        """Every node with its vectors in ``space``, in batches given to ``apply``, from one
        consistent snapshot; returns the cursor to follow the changes after it."""
        ...

    async def changes(self, space: Space, cursor: int, apply: Apply, *, batch: int) -> ChangeBatch:
        """The nodes changed since ``cursor``, their current state in ``space`` given to
        ``apply`` ``batch`` nodes at a time (from one consistent snapshot)."""
        ...

    async def prune(self, older_than_s: float) -> int:
        """Drop change-log rows older than this; how many."""
        ...

    @property
    def origin(self) -> int | None:
        """The change-log table's identity at the last read (None before one): another one
        means the log was made anew."""
        ...


class LocalIndex(Protocol):
    """The local copy of one space's vectors and node fields (see module doc)."""

    @property
    def space(self) -> Space | None:
        """The space indexed; None when empty."""
        ...

    @property
    def cursor(self) -> int:
        """The change-log cursor the contents are current to."""
        ...

    @property
    def synced_at(self) -> float:
        """Wall-clock time (epoch seconds) of the last successful sync."""
        ...

    @property
    def nodes(self) -> int:
        """Nodes indexed."""
        ...

    def reset(self, space: Space) -> None:
        """Empty the index and make it the index of ``space``."""
        ...

    def apply(self, changes: Sequence[NodeChange]) -> None:
        """Put each changed node's current state (replace or remove)."""
        ...

    def mark_synced(self, cursor: int, at: float) -> None:
        """Record that the contents are current to ``cursor`` as of ``at``."""
        ...

    def search(
        self,
        tenant: str,
        vector: np.ndarray[Any, Any],
        targets: Sequence[VectorTarget],
        flt: Filter,
        limit: int,
    ) -> list[DenseHit]:
        """The ``limit`` nodes of ``tenant`` most similar to ``vector`` under ``flt``
        (content types, tags, ids only), scored as the dense search scores, nodes attached."""
        ...

    def candidates(
        self,
        tenant: str,
        vector: np.ndarray[Any, Any],
        name: str,
        flt: Filter,
        limit: int,
    ) -> tuple[list[LocalCandidate], bool] | None:
        """At least ``limit`` nodes of ``tenant`` (vector ``name``, ``flt``'s content types,
        tags and ids) nearest ``vector``, nearest first, and whether they are every such
        node; None when so few of the index's vectors qualify that finding them would take a
        wide search."""
        ...

    def node(self, tenant: str, *, node_id: str | None, slug: str | None) -> IndexedNode | None:
        """One node by id or slug."""
        ...

    def vectors(self, key: Key, name: str) -> list[np.ndarray[Any, Any]]:
        """The chunk vectors of one node and vector name, in chunk order."""
        ...

    def save(self) -> None:
        """Write the index to its folder (atomically: a crash leaves the old copy or the
        new one, or a copy the next load finds corrupt and rebuilds)."""
        ...

    def load(self) -> bool:
        """Read the index from its folder; False (and empty) when missing or corrupt."""
        ...


UNSUPPORTED = "degraded mode (PostgreSQL unreachable) filters by content type, tag and id only"


def unsupported_parts(flt: Filter) -> list[str]:
    """The parts of ``flt`` the local index cannot evaluate (empty: it evaluates all)."""
    return [
        name
        for name, present in (
            ("metadata", bool(flt.metadata)),
            ("created", flt.created is not None),
            ("updated", flt.updated is not None),
        )
        if present
    ]


def check_supported(flt: Filter) -> None:
    """Raise DependencyUnavailable for a filter the local index cannot evaluate."""
    kinds = unsupported_parts(flt)
    if kinds:
        raise DependencyUnavailable(
            "postgresql", f"{UNSUPPORTED}; this query also filters by {', '.join(kinds)}"
        )


def matches(node: IndexedNode, flt: Filter) -> bool:
    """Whether ``node`` passes the content-type, tag and id parts of ``flt``."""
    if flt.content_types and node.content_type not in flt.content_types:
        return False
    tags = set(node.tags)
    if flt.tags_any and not tags.intersection(flt.tags_any):
        return False
    if flt.tags_all and not tags.issuperset(flt.tags_all):
        return False
    if flt.tags_none and tags.intersection(flt.tags_none):
        return False
    if flt.ids and node.id not in flt.ids:
        return False
    return not (flt.exclude_ids and node.id in flt.exclude_ids)


class LocalCandidate(NamedTuple):
    """One node the local index found near a query: its best chunk of the vector name asked
    and that chunk's cosine distance to the query (exact: computed from the stored vector).
    A named tuple: a search makes dozens."""

    node_id: str
    chunk: int
    span_start: int
    span_end: int
    distance: float


@dataclass(frozen=True)
class LocalCandidates:
    """The candidates of a local-first dense search (``DegradedReads.candidates``), nearest
    first, and what the source of truth needs to tell which nodes changed since the index
    last synced (their scores from the index do not hold; the others' do)."""

    found: tuple[LocalCandidate, ...]
    complete: bool
    """Every node of the tenant that the index holds and the filter passes is in ``found``
    (the index was searched exhaustively)."""
    cursor: int
    """The change-log cursor the index is current to: nodes changed by transactions at or
    after it are scored from PostgreSQL whatever the index says."""
    origin: int
    """The change-log table's identity at the index's last sync (``ChangeFeed.origin``)."""


class DegradedReads(Protocol):
    """What the SearchService asks the local index's follower: the index while PostgreSQL is
    unreachable, and the candidates of a local-first dense search while it is not."""

    def candidates(
        self,
        space: Space,
        tenant: str,
        vector: np.ndarray[Any, Any],
        *,
        name: str,
        flt: Filter,
        limit: int,
    ) -> LocalCandidates | None:
        """Candidates for the ``limit`` nodes most similar to ``vector`` (vector ``name``,
        content-type, tag and id filters applied), or None when the index cannot give them
        (not ready, another space, not synced yet, or too few of the tenant's nodes near)."""
        ...

    def reader(self, cause: BaseException) -> LocalIndex:
        """The index when it can serve; DependencyUnavailable (naming ``cause`` and why
        the index cannot serve) otherwise."""
        ...
