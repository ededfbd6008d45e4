"""Discovered relations: `similar` edges from each node to its nearest neighbours in the
active space, marked ``discovered`` and kept up to date by the heal loop and ``semantic heal``
(README_vector.md, "Discovered relations").

    similarity  the cosine of the two nodes' `content` vectors, each the mean of the node's
                chunks (the vector Nearest queries with and recommendations use): one number
                per pair, the same both ways, and a single shared paragraph of two long
                texts does not make them "similar"
    edges       A -> B when B is one of A's ``k`` most similar nodes of its tenant (the
                store's HNSW index finds the candidates, their mean vectors score them) at
                or above the threshold: a k-nearest-neighbour graph. A mutual pair has both
                directions with the same strength (the similarity, in [0, 1]); ``Related``
                reaches a node once whichever way it walks
    clients     a pair linked by a client `similar` relation, either way, is never
                discovered: a client relation is neither overwritten nor doubled
    due         a node is examined when it never was, or its content hash or the active
                space changed since, or a neighbour asked for it (a recheck); a node whose
                vectors are missing or stale waits for heal to fill them
    recheck     a node examined for new or changed content asks to be examined again the
                nodes whose edge to it is stale now, and the close nodes it may now belong
                to the top k of (fewer than k edges, or a weaker one); a recheck asks
                nobody, so one change costs at most 1 + in-neighbours + close nodes k-NN
                queries

A step examines at most ``batch_size`` due nodes in key order from a cursor that wraps
around (a node that keeps failing never starves the others) and writes their edges in one
transaction; one step runs at a time per space across every process (``exclusive``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence, Set
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np
import structlog

from semantic.core.spaces import Space

log = structlog.get_logger(__name__)

Key = tuple[str, str]
Vector = np.ndarray[Any, Any]
START: Key = ("", "")
CANDIDATES_PER_EDGE = 4
"""Nearest nodes the index is asked for per edge wanted (they are scored again exactly)."""


class Cause(StrEnum):
    """Why a node is due."""

    NEW = "new"
    """Never examined (or examined before it was deleted and written again)."""
    CHANGED = "changed"
    """Its content hash is not the one its edges were computed from."""
    SPACE = "space"
    """Its edges were computed in another space (a reindex, activation or rollback)."""
    RECHECK = "recheck"
    """A neighbour changed, appeared or went, or a client `similar` relation of it went."""


@dataclass(frozen=True)
class DiscoveryConfig:
    """How edges are found: the similarity threshold, edges per node, nodes per step."""

    threshold: float
    k: int
    batch_size: int

    @property
    def candidates(self) -> int:
        """Nearest nodes asked of the index per node (itself included)."""
        return self.k * CANDIDATES_PER_EDGE + 1


@dataclass(frozen=True)
class DueNode:
    """A node to examine: its content hash and mean `content` vector read together (None:
    it has no such vector), the recheck counter read, and why it is due."""

    tenant: str
    node_id: str
    content_hash: str
    recheck: int
    cause: Cause
    vector: Vector | None = field(default=None, compare=False)

    @property
    def key(self) -> Key:
        """(tenant, id)."""
        return self.tenant, self.node_id


@dataclass(frozen=True)
class Neighbour:
    """A node similar enough to another, with their similarity."""

    node_id: str
    similarity: float

    @property
    def strength(self) -> float:
        """The similarity clamped to [0, 1], to 4 decimals (an edge is not rewritten for a
        difference below that)."""
        return round(min(1.0, max(0.0, self.similarity)), 4)

    @property
    def description(self) -> str:
        """What a reader sees: ``discovered: cosine 0.87``."""
        return f"discovered: cosine {self.similarity:.2f}"


@dataclass(frozen=True)
class EdgeDiff:
    """How a node's discovered outgoing edges change."""

    added: tuple[Neighbour, ...] = ()
    updated: tuple[Neighbour, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Examined:
    """One node's outcome, for the store to write: the change of its edges and the nodes to
    examine again."""

    node: DueNode
    diff: EdgeDiff
    recheck: tuple[str, ...] = ()


@dataclass(frozen=True)
class SimilarNow:
    """The stored `similar` relations around some nodes of one tenant."""

    outgoing: Mapping[str, Mapping[str, float]]
    """node -> its discovered edges: target -> strength."""
    incoming: Mapping[str, Set[str]]
    """node -> the sources of discovered edges to it."""
    client: Mapping[str, Set[str]]
    """node -> the nodes a client `similar` relation links it with, either way."""


@dataclass
class DiscoveryReport:
    """Counts of discovery steps."""

    examined: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    rechecks: int = 0
    skipped: int = 0
    pending: int | None = None
    more: bool = False
    duration_s: float = 0.0

    def add(self, other: DiscoveryReport) -> None:
        """Add another step's counts (its pending count replaces ours)."""
        self.examined += other.examined
        self.added += other.added
        self.updated += other.updated
        self.removed += other.removed
        self.rechecks += other.rechecks
        self.skipped += other.skipped
        self.duration_s += other.duration_s
        if other.pending is not None:
            self.pending = other.pending
        self.more = other.more

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "examined": self.examined,
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "rechecks": self.rechecks,
            "skipped": self.skipped,
            "pending": self.pending,
            "duration_s": round(self.duration_s, 3),
        }


class DiscoveryStore(Protocol):
    """What discovery needs of the database."""

    async def due(self, space: Space, after: Key, limit: int) -> list[DueNode]:
        """Up to ``limit`` due nodes after ``after`` in key order (module doc), each with its
        content hash and mean `content` vector read in one snapshot."""
        ...

    async def pending(self, space: Space) -> int:
        """How many nodes are due."""
        ...

    async def nearest(self, space: Space, tenant: str, vector: Vector, limit: int) -> list[str]:
        """Ids of the ``limit`` nodes of ``tenant`` nearest ``vector`` (the HNSW index)."""
        ...

    async def mean_vectors(self, space: Space, keys: Set[Key]) -> dict[Key, Vector]:
        """Each node's mean `content` vector; nodes without one are left out."""
        ...

    async def similar_now(self, tenant: str, ids: Sequence[str]) -> SimilarNow:
        """The `similar` relations from and to ``ids``."""
        ...

    async def apply(self, space: Space, examined: Sequence[Examined]) -> tuple[int, int, int, int]:
        """Write the outcomes in one transaction: (added, updated, removed, skipped). A node
        deleted or changed since it was read is skipped (it stays due, or is gone); an
        edge is written only to a node that exists, never over a client relation nor beside
        one of the same pair."""
        ...

    def exclusive(self, space_id: int) -> AbstractAsyncContextManager[bool]:
        """Hold the discovery lock of the space (False: another process holds it)."""
        ...


def cosine(a: Vector, b: Vector) -> float:
    """Cosine similarity of two vectors (0 when either is all zeros)."""
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b)) / norm if norm > 0 else 0.0


def close_nodes(
    node_id: str,
    vector: Vector,
    candidates: Mapping[str, Vector],
    *,
    threshold: float,
    blocked: Set[str] = frozenset(),
) -> list[Neighbour]:
    """The candidates at or above ``threshold``, most similar first (then by id); the node
    itself and the ``blocked`` ones (linked by a client relation) left out."""
    found = []
    for other, theirs in candidates.items():
        if other == node_id or other in blocked:
            continue
        similarity = cosine(vector, theirs)
        if math.isfinite(similarity) and similarity >= threshold:
            found.append(Neighbour(other, similarity))
    return sorted(found, key=lambda n: (-n.similarity, n.node_id))


def edge_diff(old: Mapping[str, float], new: Sequence[Neighbour]) -> EdgeDiff:
    """From the stored discovered edges (target -> strength) to ``new``: what to add, what
    to rewrite (another strength) and what to remove."""
    wanted = {n.node_id: n for n in new}
    added = tuple(n for n in new if n.node_id not in old)
    updated = tuple(n for n in new if n.node_id in old and not _same(old[n.node_id], n.strength))
    removed = tuple(sorted(target for target in old if target not in wanted))
    return EdgeDiff(added, updated, removed)


def rechecks(
    node: DueNode,
    close: Sequence[Neighbour],
    incoming: Set[str],
    examined: Set[str],
    *,
    their_edges: Mapping[str, Mapping[str, float]],
    k: int,
) -> tuple[str, ...]:
    """Whom a node asks to be examined again when its content is new or changed (otherwise
    nobody): a node with a discovered edge to it whose strength is not the new similarity
    (or that is no longer close), and a close node without an edge to it that has fewer
    than ``k`` edges or a weaker one (it may belong in that node's top ``k`` now). Nodes
    examined in the same step are left out (they saw its current vectors).
    ``their_edges``: the discovered edges (target -> strength) of those nodes."""
    if node.cause not in (Cause.NEW, Cause.CHANGED):
        return ()
    me = node.node_id
    now = {n.node_id: n.strength for n in close}
    asked = set()
    for other in incoming:
        if not _same(now.get(other), their_edges.get(other, {}).get(me)):
            asked.add(other)
    for near in close:
        edges = their_edges.get(near.node_id, {})
        if me in edges:
            if not _same(edges[me], near.strength):
                asked.add(near.node_id)
        elif len(edges) < k or min(edges.values()) < near.strength:
            asked.add(near.node_id)
    return tuple(sorted(asked - set(examined) - {me}))


def _same(a: float | None, b: float | None) -> bool:
    """Equal strengths (to the 4 decimals kept), None only equal to None."""
    if a is None or b is None:
        return a is b
    return abs(a - b) < 5e-5


StepProgress = Callable[[DiscoveryReport], None]


class RelationDiscovery:
    """Finds, refreshes and removes the discovered `similar` relations, one bounded step at
    a time (module doc)."""

    def __init__(self, store: DiscoveryStore, config: DiscoveryConfig) -> None:
        self._store = store
        self._config = config
        self._space_id: int | None = None
        self._after: Key = START

    @property
    def config(self) -> DiscoveryConfig:
        """Threshold, edges per node, nodes per step."""
        return self._config

    async def pending(self, space: Space) -> int:
        """How many nodes are due in ``space``."""
        return await self._store.pending(space)

    async def step(self, space: Space) -> DiscoveryReport | None:
        """Examine the next due nodes (at most ``batch_size``) from the cursor; None when
        another process runs discovery over ``space`` now. ``more`` in the report: call
        again soon (work was done, or the nodes before the cursor are still to be seen)."""
        async with self._store.exclusive(space.id) as held:
            if not held:
                log.debug("discovery_skipped", space=space.id, reason="running elsewhere")
                return None
            return await self._step(space)

    async def run(self, space: Space, progress: StepProgress | None = None) -> DiscoveryReport:
        """Steps until one finds nothing due (the rechecks a sweep asks for are done by the
        next), bounded by three sweeps of the nodes due at the start."""
        total = DiscoveryReport(pending=await self._store.pending(space))
        self._space_id, self._after = space.id, START
        steps = 3 * (math.ceil((total.pending or 0) / self._config.batch_size) + 1)
        for _ in range(steps):
            report = await self.step(space)
            if report is None:
                break
            total.add(report)
            if progress is not None:
                progress(total)
            if not report.more:
                break
        return total

    async def _step(self, space: Space) -> DiscoveryReport:
        started = time.perf_counter()
        if space.id != self._space_id:
            self._space_id, self._after = space.id, START
        from_start = self._after == START
        limit = self._config.batch_size
        due = await self._store.due(space, self._after, limit)
        self._after = due[-1].key if len(due) == limit else START
        report = DiscoveryReport(more=bool(due) or not from_start)
        if due:
            await self._examine(space, due, report)
            report.pending = await self._store.pending(space)
        elif from_start:
            report.pending = 0
        report.duration_s = time.perf_counter() - started
        if due:
            log.info("discovery_step", space=space.id, **report.as_dict())
        return report

    async def _examine(self, space: Space, due: list[DueNode], report: DiscoveryReport) -> None:
        by_tenant: dict[str, list[DueNode]] = {}
        for node in due:
            by_tenant.setdefault(node.tenant, []).append(node)
        outcomes: list[Examined] = []
        for tenant, nodes in sorted(by_tenant.items()):
            outcomes.extend(await self._tenant(space, tenant, nodes))
        added, updated, removed, skipped = await self._store.apply(space, outcomes)
        report.examined += len(outcomes) - skipped
        report.skipped += skipped
        report.added += added
        report.updated += updated
        report.removed += removed
        report.rechecks += sum(len(o.recheck) for o in outcomes)

    async def _tenant(self, space: Space, tenant: str, nodes: list[DueNode]) -> list[Examined]:
        """The outcomes of one tenant's due nodes."""
        ids = [n.node_id for n in nodes]
        now = await self._store.similar_now(tenant, ids)
        close = await self.close_to(space, tenant, nodes, now.client)
        neighbours = {
            other
            for n in nodes
            if n.cause in (Cause.NEW, Cause.CHANGED)
            for other in (*now.incoming.get(n.node_id, ()), *(c.node_id for c in close[n.node_id]))
        }
        their = (await self._store.similar_now(tenant, sorted(neighbours))).outgoing
        outcomes = []
        for node in nodes:
            found = close[node.node_id]
            diff = edge_diff(now.outgoing.get(node.node_id, {}), found[: self._config.k])
            asked = rechecks(
                node,
                found,
                now.incoming.get(node.node_id, frozenset()),
                set(ids),
                their_edges=their,
                k=self._config.k,
            )
            outcomes.append(Examined(node, diff, asked))
        return outcomes

    async def close_to(
        self,
        space: Space,
        tenant: str,
        nodes: Sequence[DueNode],
        client: Mapping[str, Set[str]],
    ) -> dict[str, list[Neighbour]]:
        """Each node's close nodes, most similar first, at or above the threshold and not
        linked to it by a client relation (``client``: node -> such nodes): candidates from
        the index, scored by their mean vectors; none for a node without a vector."""
        near: dict[str, list[str]] = {}
        for node in nodes:
            if node.vector is not None:
                near[node.node_id] = await self._store.nearest(
                    space, tenant, node.vector, self._config.candidates
                )
        wanted = {(tenant, other) for found in near.values() for other in found}
        vectors = {key[1]: v for key, v in (await self._store.mean_vectors(space, wanted)).items()}
        close: dict[str, list[Neighbour]] = {}
        for node in nodes:
            close[node.node_id] = []
            if node.vector is not None:
                candidates = {o: vectors[o] for o in near[node.node_id] if o in vectors}
                close[node.node_id] = close_nodes(
                    node.node_id,
                    node.vector,
                    candidates,
                    threshold=self._config.threshold,
                    blocked=client.get(node.node_id, frozenset()),
                )
        return close
