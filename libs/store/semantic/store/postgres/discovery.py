"""The core's ``DiscoveryStore`` over a pool (``semantic.relation_discovery``, migration 007),
and the recheck requests the write path and Relate/Unrelate make when a `similar` pair or a
node goes.

    due       a node with no discovery row, or one of another space or content hash, or
              whose ``recheck`` is ahead of ``checked``; and whose vectors in the space are
              neither missing nor stale (the heal backlog's predicates, ``backlog``)
    nearest   the space's HNSW index through ``dense.dense_search`` (tenant only, no filter)
    apply     one transaction: the node write locks of the nodes examined and of every
              target of their edges, the discovery rows touched locked in key order, then
              the edges, the rows and the rechecks
    lock      session lock pg_try_advisory_lock(0x5E3D, space id): one step at a time

Every writer that asks for rechecks locks the discovery rows it touches in key order first,
so a discovery step and a client write never wait for each other in a cycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence, Set
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from semantic.core.discovery import (
    Cause,
    DueNode,
    Examined,
    Key,
    Neighbour,
    SimilarNow,
    Vector,
)
from semantic.core.domain import DEFAULT_VECTOR, Filter, VectorTarget
from semantic.core.relations import SIMILAR
from semantic.core.settings import RetrievalSettings
from semantic.core.spaces import Space
from semantic.store.postgres import backlog, dense, spaces
from semantic.store.postgres.db import as_array, connection
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.mean_vector import mean_vector
from semantic.store.postgres.node_locks import lock_nodes

DISCOVERY_LOCK = 0x5E3D
"""First key of the advisory lock of a discovery step (second: the space id)."""
_EF_SEARCH = RetrievalSettings.model_fields["search_ef_search"].default
_EXACT_THRESHOLD = RetrievalSettings.model_fields["search_exact_threshold"].default


def _due(space: Space, space_param: str) -> str:
    """True for a due node of ``n`` joined to its discovery row ``d`` (module doc)."""
    return (
        f"(d.node_id IS NULL OR d.space_id <> {space_param} OR d.content_hash <> n.content_hash"
        f" OR d.recheck > d.checked) AND NOT {backlog.missing(space.table)}"
        f" AND NOT {backlog.stale(space.table)}"
    )


_JOIN = (
    "FROM semantic.nodes n LEFT JOIN semantic.relation_discovery d"
    " ON d.tenant = n.tenant AND d.node_id = n.id"
)


async def lock_discovery_rows(conn: asyncpg.Connection, keys: Iterable[Key]) -> None:
    """Lock the discovery rows of ``keys`` that exist, in key order (caller's transaction)."""
    ordered = sorted(set(keys))
    if ordered:
        await conn.execute(
            "SELECT 1 FROM semantic.relation_discovery d"
            " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
            " ON d.tenant = k.tenant AND d.node_id = k.id"
            " ORDER BY d.tenant, d.node_id FOR UPDATE OF d",
            [k[0] for k in ordered],
            [k[1] for k in ordered],
        )


async def _bump(conn: asyncpg.Connection, keys: Sequence[Key]) -> None:
    if keys:
        await conn.execute(
            "UPDATE semantic.relation_discovery d SET recheck = d.recheck + 1"
            " FROM unnest($1::text[], $2::text[]) AS k(tenant, id)"
            " WHERE d.tenant = k.tenant AND d.node_id = k.id",
            [k[0] for k in keys],
            [k[1] for k in keys],
        )


async def ask_recheck(conn: asyncpg.Connection, keys: Iterable[Key]) -> None:
    """Have discovery examine the nodes ``keys`` again (those examined before; the others
    are due anyway). In the caller's transaction."""
    ordered = sorted(set(keys))
    await lock_discovery_rows(conn, ordered)
    await _bump(conn, ordered)


async def forget_nodes(conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> None:
    """Before the nodes ``ids`` of ``tenant`` and their relations are deleted: drop their
    discovery rows and ask the sources of discovered edges to them to be examined again
    (a freed place among their k may now go to another node). Caller's transaction."""
    if not ids:
        return
    sources = await conn.fetch(
        "SELECT DISTINCT source_id FROM semantic.relations WHERE tenant = $1"
        " AND target_id = ANY($2::text[]) AND discovered",
        tenant,
        list(ids),
    )
    gone = {(tenant, i) for i in ids}
    asked = {(tenant, r["source_id"]) for r in sources} - gone
    await lock_discovery_rows(conn, gone | asked)
    await conn.execute(
        "DELETE FROM semantic.relation_discovery WHERE tenant = $1 AND node_id = ANY($2::text[])",
        tenant,
        list(ids),
    )
    await _bump(conn, sorted(asked))


class PostgresDiscovery:
    """Due nodes, candidates, stored `similar` relations and the writes of discovery."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def due(self, space: Space, after: Key, limit: int) -> list[DueNode]:
        """Up to ``limit`` due nodes after ``after`` in key order, with hash and vector."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT n.tenant, n.id, n.content_hash, d.space_id, d.content_hash AS seen,"
                " d.recheck,"
                f" {mean_vector(space.id, 'n.tenant', 'n.id', '$5')} AS vector"
                f" {_JOIN} WHERE (n.tenant, n.id) > ($1, $2) AND {_due(space, '$3')}"
                " ORDER BY n.tenant, n.id LIMIT $4",
                after[0],
                after[1],
                space.id,
                limit,
                DEFAULT_VECTOR,
            )
        return [
            DueNode(
                tenant=r["tenant"],
                node_id=r["id"],
                content_hash=r["content_hash"],
                recheck=r["recheck"] or 0,
                cause=_cause(r, space),
                vector=as_array(r["vector"]) if r["vector"] is not None else None,
            )
            for r in rows
        ]

    async def pending(self, space: Space) -> int:
        """How many nodes are due."""
        async with connection(self._pool) as conn:
            found: int = await conn.fetchval(
                f"SELECT count(*) {_JOIN} WHERE {_due(space, '$1')}", space.id
            )
        return found

    async def nearest(self, space: Space, tenant: str, vector: Vector, limit: int) -> list[str]:
        """The ``limit`` nodes of ``tenant`` nearest ``vector`` by their best chunk (HNSW)."""
        sql, params = compile_filter(tenant, Filter(), start=1)
        async with connection(self._pool) as conn:
            hits = await dense.dense_search(
                conn,
                space.table,
                tenant,
                vector,
                targets=(VectorTarget(DEFAULT_VECTOR),),
                filter_sql=sql,
                filter_params=params,
                limit=limit,
                ef_search=max(_EF_SEARCH, limit),
                exact_threshold=_EXACT_THRESHOLD,
                filtered=False,
                halfvec_dim=spaces.halfvec_dim(space.index_precision, space.dim),
            )
        return [hit.node_id for hit in hits]

    async def mean_vectors(self, space: Space, keys: Set[Key]) -> dict[Key, Vector]:
        """Each node's mean `content` vector in the space; nodes without one, and vector
        rows whose node no longer exists (orphans heal has not removed yet), left out."""
        if not keys:
            return {}
        ordered = sorted(keys)
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT n.tenant, n.id,"
                f" {mean_vector(space.id, 'n.tenant', 'n.id', '$3')} AS vector"
                " FROM unnest($1::text[], $2::text[]) AS k(tenant, id)"
                " JOIN semantic.nodes n ON n.tenant = k.tenant AND n.id = k.id",
                [k[0] for k in ordered],
                [k[1] for k in ordered],
                DEFAULT_VECTOR,
            )
        return {
            (r["tenant"], r["id"]): as_array(r["vector"]) for r in rows if r["vector"] is not None
        }

    async def similar_now(self, tenant: str, ids: Sequence[str]) -> SimilarNow:
        """The `similar` relations from and to ``ids`` of ``tenant``."""
        if not ids:
            return SimilarNow({}, {}, {})
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                "SELECT source_id, target_id, strength, discovered FROM semantic.relations"
                " WHERE tenant = $1 AND type = $3"
                " AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[]))",
                tenant,
                list(ids),
                SIMILAR,
            )
        wanted = set(ids)
        outgoing: dict[str, dict[str, float]] = {}
        incoming: dict[str, set[str]] = {}
        client: dict[str, set[str]] = {}
        for r in rows:
            source, target = r["source_id"], r["target_id"]
            if r["discovered"]:
                if source in wanted:
                    outgoing.setdefault(source, {})[target] = r["strength"]
                if target in wanted:
                    incoming.setdefault(target, set()).add(source)
            else:
                client.setdefault(source, set()).add(target)
                client.setdefault(target, set()).add(source)
        return SimilarNow(outgoing, incoming, client)

    async def apply(self, space: Space, examined: Sequence[Examined]) -> tuple[int, int, int, int]:
        """Write the outcomes in one transaction: (added, updated, removed, skipped)."""
        if not examined:
            return 0, 0, 0, 0
        async with connection(self._pool) as conn, conn.transaction():
            keys = {e.node.key for e in examined}
            targets = {
                (e.node.tenant, target)
                for e in examined
                for target in (
                    *(n.node_id for n in e.diff.added),
                    *(n.node_id for n in e.diff.updated),
                    *e.diff.removed,
                )
            }
            await lock_nodes(conn, keys | targets)
            live = await _unchanged(conn, examined)
            asked = {(e.node.tenant, other) for e in live for other in e.recheck}
            await lock_discovery_rows(conn, {e.node.key for e in live} | asked)
            removed = await _remove(conn, live)
            added, updated = await _write(conn, live)
            await _record(conn, space, live)
            await _bump(conn, sorted(asked - {e.node.key for e in live}))
        return added, updated, removed, len(examined) - len(live)

    @asynccontextmanager
    async def exclusive(self, space_id: int) -> AsyncIterator[bool]:
        """Hold the discovery lock of ``space_id`` while the block runs (False: held
        elsewhere)."""
        async with connection(self._pool) as conn:
            locked = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", DISCOVERY_LOCK, space_id
            )
            if not locked:
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1, $2)", DISCOVERY_LOCK, space_id)


def _cause(row: asyncpg.Record, space: Space) -> Cause:
    """Why a node is due; changed content first (it asks its neighbours to recheck, even
    when the space changed too)."""
    if row["space_id"] is None:
        return Cause.NEW
    if row["seen"] != row["content_hash"]:
        return Cause.CHANGED
    if row["space_id"] != space.id:
        return Cause.SPACE
    return Cause.RECHECK


async def _unchanged(conn: asyncpg.Connection, examined: Sequence[Examined]) -> list[Examined]:
    """The outcomes whose node still exists with the content hash it was examined with."""
    rows = await conn.fetch(
        "SELECT n.tenant, n.id, n.content_hash FROM semantic.nodes n"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON n.tenant = k.tenant AND n.id = k.id",
        [e.node.tenant for e in examined],
        [e.node.node_id for e in examined],
    )
    current = {(r["tenant"], r["id"]): r["content_hash"] for r in rows}
    return [e for e in examined if current.get(e.node.key) == e.node.content_hash]


async def _remove(conn: asyncpg.Connection, live: Sequence[Examined]) -> int:
    gone = [(e.node.tenant, e.node.node_id, t) for e in live for t in e.diff.removed]
    if not gone:
        return 0
    status = await conn.execute(
        "DELETE FROM semantic.relations r"
        " USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, source_id, target_id)"
        " WHERE r.tenant = k.tenant AND r.source_id = k.source_id"
        " AND r.target_id = k.target_id AND r.type = $4 AND r.discovered",
        [g[0] for g in gone],
        [g[1] for g in gone],
        [g[2] for g in gone],
        SIMILAR,
    )
    return int(status.rsplit(" ", 1)[-1])


async def _write(conn: asyncpg.Connection, live: Sequence[Examined]) -> tuple[int, int]:
    """Insert or rewrite discovered edges: only to nodes that exist, never over a client
    relation (the conflict leaves it as it is) nor beside a client one of the same pair."""
    edges: list[tuple[str, str, Neighbour]] = sorted(
        (
            (e.node.tenant, e.node.node_id, n)
            for e in live
            for n in (*e.diff.added, *e.diff.updated)
        ),
        key=lambda x: (x[0], x[1], x[2].node_id),
    )
    if not edges:
        return 0, 0
    rows = await conn.fetch(
        "INSERT INTO semantic.relations AS r"
        " (tenant, source_id, target_id, type, strength, description, discovered)"
        " SELECT k.tenant, k.source_id, k.target_id, $6::text, k.strength, k.description, true"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::text[])"
        " WITH ORDINALITY AS k(tenant, source_id, target_id, strength, description, i)"
        " WHERE EXISTS (SELECT 1 FROM semantic.nodes n"
        "   WHERE n.tenant = k.tenant AND n.id = k.target_id)"
        " AND NOT EXISTS (SELECT 1 FROM semantic.relations c WHERE c.tenant = k.tenant"
        "   AND c.type = $6 AND NOT c.discovered"
        "   AND ((c.source_id = k.source_id AND c.target_id = k.target_id)"
        "     OR (c.source_id = k.target_id AND c.target_id = k.source_id)))"
        " ORDER BY k.i"
        " ON CONFLICT (tenant, source_id, target_id, type) DO UPDATE SET"
        " strength = EXCLUDED.strength, description = EXCLUDED.description, updated_at = now()"
        " WHERE r.discovered"
        " RETURNING (xmax = 0) AS inserted",
        [e[0] for e in edges],
        [e[1] for e in edges],
        [e[2].node_id for e in edges],
        [e[2].strength for e in edges],
        [e[2].description for e in edges],
        SIMILAR,
    )
    added = sum(1 for r in rows if r["inserted"])
    return added, len(rows) - added


async def _record(conn: asyncpg.Connection, space: Space, live: Sequence[Examined]) -> None:
    """What each node's edges were computed from; ``checked`` = the recheck counter read,
    so a recheck asked for since leaves the node due."""
    ordered = sorted(live, key=lambda e: e.node.key)
    if not ordered:
        return
    values: list[Any] = [
        [e.node.tenant for e in ordered],
        [e.node.node_id for e in ordered],
        [e.node.content_hash for e in ordered],
        [e.node.recheck for e in ordered],
    ]
    await conn.execute(
        "INSERT INTO semantic.relation_discovery AS d"
        " (tenant, node_id, space_id, content_hash, recheck, checked, discovered_at)"
        " SELECT k.tenant, k.id, $5::int, k.hash, k.recheck, k.recheck, now()"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[])"
        " AS k(tenant, id, hash, recheck)"
        " ON CONFLICT (tenant, node_id) DO UPDATE SET space_id = EXCLUDED.space_id,"
        " content_hash = EXCLUDED.content_hash, checked = EXCLUDED.checked,"
        " discovered_at = now()",
        *values,
        space.id,
    )
