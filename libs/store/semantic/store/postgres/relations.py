"""Relations in PostgreSQL (``semantic.relations``, migration 005).

The write path writes a node's own relations with the node (:func:`replace_client_relations`
inside its transaction, under its node lock) and deletes every relation from and to a
deleted node (:func:`delete_node_relations`); :class:`PostgresRelations` answers
Relate, Unrelate, the walk's steps and the relations of hits. A relation is read only when
its other end exists.

Discovered `similar` relations (``discovery``) give way to client ones: a client `similar`
relation replaces a discovered one of the same key and removes the discovered one of the
reverse key; when a client `similar` relation takes the place of a discovered one, or goes,
both of its nodes are examined again by discovery (``discovery.ask_recheck``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from semantic.core.domain import NodeRecord
from semantic.core.relations import SIMILAR, Direction, Edge, EdgeKey, Relation, Step, WalkQuery
from semantic.store.postgres.db import connection
from semantic.store.postgres.discovery import ask_recheck, forget_nodes
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


async def related_nodes(conn: asyncpg.Connection, keys: Iterable[Key]) -> set[Key]:
    """The nodes related to ``keys`` either way, as stored now. A writer that changes or
    deletes the relations of ``keys`` (their own, and those pointing at them) takes these
    nodes' locks too, in the same :func:`~semantic.store.postgres.node_locks.lock_nodes`
    call, so it never waits, holding relation rows, for a writer of one of them."""
    wanted = sorted(set(keys))
    if not wanted:
        return set()
    rows = await conn.fetch(
        "SELECT r.tenant, r.target_id AS other FROM semantic.relations r"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON r.tenant = k.tenant AND r.source_id = k.id"
        " UNION SELECT r.tenant, r.source_id FROM semantic.relations r"
        " JOIN unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " ON r.tenant = k.tenant AND r.target_id = k.id",
        [k[0] for k in wanted],
        [k[1] for k in wanted],
    )
    return {(r["tenant"], r["other"]) for r in rows}


async def replace_client_relations(conn: asyncpg.Connection, nodes: Sequence[NodeRecord]) -> None:
    """For each node whose ``relations`` is set: its client relations become those (a
    discovered relation of the same key becomes a client one). In the caller's
    transaction, under the nodes' locks."""
    given = [n for n in nodes if n.relations is not None]
    if not given:
        return
    gone = await conn.fetch(
        "DELETE FROM semantic.relations r USING unnest($1::text[], $2::text[]) AS k(tenant, id)"
        " WHERE r.tenant = k.tenant AND r.source_id = k.id AND NOT r.discovered"
        " RETURNING r.tenant, r.source_id, r.target_id, r.type",
        [n.tenant for n in given],
        [n.id for n in given],
    )
    edges = [(n.tenant, n.id, rel) for n in given for rel in n.relations or ()]
    kept = {(t, s, rel.node_id) for t, s, rel in edges if rel.type == SIMILAR}
    _, _, asked = await _upsert(conn, edges)
    dropped = {
        (r["tenant"], r["source_id"], r["target_id"]) for r in gone if r["type"] == SIMILAR
    } - kept
    await ask_recheck(conn, asked | _ends(dropped))


async def delete_node_relations(conn: asyncpg.Connection, tenant: str, ids: Sequence[str]) -> None:
    """Every relation from and to the nodes ``ids`` of ``tenant``, and what discovery knew
    of them (``discovery.forget_nodes``)."""
    await forget_nodes(conn, tenant, ids)
    await conn.execute(
        "DELETE FROM semantic.relations WHERE tenant = $1"
        " AND (source_id = ANY($2::text[]) OR target_id = ANY($2::text[]))",
        tenant,
        list(ids),
    )


async def _upsert(
    conn: asyncpg.Connection, edges: Sequence[tuple[str, str, Relation]]
) -> tuple[int, int, set[Key]]:
    """Insert or update (tenant, source, relation) rows; (created, updated, the nodes
    discovery should examine again: see :func:`_displace_discovered`)."""
    if not edges:
        return 0, 0, set()
    ordered = sorted(edges, key=lambda e: (e[0], e[1], e[2].node_id, e[2].type))
    similar = [e for e in ordered if e[2].type == SIMILAR]
    replaced = await _discovered_pairs(conn, similar)
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
    asked = await _displace_discovered(conn, similar, replaced)
    return created, len(rows) - created, asked


def _ends(pairs: Iterable[tuple[str, str, str]]) -> set[Key]:
    """Both nodes of each (tenant, source, target)."""
    return {(t, n) for t, s, d in pairs for n in (s, d)}


async def _discovered_pairs(
    conn: asyncpg.Connection, similar: Sequence[tuple[str, str, Relation]]
) -> set[tuple[str, str, str]]:
    """The (tenant, source, target) of ``similar`` stored as discovered relations now."""
    if not similar:
        return set()
    rows = await conn.fetch(
        "SELECT r.tenant, r.source_id, r.target_id FROM semantic.relations r"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, source_id, target_id)"
        " ON r.tenant = k.tenant AND r.source_id = k.source_id AND r.target_id = k.target_id"
        " WHERE r.type = $4 AND r.discovered",
        [e[0] for e in similar],
        [e[1] for e in similar],
        [e[2].node_id for e in similar],
        SIMILAR,
    )
    return {(r["tenant"], r["source_id"], r["target_id"]) for r in rows}


async def _displace_discovered(
    conn: asyncpg.Connection,
    similar: Sequence[tuple[str, str, Relation]],
    replaced: set[tuple[str, str, str]],
) -> set[Key]:
    """After client `similar` relations were written (``replaced``: those that took the
    place of a discovered one): remove the discovered relations of their reverse keys;
    returns both nodes of each pair that lost a discovered relation, for discovery to
    examine again (its place among the k may go to another node)."""
    if not similar:
        return set()
    gone = await conn.fetch(
        "DELETE FROM semantic.relations r"
        " USING unnest($1::text[], $2::text[], $3::text[]) AS k(tenant, source_id, target_id)"
        " WHERE r.tenant = k.tenant AND r.source_id = k.target_id"
        " AND r.target_id = k.source_id AND r.type = $4 AND r.discovered"
        " RETURNING r.tenant, r.source_id, r.target_id",
        [e[0] for e in similar],
        [e[1] for e in similar],
        [e[2].node_id for e in similar],
        SIMILAR,
    )
    displaced = {(r["tenant"], r["source_id"], r["target_id"]) for r in gone}
    return _ends(displaced | replaced)


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
        """Create or update, under the node locks of both ends (a concurrent Upsert
        replacing a source's relations, or a delete of either end, is ordered with this,
        never interleaved)."""
        async with connection(self._pool) as conn, conn.transaction():
            ends = [(tenant, node) for e in edges for node in (e.source_id, e.relation.node_id)]
            await lock_nodes(conn, ends)
            created, updated, asked = await _upsert(
                conn, [(tenant, e.source_id, e.relation) for e in edges]
            )
            await ask_recheck(conn, asked)
            return created, updated

    async def unrelate(self, tenant: str, keys: Sequence[EdgeKey]) -> int:
        """Remove, under the node locks of both ends; discovery examines again both nodes
        of a client `similar` relation removed."""
        async with connection(self._pool) as conn, conn.transaction():
            await lock_nodes(conn, [(tenant, n) for k in keys for n in (k.source_id, k.target_id)])
            gone = await conn.fetch(
                "DELETE FROM semantic.relations r"
                " USING unnest($2::text[], $3::text[], $4::text[]) AS k(source_id, target_id, type)"
                " WHERE r.tenant = $1 AND r.source_id = k.source_id AND r.target_id = k.target_id"
                " AND (k.type = '' OR r.type = k.type)"
                " RETURNING r.source_id, r.target_id, r.type, r.discovered",
                tenant,
                [k.source_id for k in keys],
                [k.target_id for k in keys],
                [k.type or "" for k in keys],
            )
            await ask_recheck(
                conn,
                _ends(
                    (tenant, r["source_id"], r["target_id"])
                    for r in gone
                    if r["type"] == SIMILAR and not r["discovered"]
                ),
            )
        return len(gone)

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
