"""Apply a batch of content changes as if its events were applied one by one, in order:
newest version per node, slugs resolved, through the shared write path (embedding only
what changed), in as few transactions as that allows.

A batch is cut into *segments* (:func:`segments`) wherever applying its parts at once could
end differently from applying its events in order; each segment is one transaction.
Within a segment every node's events reduce to the one that applying them in order leaves
(:func:`supersedes`: the highest version; at one version a delete beats an upsert, which
the write rules apply one event at a time too, and of two upserts the first stays, since
one version has one content). Segments end:

- before an event named by slug when the segment holds an event named by id (which may
  take or free that slug: a rename, a delete) or the other way round, since slugs are
  resolved against the database as it is before the segment;
- before an event whose slug (named or written) another node's event in the segment
  already touched;
- before an unversioned event (version 0: last writer wins) of a node the segment already
  holds, and before a versioned one of a node with an unversioned event there;
- before an event named by a slug that an event of the segment deleted (the slug then
  names another node, or none).

A delete by a slug no node holds deletes the id an upsert by that slug would create (the
slug itself): nothing is removed, but its tombstone keeps an older upsert by that slug,
arriving later, from creating the node. (When a node with another slug has that id, the
delete does nothing; the store checks that again under the node's lock,
``Deletion.by_slug``, so a node given that id meanwhile is not deleted.)
"""

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
    superseded: int = 0  # events of a node whose effect a later event of the batch replaced
    segments: int = 0  # transactions the batch took


def supersedes(change: ContentChange, held: ContentChange) -> bool:
    """Whether ``change``, coming after ``held`` (the same node), is what applying both in
    order leaves in place of ``held``."""
    if not change.version or not held.version:
        return True  # unversioned: the last writer wins
    if change.version != held.version:
        return change.version > held.version
    return held.upsert and not change.upsert


def _slugs(change: ContentChange) -> set[tuple[str, str]]:
    """The slugs an event names or writes."""
    out = set()
    if change.slug:
        out.add((change.tenant, change.slug))
    if change.node is not None and change.node.slug:
        out.add((change.tenant, change.node.slug))
    return out


def segments(changes: Sequence[ContentChange]) -> list[list[ContentChange]]:
    """``changes`` cut in order where one transaction could differ from one event at a
    time (module doc)."""
    out: list[list[ContentChange]] = []
    current: list[ContentChange] = []
    unversioned: dict[tuple[str, str], bool] = {}  # key -> holds an unversioned event
    slug_owner: dict[tuple[str, str], tuple[str, str]] = {}  # slug -> key that touched it
    freed: set[tuple[str, str]] = set()  # slugs deleted: the next event names another node
    by_id = by_slug = False
    for change in changes:
        key = change.key
        named_by_slug = not change.id
        held = unversioned.get(key)
        cut = (
            (by_id if named_by_slug else by_slug)
            or any(slug_owner.get(slug, key) != key for slug in _slugs(change))
            or (held is not None and (held or not change.version))
            or key in freed
        )
        if cut and current:
            out.append(current)
            current, unversioned, slug_owner, freed = [], {}, {}, set()
            by_id = by_slug = False
        current.append(change)
        if named_by_slug and not change.upsert:
            freed.add(key)
        unversioned[key] = unversioned.get(key, False) or not change.version
        slug_owner.update(dict.fromkeys(_slugs(change), key))
        by_slug = by_slug or named_by_slug
        by_id = by_id or not named_by_slug
    if current:
        out.append(current)
    return out


class ChangeProcessor:
    """Turns validated ContentChanges into writes of the active space."""

    def __init__(self, spaces: ActiveSpaces, writer: ContentWriter) -> None:
        self._spaces = spaces
        self._writer = writer

    async def active_space(self) -> Space:
        """The space events are written to (the one resolver: a switch made elsewhere
        applies within its TTL)."""
        return await self._spaces.space()

    async def apply(self, changes: Sequence[ContentChange]) -> BatchOutcome:
        """Write ``changes``, segment after segment; raises on the first failure (the
        segments before it stay written: applying them again changes nothing, so the
        batch's redelivery is safe)."""
        outcome = BatchOutcome()
        for segment in segments(changes):
            await self._apply_segment(segment, outcome)
            outcome.segments += 1
        return outcome

    async def _apply_segment(self, changes: Sequence[ContentChange], outcome: BatchOutcome) -> None:
        latest: dict[tuple[str, str], ContentChange] = {}
        for change in changes:
            held = latest.get(change.key)
            if held is None or supersedes(change, held):
                latest[change.key] = change
        outcome.superseded += len(changes) - len(latest)
        resolved = await self._resolve_slugs(list(latest.values()))
        seen: dict[tuple[str, str], ContentChange] = {}
        for change, node_id in resolved:
            if node_id is None:  # a delete by a slug no node holds, whose id is another's
                outcome.outcomes["not_found"] += 1
                continue
            key = (change.tenant, node_id)
            other = seen.get(key)  # two slugs, one of them another node's id
            if other is not None:
                outcome.superseded += 1
                if not supersedes(change, other):
                    continue
            seen[key] = change
        nodes: list[NodeRecord] = []
        deletes: list[Deletion] = []
        for (tenant, node_id), change in seen.items():
            if change.upsert:
                assert change.node is not None
                nodes.append(replace(change.node, id=node_id))
            else:
                # Named by a slug that no node held (or whose node's id is that slug): the
                # store checks, under the node's lock, that a node found there holds it.
                unheld = not change.id and node_id == change.slug
                deletes.append(
                    Deletion(
                        tenant,
                        node_id,
                        change.version,
                        by_slug=node_id if unheld else None,
                        named_slug=change.slug if not change.id else None,
                    )
                )
        space = await self.active_space()
        written, removed = await self._writer.write(space, nodes, deletes)
        outcome.outcomes.update(str(r.outcome) for r in written)
        outcome.outcomes.update(str(r.outcome) for r in removed)

    async def _resolve_slugs(
        self, changes: list[ContentChange]
    ) -> list[tuple[ContentChange, str | None]]:
        """Each change with its node id: given, found by slug, or else the slug itself (the
        id an upsert by that slug creates, and a delete by it tombstones), except for a
        delete when a node holding another slug has that id (None: nothing to delete)."""
        by_slug = [c for c in changes if not c.id]
        found = await self._writer.nodes.ids_by_slug([(c.tenant, c.slug or "") for c in by_slug])
        unheld = [
            (c.tenant, c.slug or "")
            for c in by_slug
            if not c.upsert and (c.tenant, c.slug or "") not in found
        ]
        other = await self._writer.nodes.stored(unheld) if unheld else {}
        out: list[tuple[ContentChange, str | None]] = []
        for change in changes:
            if change.id:
                out.append((change, change.id))
                continue
            key = (change.tenant, change.slug or "")
            node_id = found.get(key)
            if node_id is None and not change.upsert:
                stored = other.get(key)
                node_id = None if stored is not None and stored.node is not None else key[1]
            out.append((change, (node_id or key[1]) if change.upsert else node_id))
        return out
