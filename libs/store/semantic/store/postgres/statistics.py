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

    async def stats(self, tenant: str | None) -> Stats:
        """Nodes per type, spaces and their sizes, heal backlog of the active space."""
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
            vectors = {
                s.id: int(await conn.fetchval(f"SELECT count(*) FROM {s.table}"))
                for s in all_spaces
            }
            relations = [
                (r["name"], r["kind"], int(r["bytes"]))
                for r in await conn.fetch(
                    "SELECT c.relname AS name,"
                    " CASE c.relkind WHEN 'i' THEN 'index' ELSE 'table' END AS kind,"
                    " pg_total_relation_size(c.oid) AS bytes FROM pg_class c"
                    " JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = 'semantic' AND c.relkind IN ('r', 'i')"
                    " ORDER BY bytes DESC"
                )
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
        )
