"""Write rules for nodes: content hashes, version ordering and the fate of each write.

Pure values and functions; a store applies them (PostgreSQL:
``semantic.store.postgres.node_store``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np

from semantic.core.domain import NodeRecord
from semantic.core.relations import Relation
from semantic.core.rules import same_rules


class Outcome(StrEnum):
    """What an upsert did to one node."""

    CREATED = "created"
    UPDATED = "updated"
    METADATA_UPDATED = "metadata_updated"
    UNCHANGED = "unchanged"
    STALE = "stale"


class DeleteOutcome(StrEnum):
    """What a delete did to one node."""

    DELETED = "deleted"
    NOT_FOUND = "not_found"
    STALE = "stale"


@dataclass(frozen=True)
class VectorRow:
    """One chunk vector of one named text."""

    name: str
    chunk: int
    span_start: int
    span_end: int
    embedding: np.ndarray[Any, Any]
    client_supplied: bool = False


@dataclass(frozen=True)
class NodeWrite:
    """A node to store, with the vectors computed for its content (None: not computed)."""

    node: NodeRecord
    vectors: tuple[VectorRow, ...] | None = None


@dataclass(frozen=True)
class WriteResult:
    """The fate of one node of a batch."""

    tenant: str
    id: str
    slug: str | None
    outcome: Outcome
    version: int
    content_hash: str
    vectors_written: int = 0


@dataclass(frozen=True)
class Deletion:
    """Delete node ``id`` of ``tenant`` at ``version`` (0: unversioned).

    ``by_slug``: the delete named this slug, which no node held when it was resolved, so
    ``id`` is the slug itself (the id an upsert by that slug creates): a node found at
    ``id`` is deleted only if it holds that slug (it was created by that slug meanwhile);
    one holding another slug is not this delete's, and is left alone (NOT_FOUND).

    ``named_slug``: the delete named its node by this slug (held or not): a versioned
    delete tombstones the slug too, so a write carrying it at ``version`` or older is
    stale whatever its id (:func:`slug_stale`)."""

    tenant: str
    id: str
    version: int = 0
    by_slug: str | None = None
    named_slug: str | None = None


@dataclass(frozen=True)
class DeleteResult:
    """The fate of one deletion."""

    tenant: str
    id: str
    slug: str | None
    outcome: DeleteOutcome


@dataclass(frozen=True)
class Stored:
    """What is stored about a node before a write (or its tombstone)."""

    version: int
    content_hash: str | None  # None: only a tombstone
    node: NodeRecord | None


class Replan(Exception):
    """Stored content changed after the caller embedded; embed these nodes again."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.keys = keys
        super().__init__(f"{len(keys)} nodes changed while their vectors were computed")


def content_hash(node: NodeRecord) -> str:
    """sha256 of what vectors and the keyword index are made from (not metadata): the
    texts, and the client-supplied vectors when the write gives any (``vectors_hash``)."""
    parts: list[Any] = [node.content_type, node.title, node.body, sorted(node.texts.items())]
    if node.vectors_hash:  # absent otherwise: the hashes of nodes without client vectors stay
        parts.append(node.vectors_hash)
    payload = json.dumps(parts, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def vectors_hash(rows: Sequence[VectorRow]) -> str:
    """sha256 of client-supplied vectors (names, chunks, spans and float32 values, in name
    and chunk order); '' for none."""
    if not rows:
        return ""
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: (r.name, r.chunk)):
        digest.update(json.dumps([row.name, row.chunk, row.span_start, row.span_end]).encode())
        digest.update(np.ascontiguousarray(row.embedding, dtype="<f4").tobytes())
    return digest.hexdigest()


def decide(incoming: NodeRecord, stored: Stored | None) -> Outcome:
    """The fate of ``incoming`` given what is stored; pure, the rules in one place.

    Version 0 means unversioned (last writer wins). A versioned write older than the
    stored version or than a delete's tombstone is stale; the same version with the
    same content and metadata is a redelivery (unchanged); the same version with
    different content is stale too (one version, one content).
    """
    if stored is None:
        return Outcome.CREATED
    if incoming.version and stored.version and incoming.version <= stored.version:
        if stored.node is not None and same_node(incoming, stored.node):
            return Outcome.UNCHANGED
        return Outcome.STALE
    if stored.node is None:
        return Outcome.CREATED  # only a tombstone, and this write is newer
    if stored.content_hash != incoming.content_hash:
        return Outcome.UPDATED
    if same_node(incoming, stored.node):
        return Outcome.UNCHANGED
    return Outcome.METADATA_UPDATED


def slug_stale(incoming: NodeRecord, slug_tombstone: int | None) -> bool:
    """Whether a versioned write carrying a slug is older than (or as old as) a delete that
    named a node by that slug (``slug_tombstone``: that delete's version): it is stale, as
    a write older than its own node's tombstone is; order of arrival cannot matter."""
    return bool(
        incoming.slug
        and incoming.version
        and slug_tombstone is not None
        and incoming.version <= slug_tombstone
    )


def same_node(a: NodeRecord, b: NodeRecord) -> bool:
    """Whether writing ``a`` over ``b`` changes nothing (``a``'s relations or rules unset:
    kept)."""
    return (
        a.content_hash == b.content_hash
        and a.slug == b.slug
        and tuple(a.tags) == tuple(b.tags)
        and dict(a.metadata) == dict(b.metadata)
        and (a.version in (b.version, 0))
        and (a.created_at is None or a.created_at == b.created_at)
        and (a.relations is None or same_relations(a.relations, b.relations or ()))
        and (a.rules is None or same_rules(a.rules, b.rules or ()))
    )


def same_relations(a: Sequence[Relation], b: Sequence[Relation]) -> bool:
    """The same client relations, in any order."""
    ordered = sorted(a, key=Relation.key), sorted(b, key=Relation.key)
    return len(a) == len(b) and all(x.same_as(y) for x, y in zip(*ordered, strict=True))
