"""The rows ``semantic export-to`` writes: every node of a tenant (optionally of one content
type) with its ``content`` vector in the active space, streamed with a server-side cursor
so that any number of nodes fits in memory one page at a time.

A node's vector is the mean of its ``content`` chunks (one chunk for short texts), the same
node vector recommendations use (``mean_vector``); None when the node has no vector in the
space (for example one written before a Reindex finished, or whose embedding failed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import numpy as np

from semantic.store.postgres.db import as_array, init_connection
from semantic.store.postgres.mean_vector import mean_vector
from semantic.store.postgres.spaces import Space, active_space


@dataclass(frozen=True)
class ExportRow:
    """One node as exported."""

    tenant: str
    id: str
    content_type: str
    title: str
    body: str
    metadata: dict[str, Any]
    tags: list[str]
    version: int
    vector: np.ndarray[Any, Any] | None


async def connect(dsn: str) -> asyncpg.Connection:
    """A connection with the codecs the rows need (vector, jsonb)."""
    conn: asyncpg.Connection = await asyncpg.connect(dsn)
    await init_connection(conn)
    return conn


async def export_space(conn: asyncpg.Connection) -> Space:
    """The active space, whose vectors are exported."""
    return await active_space(conn)


async def export_rows(
    conn: asyncpg.Connection,
    space: Space,
    *,
    tenant: str = "",
    content_type: str | None = None,
    page: int = 500,
) -> AsyncIterator[ExportRow]:
    """The nodes of ``tenant`` (of ``content_type`` when given), by id, with their vectors.
    Runs in one read-only repeatable-read transaction: a consistent snapshot."""
    vector_sql = mean_vector(space.id, "n.tenant", "n.id", "'content'")
    query = (
        "SELECT n.tenant, n.id, n.content_type, n.title, n.body, n.metadata, n.tags,"
        f" n.version, {vector_sql} AS vector"
        " FROM semantic.nodes n WHERE n.tenant = $1"
        " AND ($2::text IS NULL OR n.content_type = $2) ORDER BY n.id"
    )
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for row in conn.cursor(query, tenant, content_type, prefetch=page):
            vector = row["vector"]
            yield ExportRow(
                tenant=row["tenant"],
                id=row["id"],
                content_type=row["content_type"],
                title=row["title"],
                body=row["body"],
                metadata=dict(row["metadata"] or {}),
                tags=list(row["tags"] or []),
                version=int(row["version"]),
                vector=None if vector is None else as_array(vector),
            )
