"""Apply a batch of content changes: newest version per node, slugs resolved, one
transaction through the shared write path (embedding only what changed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import asyncpg

from semantic.indexer.events import ContentChange
from semantic.search import spaces
from semantic.search.db import connection
from semantic.search.domain import NodeRecord
from semantic.search.nodes import Deletion
from semantic.search.spaces import Space
from semantic.search.writer import ContentWriter


@dataclass
class BatchOutcome:
    """What one batch did, by outcome name (created, updated, deleted, stale ...)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    superseded: int = 0  # older events of a node replaced by a newer one in the batch


class ChangeProcessor:
    """Turns validated ContentChanges into one write of the active space."""

    def __init__(self, pool: asyncpg.Pool, writer: ContentWriter) -> None:
        self._pool = pool
        self._writer = writer

    async def active_space(self) -> Space:
        """The space events are written to (read per batch: a switch applies at once)."""
        async with connection(self._pool) as conn:
            return await spaces.active_space(conn)

    async def apply(self, changes: Sequence[ContentChange]) -> BatchOutcome:
        """Write ``changes`` in one transaction; raises on any failure (nothing written)."""
        outcome = BatchOutcome()
        latest: dict[tuple[str, str], ContentChange] = {}
        for change in changes:
            held = latest.get(change.key)
            if held is None or held.version <= change.version:
                latest[change.key] = change
        outcome.superseded = len(changes) - len(latest)
        resolved = await self._resolve_slugs(list(latest.values()))
        nodes: list[NodeRecord] = []
        deletes: list[Deletion] = []
        seen: dict[tuple[str, str], ContentChange] = {}
        for change, node_id in resolved:
            if node_id is None:  # delete by an unknown slug: nothing to do
                outcome.outcomes["not_found"] += 1
                continue
            key = (change.tenant, node_id)
            other = seen.get(key)  # the same node named once by id, once by slug
            if other is not None and other.version > change.version:
                outcome.superseded += 1
                continue
            seen[key] = change
        for (tenant, node_id), change in seen.items():
            if change.upsert:
                assert change.node is not None
                nodes.append(replace(change.node, id=node_id))
            else:
                deletes.append(Deletion(tenant, node_id, change.version))
        space = await self.active_space()
        written, removed = await self._writer.write(space, nodes, deletes)
        outcome.outcomes.update(str(r.outcome) for r in written)
        outcome.outcomes.update(str(r.outcome) for r in removed)
        return outcome

    async def _resolve_slugs(
        self, changes: list[ContentChange]
    ) -> list[tuple[ContentChange, str | None]]:
        """Each change with its node id: given, found by slug, or (upsert) the slug itself."""
        by_slug = [c for c in changes if not c.id]
        found: dict[tuple[str, str], str] = {}
        if by_slug:
            async with connection(self._pool) as conn:
                rows = await conn.fetch(
                    "SELECT n.tenant, n.slug, n.id FROM semantic.nodes n"
                    " JOIN unnest($1::text[], $2::text[]) AS k(tenant, slug)"
                    " ON n.tenant = k.tenant AND n.slug = k.slug",
                    [c.tenant for c in by_slug],
                    [c.slug or "" for c in by_slug],
                )
            found = {(r["tenant"], r["slug"]): r["id"] for r in rows}
        out: list[tuple[ContentChange, str | None]] = []
        for change in changes:
            if change.id:
                out.append((change, change.id))
                continue
            node_id = found.get((change.tenant, change.slug or ""))
            out.append((change, node_id or (change.slug if change.upsert else None)))
        return out
