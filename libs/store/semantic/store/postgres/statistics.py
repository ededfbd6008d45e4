"""The core's ``SearchStatistics`` over a pool: node counts, space sizes, relation sizes and
the active space's heal backlog, read from PostgreSQL's tables and catalogs."""

from __future__ import annotations

import asyncpg

from semantic.core.service import Stats
from semantic.store.postgres import backlog, spaces
from semantic.store.postgres.db import connection


class PostgresStatistics:
    """Counts for Stats (one connection, several statements)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def stats(self, tenant: str | None, *, sizes: bool) -> Stats:
        """Counts of ``tenant`` (None: every tenant), the heal backlog of the active space,
        and with ``sizes`` the sizes of the schema's tables and indexes."""
        async with connection(self._pool) as conn:
            where, args = ("WHERE tenant = $1", [tenant]) if tenant is not None else ("", [])
            by_type: dict[str, int] = {}
            by_tenant: dict[str, int] = {}
            for r in await conn.fetch(
                f"SELECT tenant, content_type, count(*) AS n FROM semantic.nodes {where}"
                " GROUP BY tenant, content_type ORDER BY content_type, tenant",
                *args,
            ):
                by_type[r["content_type"]] = by_type.get(r["content_type"], 0) + r["n"]
                by_tenant[r["tenant"]] = by_tenant.get(r["tenant"], 0) + r["n"]
            all_spaces = await spaces.list_spaces(conn)
            active = next((s for s in all_spaces if s.state == "active"), None)
            vectors: dict[int, int] = {}
            space_nodes: dict[int, int] = {}
            for s in all_spaces:
                row = await conn.fetchrow(
                    f"SELECT count(*) AS v, count(DISTINCT (tenant, node_id)) AS n"
                    f" FROM {s.table} {where}",
                    *args,
                )
                vectors[s.id], space_nodes[s.id] = int(row["v"]), int(row["n"])
            users = await conn.fetchrow(
                "SELECT count(*) AS events, count(DISTINCT (tenant, user_id)) AS users"
                f" FROM semantic.user_events {where}",
                *args,
            )
            relations = [
                (r["name"], r["kind"], int(r["bytes"]))
                for r in (await conn.fetch(_SIZES) if sizes else [])
            ]
            missing = stale = 0
            if active is not None:
                row = await conn.fetchrow(
                    backlog.counts(active.table, where.replace("tenant", "n.tenant")), *args
                )
                if row is not None:
                    missing, stale = int(row["missing"]), int(row["stale"])
        return Stats(
            by_type,
            active,
            all_spaces,
            vectors,
            relations,
            missing,
            stale,
            nodes_by_tenant=dict(sorted(by_tenant.items())),
            space_nodes=space_nodes,
            users=int(users["users"]),
            user_events=int(users["events"]),
        )


_SIZES = (
    "SELECT c.relname AS name, CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,"
    " pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
    " JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname = 'semantic' AND c.relkind IN ('r', 'i') ORDER BY bytes DESC"
)
