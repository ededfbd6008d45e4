"""How a node row reads: the columns of ``semantic.nodes`` a NodeRecord is made from."""

from __future__ import annotations

import asyncpg

from semantic.core.domain import NODE_DEFAULTS, NodeRecord, assembled

_NODE_COLUMNS = (
    "tenant, id, slug, content_type, title, body, texts, tags, metadata, content_hash,"
    " version, created_at, updated_at"
)


def node_select(alias: str) -> str:
    """The node columns :func:`node_from_row` reads, qualified by a table alias."""
    return ", ".join(f"{alias}.{c.strip()}" for c in _NODE_COLUMNS.split(","))


def node_from_row(row: asyncpg.Record) -> NodeRecord:
    """A NodeRecord from a row holding the columns of :func:`node_select` (made without
    the dataclass's field-by-field ``__init__``, at half its cost: every hit of every
    search is one; the fields no row holds keep their defaults)."""
    return assembled(
        NodeRecord,
        NODE_DEFAULTS,
        tenant=row["tenant"],
        id=row["id"],
        slug=row["slug"],
        content_type=row["content_type"],
        title=row["title"],
        body=row["body"],
        texts=row["texts"],
        tags=tuple(row["tags"]),
        metadata=row["metadata"],
        version=row["version"],
        content_hash=row["content_hash"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
