"""The core's ``ExploreStore`` over a pool: a seeded, deterministic sample of vector rows.

The sample is the first ``n`` matching rows ordered by ``hashtextextended(node_id, chunk;
seed)``, PostgreSQL's seeded 64-bit text hash (ties broken by the key). Why this and not
``TABLESAMPLE``: ``SYSTEM`` samples whole pages, so its size is not the size asked for
once the tenant, name and content-type filters drop rows, and ``BERNOULLI`` reads every
page anyway; the hash order gives exactly ``n`` rows, the same rows for the same seed, and
keeps a row in place as other rows come and go.

Cost, at 100k rows: the first step reads only keys (tenant, node_id, name, chunk are the
primary key, so no embedding is detoasted; only with content types does it join the
nodes, on their primary key), hashes each matching key once and keeps the ``n`` smallest in a
bounded top-N heap sort, with the matching count from a window over the same rows. The
second step fetches the ``n`` embeddings and node labels by primary key. Nothing sorts
or reads the 100k vectors themselves.
"""

from __future__ import annotations

import asyncpg

from semantic.core.explore import ExploreQuery, Sample, SampledVector
from semantic.core.spaces import Space
from semantic.store.postgres.db import as_array, connection


def _sample_sql(table: str, *, by_type: bool) -> str:
    """The sampling statement; it joins the nodes for the content-type filter only when
    there is one (``by_type``)."""
    nodes_join = (
        "JOIN semantic.nodes n ON n.tenant = v.tenant AND n.id = v.node_id" if by_type else ""
    )
    type_test = (
        "AND n.content_type = ANY($3::text[])" if by_type else "AND cardinality($3::text[]) = 0"
    )
    return f"""
WITH matched AS (
    SELECT v.node_id, v.chunk,
           hashtextextended(v.node_id || chr(31) || v.chunk::text, $4::bigint) AS draw,
           count(*) OVER () AS total
    FROM {table} v
    {nodes_join}
    WHERE v.tenant = $1 AND v.name = $2 {type_test}
    ORDER BY draw, v.node_id, v.chunk
    LIMIT $5
)
SELECT m.node_id, m.chunk, m.total, n.slug, n.title, n.content_type, v.embedding
FROM matched m
JOIN {table} v ON v.tenant = $1 AND v.node_id = m.node_id AND v.name = $2 AND v.chunk = m.chunk
JOIN semantic.nodes n ON n.tenant = $1 AND n.id = m.node_id
ORDER BY m.draw, m.node_id, m.chunk
"""


class PostgresExplore:
    """Samples for Explore (one statement)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sample(self, space: Space, query: ExploreQuery) -> Sample:
        """Up to ``query.sample`` rows in seeded hash order, and how many matched."""
        async with connection(self._pool) as conn:
            rows = await conn.fetch(
                _sample_sql(space.table, by_type=bool(query.content_types)),
                query.tenant,
                query.vector_name,
                list(query.content_types),
                query.seed,
                query.sample,
            )
        total = int(rows[0]["total"]) if rows else 0  # the sample size is at least 1
        return Sample(
            [
                SampledVector(
                    node_id=r["node_id"],
                    slug=r["slug"],
                    title=r["title"],
                    content_type=r["content_type"],
                    chunk=r["chunk"],
                    vector=as_array(r["embedding"]),
                )
                for r in rows
            ],
            total,
        )
