"""Relations in PostgreSQL (``semantic.relations``, migration 005).

The write path writes a node's own relations with the node (:func:`replace_client_relations`
inside its transaction, under its node lock) and deletes every relation from and to a
deleted node (:func:`delete_node_relations`); :class:`PostgresRelations` answers
Relate, Unrelate, the walk's steps and the relations of hits. A relation is read only when
its other end exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from semantic.core.domain import NodeRecord
from semantic.core.relations import Direction, Edge, EdgeKey, Relation, Step, WalkQuery
from semantic.store.postgres.db import connection
from semantic.store.postgres.node_locks import lock_nodes

Key = tuple[str, str]


async def client_relations(
    conn: asyncpg.Connection, keys: Sequence[Key]
) -> dict[Key, tuple[Relation, ...]]:
    """The outgoing client (not discovered) relations of (tenant, id) nodes."""
    if not keys:
        return {}
    rows = await conn.fetch(
        "SELECT r.tenant, r.source_id, r.target_id, r.type, r.strength, r.description,"
        " r.updated_at FROM semantic.relations r"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON r.tenant = k.tenant AND r.source_id = k.id WHERE NOT r.discovered"
        " ORDER BY r.target_id, r.type",
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    out: dict[Key, list[Relation]] = {}
    for r in rows:
        out.setdefault((r["tenant"], r["source_id"]), []).append(
            Relation(
                node_id=r["target_id"],
                type=r["type"],
                strength=r["strength"],
                description=r["description"],
                updated_at=r["updated_at"],
            )
        )
    return {key: tuple(found) for key, found in out.items()}


async def replace_client_relations(conn: asyncpg.Connection, nodes: Sequence[NodeRecord]) -> None:
    """For each node whose ``relations`` is set: its client relations become those (a
    discovered relation of the same key becomes a client one). In the caller's
    transaction, under the nodes' locks."""
    given = [n for n in nodes if n.relations is not None]
    if not given:
        return
    await conn.execute(
        "DELETE FROM semantic.relations r USING unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " WHERE r.tenant = k.tenant AND r.source_id = k.id AND NOT r.discovered",
        [n.tenant for n in given],
        [n.id for n in given],
    )
    edges = [(n.tenant, n.id, rel) for n in given for rel in n.relations or ()]
    await _upsert(conn, edges)


async def delete_node_relations(conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> None:
    """Every relation from and to the nodes ``ids`` of ``tenant``."""
    await conn.execute(
        "DELETE FROM semantic.relations WHERE tenant = $1"
        " AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[]))",
        tenant,
        list(ids),
    )


async def _upsert(
    conn: asyncpg.Connection, edges: Sequence[tuple[str, str, Relation]]
) -> tuple[int, int]:
    """Insert or update (tenant, source, relation) rows; (created, updated)."""
    if not edges:
        return 0, 0
    ordered = sorted(edges, key=lambda e: (e[0], e[1], e[2].node_id, e[2].type))
    rows = await conn.fetch(
        "INSERT INTO semantic.relations AS r"
        " (tenant, source_id, target_id, type, strength, description, discovered)"
        " SELECT k.tenant, k.source_id, k.target_id, k.type, k.strength, k.description, false"
        " FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::text[])"
        " AS k(tenant, source_id, target_id, type, strength, description)"
        " ON CONFLICT (tenant, source_id, target_id, type) DO UPDATE SET"
        " strength = EXCLUDED.strength, description = EXCLUDED.description,"
        " discovered = false, updated_at = now()"
        " RETURNING (xmax = 0) AS inserted",
        [e[0] for e in ordered],
        [e[1] for e in ordered],
        [e[2].node_id for e in ordered],
        [e[2].type for e in ordered],
        [e[2].strength for e in ordered],
        [e[2].description for e in ordered],
    )
    created = sum(1 for r in rows if r["inserted"])
    return created, len(rows) - created


_OUT = (
    "SELECT r.source_id AS from_id, r.target_id AS to_id, r.type, r.strength, 1 AS dir"
    " FROM semantic.relations r JOIN semantic.nodes n"
    " ON n.tenant = r.tenant AND n.id = r.target_id"
    " WHERE r.tenant = $1 AND r.source_id = ANY($2::text[])"
)
_IN = (
    "SELECT r.target_id AS from_id, r.source_id AS to_id, r.type, r.strength, 2 AS dir"
    " FROM semantic.relations r JOIN semantic.nodes n"
    " ON n.tenant = r.tenant AND n.id = r.source_id"
    " WHERE r.tenant = $1 AND r.target_id = ANY($2::text[])"
)
_FILTERS = (
    " AND r.strength >= $3 AND (cardinality($4::text[]) = 0 OR r.type = ANY($4::text[]))"
    " AND ($5 OR NOT r.discovered)"
)


class PostgresRelations:
    """The :class:`~semantic.core.relations.RelationStore` on a pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def relate(self, tenant: str, edges: Sequence[Edge]) -> tuple[int, int]:
        """Create or update, under the sources' node locks (a concurrent Upsert replacing
        a source's relations is ordered with this, never interleaved)."""
        async with connection(self._pool) as conn, conn.transaction():
            await lock_nodes(conn, [(tenant, e.source_id) for e in edges])
            return await _upsert(conn, [(tenant, e.source_id, e.relation) for e in edges])

    async def unrelate(self, tenant: str, keys: Sequence[EdgeKey]) -> int:
        """Remove, under the sources' node locks."""
        async with connection(self._pool) as conn, conn.transaction():
            await lock_nodes(conn, [(tenant, k.source_id) for k in keys])
            status = await conn.execute(
                "DELETE FROM semantic.relations r"
                " USING unnest($2::text[], $3::text[], $4::text[]) AS k(source_id, target_id, type)"
                " WHERE r.tenant = $1 AND r.source_id = k.source_id AND r.target_id = k.target_id"
                " AND (k.type = '' OR r.type = k.type)",
                tenant,
                [k.source_id for k in keys],
                [k.target_id for k in keys],
                [k.type or "" for k in keys],
            )
        return int(status.rsplit(" ", 1)[-1])

    async def steps(self, query: WalkQuery, frontier: Sequence[str]) -> list[Step]:
        """The relations leaving ``frontier`` (to nodes that exist) the query follows."""
        parts = []
        if query.direction in (Direction.OUTGOING, Direction.BOTH):
            parts.append(_OUT + _FILTERS)
        if query.direction in (Direction.INCOMING, Direction.BOTH):
            parts.append(_IN + _FILTERS)
        args: list[Any] = [
            query.tenant,
            list(frontier),
            query.min_strength,
            list(query.types),
            query.include_discovered,
        ]
        async with connection(self._pool) as conn:
            rows = await conn.fetch(" UNION ALL ".join(parts), *args)
        return [
            Step(
                from_id=r["from_id"],
                to_id=r["to_id"],
                type=r["type"],
                strength=r["strength"],
                direction=Direction.OUTGOING if r["dir"] == 1 else Direction.INCOMING,
            )
            for r in rows
        ]

    async def of_nodes(self, tenant: str, ids: Sequence[str]) -> dict[str, list[Relation]]:
        """Each node's outgoing and incoming relations to nodes that exist."""
        columns = ", r.description, r.discovered, r.updated_at"
        sql = (
            _OUT.replace(" AS dir", f" AS dir{columns}", 1)
            + " UNION ALL "
            + _IN.replace(" AS dir", f" AS dir{columns}", 1)
            + " ORDER BY 1, 5, 3, 2"
        )
        async with connection(self._pool) as conn:
            rows = await conn.fetch(sql, tenant, list(ids))
        out: dict[str, list[Relation]] = {}
        for r in rows:
            out.setdefault(r["from_id"], []).append(
                Relation(
                    node_id=r["to_id"],
                    type=r["type"],
                    strength=r["strength"],
                    description=r["description"],
                    discovered=r["discovered"],
                    direction=Direction.OUTGOING if r["dir"] == 1 else Direction.INCOMING,
                    updated_at=r["updated_at"],
                )
            )
        return out
