"""Apply a batch of content changes: newest version per node, slugs resolved, one
transaction through the shared write path (embedding only what changed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from semantic.core.domain import NodeRecord
from semantic.core.nodes import Deletion
from semantic.core.spaces import ActiveSpaces, Space
from semantic.core.writer import ContentWriter
from semantic.indexer.events import ContentChange


@dataclass
class BatchOutcome:
    """What one batch did, by outcome name (created, updated, deleted, stale ...)."""

    outcomes: Counter[str] = field(default_factory=Counter)
    superseded: int = 0  # older events of a node replaced by a newer one in the batch


class ChangeProcessor:
    """Turns validated ContentChanges into one write of the active space."""

    def __init__(self, spaces: ActiveSpaces, writer: ContentWriter) -> None:
        self._spaces = spaces
        self._writer = writer

    async def active_space(self) -> Space:
        """The space events are written to (the one resolver: a switch made elsewhere
        applies within its TTL)."""
        return await self._spaces.space()

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
        found = await self._writer.nodes.ids_by_slug([(c.tenant, c.slug or "") for c in by_slug])
        out: list[tuple[ContentChange, str | None]] = []
        for change in changes:
            if change.id:
                out.append((change, change.id))
                continue
            node_id = found.get((change.tenant, change.slug or ""))
            out.append((change, node_id or (change.slug if change.upsert else None)))
        return out
