"""The core's ``ChangeFeed`` over a pool: the active space, a snapshot of its nodes and
vectors, and the nodes changed since a cursor (``semantic.node_changes``, migration 004).

The cursor is a transaction id: the oldest transaction still open when a read took its
snapshot (``pg_snapshot_xmin``). Every change-log row of an older transaction was committed
(or rolled back) before that snapshot, so that read saw it; a read therefore takes the rows
of transactions at or after the previous cursor, some of them a second time (which costs
nothing: a change is applied by reading the node's current state). Every read runs in one
REPEATABLE READ, READ ONLY transaction, so the cursor, the log rows and the node states
come from the same snapshot.

What the log cannot say makes a read answer ``reset`` (rebuild from a snapshot) instead:
a TRUNCATE (its statement trigger logs a row with an empty node id, migration 010); a
cursor ahead of the database's transactions (another cluster: a restore into a fresh
one); a change-log table other than the one the last read saw (the schema or the
database made anew and restored, where the restored spaces look the same).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from semantic.core.degraded import Apply, ChangeBatch, IndexedNode, IndexedVector, Key, NodeChange
from semantic.core.spaces import Space, vector_table
from semantic.store.postgres import spaces
from semantic.store.postgres.db import as_array, connection

_CURSOR = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_ORIGIN = "SELECT 'semantic.node_changes'::regclass::oid::bigint"
_TRUNCATED = """
SELECT EXISTS (SELECT 1 FROM semantic.node_changes
               WHERE xid >= $1::bigint::text::xid8 AND node_id = ''
                 AND (space_id IS NULL OR space_id = $2))
"""

_CHANGED = """
SELECT DISTINCT tenant, node_id FROM semantic.node_changes
WHERE xid >= $1::bigint::text::xid8 AND (space_id IS NULL OR space_id = $2)
"""
_LOG_ROWS = """
SELECT count(*) FROM semantic.node_changes
WHERE xid >= $1::bigint::text::xid8 AND (space_id IS NULL OR space_id = $2)
"""

_NODES = """
SELECT n.tenant, n.id, n.slug, n.content_type, n.title, n.tags, n.version, n.updated_at
FROM semantic.nodes n
JOIN unnest($1::text[], $2::text[]) AS k (tenant, id) ON n.tenant = k.tenant AND n.id = k.id
"""

_VECTORS = """
SELECT v.tenant, v.node_id, v.name, v.chunk, v.span_start, v.span_end, v.embedding
FROM {table} v
JOIN unnest($1::text[], $2::text[]) AS k (tenant, id) ON v.tenant = k.tenant AND v.node_id = k.id
"""

_PAGE = """
SELECT n.tenant, n.id, n.slug, n.content_type, n.title, n.tags, n.version, n.updated_at
FROM semantic.nodes n
WHERE (n.tenant, n.id) > ($1, $2)
ORDER BY n.tenant, n.id
LIMIT $3
"""

_PRUNE = "DELETE FROM semantic.node_changes WHERE changed_at < now() - make_interval(secs => $1)"


class PostgresChanges:
    """The change feed of the local index (module doc)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._origin: int | None = None
        """The change-log table's oid at the last read (module doc)."""

    @property
    def origin(self) -> int | None:
        """The change-log table's oid at the last read (None before one)."""
        return self._origin

    async def active_space(self) -> Space:
        """The active space, read now."""
        async with connection(self._pool) as conn:
            return await spaces.active_space(conn)

    async def snapshot(self, space: Space, apply: Apply, *, batch: int) -> int:
        """Every node with its vectors in ``space``, page by page (in (tenant, id) order)
        from one snapshot; the cursor to follow from."""
        async with connection(self._pool) as conn, _snapshot(conn):
            cursor: int = await conn.fetchval(_CURSOR)
            self._origin = await conn.fetchval(_ORIGIN)
            after: Key = ("", "")  # before every key: a node id is never empty
            while True:
                rows = await conn.fetch(_PAGE, *after, batch)
                if not rows:
                    return cursor
                nodes = [_node(r) for r in rows]
                await apply(await _with_vectors(conn, space, [n.key for n in nodes], nodes))
                after = nodes[-1].key

    async def changes(self, space: Space, cursor: int, apply: Apply, *, batch: int) -> ChangeBatch:
        """The nodes changed since ``cursor``, their current state in ``space`` given to
        ``apply`` ``batch`` at a time (a burst of writes is never one huge step)."""
        async with connection(self._pool) as conn, _snapshot(conn):
            new_cursor: int = await conn.fetchval(_CURSOR)
            origin: int = await conn.fetchval(_ORIGIN)
            seen, self._origin = self._origin, origin
            reset = ""
            if new_cursor < cursor:
                reset = "the database's transactions are behind the index (another cluster)"
            elif seen is not None and seen != origin:
                reset = "the change log was made anew (the schema or database replaced)"
            elif await conn.fetchval(_TRUNCATED, cursor, space.id):
                reset = "a table was truncated"
            if reset:
                return ChangeBatch(new_cursor, 0, 0, reset)
            keys: list[Key] = [
                (r["tenant"], r["node_id"])
                for r in await conn.fetch(_CHANGED, cursor, space.id)
                if r["node_id"]
            ]
            log_rows: int = await conn.fetchval(_LOG_ROWS, cursor, space.id) if keys else 0
            for start in range(0, len(keys), max(1, batch)):
                page = keys[start : start + max(1, batch)]
                tenants, ids = [k[0] for k in page], [k[1] for k in page]
                nodes = [_node(r) for r in await conn.fetch(_NODES, tenants, ids)]
                await apply(await _with_vectors(conn, space, page, nodes))
            return ChangeBatch(new_cursor, len(keys), log_rows)

    async def prune(self, older_than_s: float) -> int:
        """Drop change-log rows older than ``older_than_s`` seconds; how many."""
        async with connection(self._pool) as conn:
            status: str = await conn.execute(_PRUNE, float(older_than_s))
        return int(status.rsplit(" ", 1)[-1])


class _snapshot:  # noqa: N801 - used like a function: `async with _snapshot(conn)`
    """One REPEATABLE READ, READ ONLY transaction on ``conn``."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self._tx = conn.transaction(isolation="repeatable_read", readonly=True)

    async def __aenter__(self) -> None:
        await self._tx.start()

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await self._tx.commit()
        else:
            await self._tx.rollback()


def _node(row: asyncpg.Record) -> IndexedNode:
    return IndexedNode(
        tenant=row["tenant"],
        id=row["id"],
        slug=row["slug"],
        content_type=row["content_type"],
        title=row["title"],
        tags=tuple(row["tags"]),
        version=row["version"],
        updated_at=row["updated_at"],
    )


async def _with_vectors(
    conn: asyncpg.Connection, space: Space, keys: Sequence[Key], nodes: Sequence[IndexedNode]
) -> list[NodeChange]:
    """A change for every key: its node (None when gone) and its vectors in ``space``."""
    tenants, ids = [k[0] for k in keys], [k[1] for k in keys]
    rows = await conn.fetch(_VECTORS.format(table=vector_table(space.id)), tenants, ids)
    vectors: dict[Key, list[IndexedVector]] = {}
    for r in rows:
        vectors.setdefault((r["tenant"], r["node_id"]), []).append(
            IndexedVector(
                name=r["name"],
                chunk=r["chunk"],
                span_start=r["span_start"],
                span_end=r["span_end"],
                embedding=as_array(r["embedding"]),
            )
        )
    by_key = {n.key: n for n in nodes}
    return [NodeChange(k, by_key.get(k), tuple(vectors.get(k, ()))) for k in keys]
