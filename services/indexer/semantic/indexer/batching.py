"""Which events of a fetched batch the consumer applies together, and which after them."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from nats.aio.msg import Msg

from semantic.indexer.events import ContentChange


@dataclass
class Decoded:
    """A fetched message and what it decoded to (None: poison)."""

    msg: Msg
    item: Any


def heavy_last(
    batch: list[Decoded], heavy_bytes: int | None
) -> tuple[list[Decoded], list[Decoded]]:
    """The batch without its heavy content events, then those, to apply one by one after
    it: a body of thousands of chunks takes minutes to embed, and the events fetched with
    it would wait as long. Only an event named by id that no other event of the batch
    names (by id or slug, its own or its node's) moves, and only in a batch without
    events named by slug alone (which node such an event names can depend on what the
    others write): for events of other nodes the order of application changes nothing."""
    if heavy_bytes is None:
        return batch, []
    heavy = [
        i
        for i in batch
        if isinstance(i.item, ContentChange) and i.item.id and len(i.msg.data) >= heavy_bytes
    ]
    if not heavy or any(isinstance(i.item, ContentChange) and not i.item.id for i in batch):
        return batch, []
    named: Counter[tuple[str, str]] = Counter()
    for item in batch:
        named.update(_names(item.item))
    alone = {id(i) for i in heavy if all(named[n] == 1 for n in _names(i.item))}
    return [i for i in batch if id(i) not in alone], [i for i in batch if id(i) in alone]


def _names(item: Any) -> set[tuple[str, str]]:
    """What a content event names its node by (other events: nothing)."""
    if not isinstance(item, ContentChange):
        return set()
    names = {(item.tenant, f"id:{item.id}")} if item.id else set()
    slugs = {item.slug, item.node.slug if item.node is not None else None}
    return names | {(item.tenant, f"slug:{s}") for s in slugs if s}
