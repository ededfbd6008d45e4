"""The core's ``ConsistencyStore`` over a pool: the reads of Admin CheckConsistency.

Each read is a few cheap statements: the migration ledger against the shipped files
(``schema.load_migrations`` and ``schema.schema_gaps``), the ``active`` alias and the
catalog entry of its table, the registry against the catalog, and for one space the
heal backlog's predicates (``backlog``) as an exact ``count(*)`` plus a key-ordered
anti-join cut at the sample limit for the examples (it stops after ``limit`` rows on the
primary-key index instead of sorting every offender). Nothing here writes.

Examples name nodes as ``id`` in the default tenant and ``tenant/id`` in a named one (a
tenant name cannot contain ``/``).
"""

from __future__ import annotations

import asyncpg

from semantic.core.consistency import (
    AliasState,
    MigrationState,
    Offenders,
    SchemaState,
    SpaceTables,
)
from semantic.core.spaces import ACTIVE, Space, vector_table
from semantic.store.postgres import backlog
from semantic.store.postgres.db import connection
from semantic.store.postgres.schema import SCHEMA, load_migrations, schema_gaps

_LEDGER = f"{SCHEMA}.schema_migrations"

_SPACE_TABLES = """
SELECT s.id, s.state, t.oid IS NOT NULL AS has_table,
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               JOIN pg_am am ON am.oid = c.relam
               WHERE i.indrelid = t.oid AND am.amname = 'hnsw') AS has_hnsw
FROM semantic.embedding_spaces s
LEFT JOIN LATERAL (SELECT to_regclass(format('semantic.vectors_%s', s.id)) AS oid) t ON true
ORDER BY s.id
"""


def node_label(tenant: str, node_id: str) -> str:
    """How an example names a node: ``id``, or ``tenant/id`` outside the default tenant."""
    return f"{tenant}/{node_id}" if tenant else node_id


class PostgresConsistency:
    """Reads for the consistency checks (one connection per read)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def schema(self) -> SchemaState:
        """Shipped and recorded migrations side by side, and the bootstrap's gaps."""
        shipped = load_migrations()
        async with connection(self._pool) as conn:
            gaps = await schema_gaps(conn, shipped)
            rows = []
            if _LEDGER not in gaps:
                rows = await conn.fetch(
                    f"SELECT version, name, checksum, applied_at FROM {_LEDGER} ORDER BY version"
                )
        recorded = {r["version"]: r for r in rows}
        states = {
            m.version: MigrationState(
                m.version,
                m.name,
                recorded[m.version]["checksum"] if m.version in recorded else None,
                m.checksum,
                recorded[m.version]["applied_at"] if m.version in recorded else None,
            )
            for m in shipped
        }
        for version, row in recorded.items():
            if version not in states:  # the database is ahead of this build
                states[version] = MigrationState(
                    version, row["name"], row["checksum"], None, row["applied_at"]
                )
        # Gaps that are whole migrations are reported per migration, not twice.
        other_gaps = tuple(g for g in gaps if not g.startswith("migration "))
        return SchemaState(tuple(states[v] for v in sorted(states)), other_gaps)

    async def alias(self) -> AliasState:
        """The ``active`` alias, the spaces in state active and the aliased table."""
        async with connection(self._pool) as conn:
            row = await conn.fetchrow(
                "SELECT a.space_id, s.dim,"
                " ARRAY(SELECT id FROM semantic.embedding_spaces WHERE state = 'active'"
                "   ORDER BY id) AS active_ids"
                " FROM (SELECT 1) one"
                " LEFT JOIN semantic.space_aliases a ON a.name = $1"
                " LEFT JOIN semantic.embedding_spaces s ON s.id = a.space_id",
                ACTIVE,
            )
            assert row is not None
            space_id = row["space_id"]
            table_exists, column_dim = False, None
            if space_id is not None:
                column = await conn.fetchrow(
                    "SELECT to_regclass($1) IS NOT NULL AS present,"
                    " (SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass($1)"
                    "  AND a.attname = 'embedding' AND NOT a.attisdropped) AS dim",
                    vector_table(space_id),
                )
                assert column is not None
                table_exists, column_dim = bool(column["present"]), column["dim"]
        return AliasState(
            alias_space_id=space_id,
            active_state_ids=tuple(row["active_ids"]),
            space_dim=row["dim"],
            table_exists=table_exists,
            column_dim=column_dim,
        )

    async def space_tables(self) -> list[SpaceTables]:
        """Every registered space with whether its table and HNSW index exist."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(_SPACE_TABLES)
        return [
            SpaceTables(r["id"], r["state"], bool(r["has_table"]), bool(r["has_hnsw"]))
            for r in rows
        ]

    async def missing_vectors(self, space: Space, limit: int) -> Offenders:
        """Nodes with text and no vector row in ``space``."""
        return await self._nodes_where(backlog.missing(space.table), limit)

    async def stale_vectors(self, space: Space, limit: int) -> Offenders:
        """Nodes with computed vectors in ``space`` from another content hash."""
        return await self._nodes_where(backlog.stale(space.table), limit)

    async def orphan_vectors(self, space: Space, limit: int) -> Offenders:
        """Vector rows of ``space`` without their node; examples name the nodes."""
        async with connection(self._pool) as conn:
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM {space.table} v WHERE {backlog.ORPHAN}"
            )
            rows = []
            if total:
                rows = await conn.fetch(
                    f"SELECT DISTINCT v.tenant, v.node_id FROM {space.table} v"
                    f" WHERE {backlog.ORPHAN} ORDER BY v.tenant, v.node_id LIMIT $1",
                    limit,
                )
        return Offenders(total, tuple(node_label(r["tenant"], r["node_id"]) for r in rows))

    async def _nodes_where(self, predicate: str, limit: int) -> Offenders:
        async with connection(self._pool) as conn:
            total: int = await conn.fetchval(
                f"SELECT count(*) FROM semantic.nodes n WHERE {predicate}"
            )
            rows = []
            if total:
                rows = await conn.fetch(
                    f"SELECT n.tenant, n.id FROM semantic.nodes n WHERE {predicate}"
                    " ORDER BY n.tenant, n.id LIMIT $1",
                    limit,
                )
        return Offenders(total, tuple(node_label(r["tenant"], r["id"]) for r in rows))
