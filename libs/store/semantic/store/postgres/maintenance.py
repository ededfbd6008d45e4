"""The core's ``MaintenanceStore`` over a pool: the key-ordered node walks of heal, backfill
and reindex, and the advisory locks that keep one build and one heal-loop pass per space
running across every process.

    lock     session lock pg_try_advisory_lock(class, space id)
    build    class 0x5E3A
    heal     class 0x5E3B (the class of the node write locks too, see ``node_locks``)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import structlog

from semantic.core.domain import NodeRecord
from semantic.core.ports import HealRow
from semantic.core.spaces import Space
from semantic.store.postgres import backlog
from semantic.store.postgres.db import connection
from semantic.store.postgres.node_locks import lock_nodes
from semantic.store.postgres.node_rows import node_from_row, node_select

log = structlog.get_logger(__name__)

Key = tuple[str, str]
_LOCKS = {"build": 0x5E3A, "heal": 0x5E3B}
"""First key of the advisory lock of a space build / one heal-loop pass (second: space id)."""


ORPHAN_BATCH = 1000
"""Orphan node keys deleted per transaction."""


class PostgresMaintenance:
    """Node walks and pass locks in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def count_nodes(self, content_type: str | None) -> int:
        """Nodes (of one content type when given)."""
        async with connection(self._pool) as conn:
            total: int = await conn.fetchval(
                "SELECT count(*) FROM semantic.nodes WHERE $1::text IS NULL OR content_type = $1",
                content_type,
            )
        return total

    async def heal_page(
        self, space: Space, after: Key, content_type: str | None, limit: int
    ) -> list[HealRow]:
        """Up to ``limit`` nodes after ``after`` in key order, each with whether it has no
        vector in ``space`` and whether a computed vector of it is stale."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                f"SELECT {node_select('n')}, {backlog.has_no_vector(space.table)} AS missing,"
                f" {backlog.stale(space.table)} AS stale FROM semantic.nodes n"
                " WHERE (n.tenant, n.id) > ($1, $2)"
                " AND ($3::text IS NULL OR n.content_type = $3)"
                " ORDER BY n.tenant, n.id LIMIT $4",
                after[0],
                after[1],
                content_type,
                limit,
            )
        return [HealRow(node_from_row(r), bool(r["missing"]), bool(r["stale"])) for r in rows]

    async def missing_window(
        self, space: Space, after: Key, limit: int
    ) -> tuple[list[NodeRecord], set[Key], Key | None]:
        """The nodes of a window of at most ``limit`` keys after ``after`` that have no
        vector in ``space``, every key of the window, and its last key (None: no node
        follows ``after``)."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                f"SELECT n.tenant, n.id, {backlog.has_no_vector(space.table)} AS missing"
                " FROM semantic.nodes n WHERE (n.tenant, n.id) > ($1, $2)"
                " ORDER BY n.tenant, n.id LIMIT $3",
                after[0],
                after[1],
                limit,
            )
            missing = [(r["tenant"], r["id"]) for r in rows if r["missing"]]
            found = []
            if missing:
                found = await conn.fetch(
                    f"SELECT {node_select('n')} FROM semantic.nodes n"
                    " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
                    " ON n.tenant = k.tenant AND n.id = k.id",
                    [k[0] for k in missing],
                    [k[1] for k in missing],
                )
        keys = {(r["tenant"], r["id"]) for r in rows}
        last = (rows[-1]["tenant"], rows[-1]["id"]) if rows else None
        return [node_from_row(r) for r in found], keys, last

    async def remove_orphans(self, space: Space, *, dry_run: bool) -> int:
        """Delete the vector rows of ``space`` whose node no longer exists (only count
        them on a dry run); returns how many.

        Orphan keys are found first, then deleted in a transaction holding their node write
        locks (``node_locks``), with the orphan test evaluated again after the locks: a
        writer re-creating one of those nodes either committed before (its node is seen and
        its rows kept) or waits for this delete to end. A single ``DELETE ... WHERE NOT
        EXISTS`` would not be safe: re-checking a row a concurrent writer just updated, it
        still judges the node by its own older snapshot and could delete the fresh row."""
        async with connection(self._pool) as conn:
            if dry_run:
                found: int = await conn.fetchval(
                    f"SELECT count(*) FROM {space.table} v WHERE {backlog.ORPHAN}"
                )
                return found
            removed = 0
            while True:
                keys = await conn.fetch(
                    f"SELECT DISTINCT v.tenant, v.node_id FROM {space.table} v"
                    f" WHERE {backlog.ORPHAN} LIMIT {ORPHAN_BATCH}"
                )
                if not keys:
                    return removed
                tenants = [k["tenant"] for k in keys]
                ids = [k["node_id"] for k in keys]
                async with conn.transaction():
                    await lock_nodes(conn, zip(tenants, ids, strict=True))
                    status = await conn.execute(
                        f"DELETE FROM {space.table} v USING unnest($1::text[], $2::text[])"
                        f" AS k(tenant, node_id) WHERE v.tenant = k.tenant"
                        f" AND v.node_id = k.node_id AND {backlog.ORPHAN}",
                        tenants,
                        ids,
                    )
                removed += int(status.split()[-1])
                if len(keys) < ORPHAN_BATCH:
                    return removed

    @asynccontextmanager
    async def exclusive(self, lock: str, space_id: int) -> AsyncIterator[bool]:
        """Hold the session advisory lock ``lock`` of ``space_id`` while the block runs
        (on a connection of its own); the block gets False when another process holds it."""
        key = _LOCKS[lock]
        async with connection(self._pool) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", key, space_id):
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", key, space_id)
