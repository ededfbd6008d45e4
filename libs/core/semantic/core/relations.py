"""Relations between nodes: typed, weighted, directed edges of one tenant, and the walk
that follows them (README_vector.md, "Relations").

A relation is unique per (source, target, type) and carries a strength in [0, 1] and a
description. Clients write them with a node (``NodeRecord.relations``: when given, the
node's client relations become exactly those), with ``Relate`` / ``Unrelate``, or on a
ContentEvent; the heal loop adds discovered ``similar`` ones. The other end need not exist:
reads follow only relations whose other end exists, and deleting a node deletes every
relation from and to it.

:meth:`RelationService.related` walks breadth first from a node, 1 to 3 steps: a node is
reached once, by its shortest path and, among paths of that length, the strongest (the
product of the strengths), so the answer is ordered nearest first, then strongest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.domain import NodeRecord

KNOWN_TYPES = ("prerequisite", "follows", "conflicts", "enhances", "similar")
"""The relation types with a documented meaning (any ``[a-z][a-z0-9_]{0,63}`` is allowed)."""
SIMILAR = "similar"
MAX_DEPTH = 3
MAX_DESCRIPTION_CHARS = 1000
FRONTIER_LIMIT = 10_000
"""Nodes a walk expands at one depth at most (bounds the work of a densely linked graph)."""


class Direction(StrEnum):
    """Which way a relation points, seen from the node it is listed under or walked from."""

    OUTGOING = "outgoing"
    INCOMING = "incoming"
    BOTH = "both"


@dataclass(frozen=True)
class Relation:
    """An edge seen from one node: the other node, its type, strength and description."""

    node_id: str
    type: str
    strength: float = 1.0
    description: str = ""
    discovered: bool = False
    direction: Direction = Direction.OUTGOING
    updated_at: datetime | None = None

    def key(self) -> tuple[str, str]:
        """(other node, type): what makes a node's outgoing relation unique."""
        return self.node_id, self.type

    def same_as(self, other: Relation) -> bool:
        """Equal as written by a client (times and direction aside)."""
        return (self.node_id, self.type, self.strength, self.description) == (
            other.node_id,
            other.type,
            other.strength,
            other.description,
        )


@dataclass(frozen=True)
class Edge:
    """A relation from ``source_id``."""

    source_id: str
    relation: Relation


@dataclass(frozen=True)
class EdgeKey:
    """A relation to remove; ``type`` None: every type from source to target."""

    source_id: str
    target_id: str
    type: str | None = None


@dataclass(frozen=True)
class WalkQuery:
    """A walk from one node of ``tenant``."""

    tenant: str
    types: tuple[str, ...] = ()
    direction: Direction = Direction.OUTGOING
    depth: int = 1
    min_strength: float = 0.0
    limit: int = 50
    include_discovered: bool = False


@dataclass(frozen=True)
class Step:
    """One relation followed: from, to, its type and strength, and whether it was
    followed along its direction (OUTGOING) or against it (INCOMING)."""

    from_id: str
    to_id: str
    type: str
    strength: float
    direction: Direction


@dataclass(frozen=True)
class Reached:
    """A node the walk reached: its depth, the path and the path's strength."""

    node_id: str
    depth: int
    path: tuple[Step, ...]
    strength: float


@dataclass(frozen=True)
class RelatedHit:
    """A node reached, with the node itself."""

    node: NodeRecord
    reached: Reached


class RelationStore(Protocol):
    """Relations in the database (the write path writes a node's own with the node)."""

    async def relate(self, tenant: str, edges: Sequence[Edge]) -> tuple[int, int]:
        """Create or update; (created, updated). One transaction, node locks taken."""
        ...

    async def unrelate(self, tenant: str, keys: Sequence[EdgeKey]) -> int:
        """Remove; how many were removed. One transaction."""
        ...

    async def steps(self, query: WalkQuery, frontier: Sequence[str]) -> list[Step]:
        """The relations leaving ``frontier`` the query follows (type, direction,
        strength, discovered), whose other end exists, as steps from the frontier."""
        ...

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Relation]]:
        """Each node's outgoing and incoming relations whose other end exists."""
        ...


class NodeReader(Protocol):
    """What the walk needs of the nodes: ids by slug, and the nodes themselves."""

    async def ids_by_slug(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(tenant, slug) -> id of the nodes that exist."""
        ...

    async def get(
        self, tenant: str, *, ids: Sequence[str] = (), slugs: Sequence[str] = ()
    ) -> list[NodeRecord]:
        """The nodes that exist."""
        ...


def walk_order(reached: Mapping[str, Reached]) -> list[Reached]:
    """Nearest first, then strongest, then by id (a stable answer)."""
    return sorted(reached.values(), key=lambda r: (r.depth, -r.strength, r.node_id))


def best_steps(
    steps: Sequence[Step], paths: Mapping[str, Reached], seen: set[str], depth: int
) -> dict[str, Reached]:
    """The nodes first reached by ``steps`` at ``depth``, each by its strongest path."""
    found: dict[str, Reached] = {}
    for step in steps:
        if step.to_id in seen:
            continue
        before = paths.get(step.from_id)
        path = (*before.path, step) if before else (step,)
        strength = (before.strength if before else 1.0) * step.strength
        current = found.get(step.to_id)
        if current is None or strength > current.strength:
            found[step.to_id] = Reached(step.to_id, depth, path, strength)
    return found


class RelationService:
    """Relate, unrelate, and walk."""

    def __init__(self, store: RelationStore, nodes: NodeReader) -> None:
        self._store = store
        self._nodes = nodes

    async def relate(self, tenant: str, edges: Sequence[Edge]) -> tuple[int, int]:
        """Write ``edges``; (created, updated)."""
        return await self._store.relate(tenant, edges)

    async def unrelate(self, tenant: str, keys: Sequence[EdgeKey]) -> int:
        """Remove ``keys``; how many relations went."""
        return await self._store.unrelate(tenant, keys)

    async def start(self, tenant: str, node_id: str | None, slug: str | None) -> str:
        """The id of the walk's first node; NotFound when it does not exist."""
        if slug is not None:
            found = await self._nodes.ids_by_slug([(tenant, slug)])
            if (tenant, slug) not in found:
                raise NotFound("node", f"slug {slug!r}")
            return found[(tenant, slug)]
        if node_id is None:
            raise InvalidArgument("id", "give the id or the slug of the node")
        if not await self._nodes.get(tenant, ids=[node_id]):
            raise NotFound("node", node_id)
        return node_id

    async def related(
        self, query: WalkQuery, node_id: str | None, slug: str | None
    ) -> tuple[str, list[RelatedHit]]:
        """Walk from the node: (its id, the nodes reached, nearest first then strongest)."""
        start = await self.start(query.tenant, node_id, slug)
        seen = {start}
        paths: dict[str, Reached] = {}
        frontier = [start]
        for depth in range(1, query.depth + 1):
            if not frontier:
                break
            found = best_steps(await self._store.steps(query, frontier), paths, seen, depth)
            paths.update(found)
            seen.update(found)
            frontier = [r.node_id for r in walk_order(found)][:FRONTIER_LIMIT]
        chosen = walk_order(paths)[: query.limit]
        rows = await self._nodes.get(query.tenant, ids=[r.node_id for r in chosen])
        nodes = {n.id: n for n in rows}
        hits = [RelatedHit(nodes[r.node_id], r) for r in chosen if r.node_id in nodes]
        return start, hits

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Relation]]:
        """Each node's outgoing and incoming relations (to nodes that exist)."""
        if not ids:
            return {}
        return await self._store.of_nodes(tenant, ids)
