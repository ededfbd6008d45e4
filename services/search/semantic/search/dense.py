"""The dense side: nearest nodes to a query vector in one space's table, filters never shrinking.

A node's similarity for one named vector is its best chunk's cosine similarity
(``1 - (embedding <=> q)``). With several targets the node's score is
``sum(weight * similarity) / sum(weights)`` over the targets, a target the node has no vector
for counting as 0. The best chunk reported is the one contributing most (weight x similarity).

How a query runs, in one transaction:

1. ``hnsw.iterative_scan = relaxed_order``, ``hnsw.ef_search`` and ``hnsw.max_scan_tuples`` are
   set for the transaction only (``set_config(..., true)``), and the nodes matching the filter
   are counted up to ``exact_threshold + 1``, in the same round trip.
2. At most ``exact_threshold`` matching nodes: exact search. The matching nodes are
   materialised, joined to the vector table by its primary key prefix (tenant, node_id) and
   every chunk's distance is computed; the HNSW index is not involved.
3. Otherwise the HNSW index scan runs with the filter applied through the join to
   ``semantic.nodes``. Iterative scanning keeps it going until enough rows pass the filter.
   Chunk rows are over-fetched (a node may have several chunks) and reduced to nodes; when
   too few nodes come back the fetch grows, and when the index scan ends early (its tuple
   budget is spent) the search falls back to the exact path. A filter therefore never
   silently shrinks the result. Several targets: each target's nearest nodes are gathered
   this way and the union is scored exactly.

The vector table's name comes from ``spaces.vector_table`` (an integer id), never from input.
The connection must have the pgvector codec registered (``pgvector.asyncpg.register_vector``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.search.domain import ChunkMatch, VectorTarget

MAX_TARGETS = 8
FIRST_FETCH_PER_NODE = 3
"""Chunk rows fetched per wanted node on the first index scan."""
FETCH_GROWTH = 4
MAX_INDEX_FETCH = 20_000
"""Beyond this many chunk rows the exact path is cheaper than growing the index scan."""
DEFAULT_MAX_SCAN_TUPLES = 20_000
MAX_EF_SEARCH = 1000

_TABLE = re.compile(r"^semantic\.vectors_[0-9]+$")

# {filter}: the fragment of filters.compile_filter, parameters $1..$m; ${...}: ours, after.
_PREPARE = """
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('hnsw.ef_search', ${ef}::int::text, true),
       set_config('hnsw.max_scan_tuples', ${max_scan}::int::text, true),
       (SELECT count(*) FROM (SELECT 1 FROM semantic.nodes n WHERE {filter} LIMIT ${cap}) AS m)
           AS matching
"""

_INDEX_SCAN = """
WITH chunk AS MATERIALIZED (
    SELECT v.node_id, v.chunk, v.span_start, v.span_end, v.embedding <=> ${q} AS distance
    FROM {table} v
    JOIN semantic.nodes n ON n.tenant = v.tenant AND n.id = v.node_id
    WHERE v.tenant = ${tenant} AND v.name = ${name} AND {filter}
    ORDER BY v.embedding <=> ${q}
    LIMIT ${fetch}
),
best AS (
    SELECT DISTINCT ON (node_id) node_id, chunk, span_start, span_end, distance
    FROM chunk ORDER BY node_id, distance
)
SELECT best.*, (SELECT count(*) FROM chunk) AS fetched
FROM best ORDER BY distance, node_id LIMIT ${limit}
"""

_MATCHING_BY_FILTER = "SELECT n.id FROM semantic.nodes n WHERE {filter}"
_MATCHING_BY_ID = "SELECT DISTINCT unnest(${ids}::text[]) AS id"

_EXACT = """
WITH matching AS MATERIALIZED ({matching}),
target AS (
    SELECT t.name, t.weight FROM unnest(${names}::text[], ${weights}::float8[]) AS t (name, weight)
),
best AS (
    SELECT matching.id AS node_id, b.name, b.chunk, b.span_start, b.span_end, b.similarity
    FROM matching CROSS JOIN LATERAL (
        SELECT DISTINCT ON (v.name) v.name, v.chunk, v.span_start, v.span_end,
               1.0 - (v.embedding <=> ${q}) AS similarity
        FROM {table} v
        WHERE v.tenant = ${tenant} AND v.node_id = matching.id AND v.name = ANY(${names}::text[])
        ORDER BY v.name, v.embedding <=> ${q}
    ) AS b
),
scored AS (
    SELECT best.node_id,
           sum(target.weight * best.similarity) / ${total_weight} AS score,
           array_agg(best.name ORDER BY target.weight * best.similarity DESC, best.name) AS names,
           array_agg(best.similarity ORDER BY target.weight * best.similarity DESC, best.name)
               AS similarities,
           array_agg(best.chunk ORDER BY target.weight * best.similarity DESC, best.name)
               AS chunks,
           array_agg(best.span_start ORDER BY target.weight * best.similarity DESC, best.name)
               AS span_starts,
           array_agg(best.span_end ORDER BY target.weight * best.similarity DESC, best.name)
               AS span_ends
    FROM best JOIN target ON target.name = best.name
    GROUP BY best.node_id
)
SELECT * FROM scored ORDER BY score DESC, node_id LIMIT ${limit}
"""


@dataclass(frozen=True)
class DenseHit:
    """One node found by vector similarity."""

    node_id: str
    score: float
    chunk: ChunkMatch
    target_scores: dict[str, float] = field(default_factory=dict)


class _Sql:
    """A statement's parameters: the filter's first ($1..$m), then named ones after them."""

    def __init__(self, filter_params: Sequence[Any]) -> None:
        self.params: list[Any] = list(filter_params)
        self.numbers: dict[str, str] = {}

    def bind(self, **values: Any) -> _Sql:
        for name, value in values.items():
            self.params.append(value)
            self.numbers[name] = str(len(self.params))
        return self

    def render(self, template: str, **fragments: str) -> str:
        return template.format(**self.numbers, **fragments)


async def dense_search(
    conn: asyncpg.Connection,
    space_table: str,
    tenant: str,
    query_vector: np.ndarray[Any, Any],
    *,
    targets: Sequence[VectorTarget],
    filter_sql: str,
    filter_params: Sequence[Any],
    limit: int,
    ef_search: int,
    exact_threshold: int,
    max_scan_tuples: int = DEFAULT_MAX_SCAN_TUPLES,
) -> list[DenseHit]:
    """The ``limit`` nodes most similar to ``query_vector``, best first.

    ``filter_sql`` / ``filter_params`` come from ``filters.compile_filter(..., start=1)``.
    ``exact_threshold``: when at most this many nodes match the filter, search exactly.
    ``query_vector`` must have the space's dimension; a mismatch is an ``InvalidArgument``.
    """
    if not _TABLE.match(space_table):
        raise ValueError(f"{space_table!r} is not a vector table name from spaces.vector_table")
    chosen = _check_targets(targets)
    q = _check_vector(query_vector)
    if limit <= 0:
        return []
    search = _DenseQuery(conn, space_table, tenant, q, chosen, limit, filter_sql, filter_params)
    try:
        async with conn.transaction():
            prepare = _Sql(filter_params).bind(
                ef=max(1, min(int(ef_search), MAX_EF_SEARCH)),
                max_scan=max(1, int(max_scan_tuples)),
                cap=max(0, int(exact_threshold)) + 1,
            )
            row = await conn.fetchrow(prepare.render(_PREPARE, filter=filter_sql), *prepare.params)
            assert row is not None
            if row["matching"] <= exact_threshold:
                return await search.exact()
            if len(chosen) == 1:
                found = await search.index_scan(chosen[0])
                return found if found is not None else await search.exact()
            candidates: dict[str, None] = {}
            for target in chosen:
                found = await search.index_scan(target)
                if found is None:
                    return await search.exact()
                candidates.update((hit.node_id, None) for hit in found)
            return await search.exact(ids=list(candidates))
    except asyncpg.DataError as exc:
        if "different vector dimensions" in str(exc):
            raise InvalidArgument("vector", f"dimension does not match the space: {exc}") from exc
        raise


@dataclass(frozen=True)
class _DenseQuery:
    """One dense search's inputs, shared by its index-scan and exact steps."""

    conn: asyncpg.Connection
    table: str
    tenant: str
    q: np.ndarray[Any, Any]
    targets: Sequence[VectorTarget]
    limit: int
    filter_sql: str
    filter_params: Sequence[Any]

    async def index_scan(self, target: VectorTarget) -> list[DenseHit] | None:
        """The nearest ``limit`` nodes for one named vector via HNSW; None: go exact."""
        fetch = max(self.limit * FIRST_FETCH_PER_NODE, self.limit + 16)
        while True:
            sql = _Sql(self.filter_params).bind(
                q=self.q, tenant=self.tenant, name=target.name, fetch=fetch, limit=self.limit
            )
            text = sql.render(_INDEX_SCAN, table=self.table, filter=self.filter_sql)
            rows = await self.conn.fetch(text, *sql.params)
            if len(rows) >= self.limit:
                return [_single_hit(row, target.name) for row in rows]
            fetched = rows[0]["fetched"] if rows else 0
            if fetched < fetch or fetch >= MAX_INDEX_FETCH:
                # The index scan stopped before its LIMIT (tuple budget spent or graph
                # exhausted): only an exact scan can tell how many nodes really qualify.
                return None
            fetch = min(fetch * FETCH_GROWTH, MAX_INDEX_FETCH)

    async def exact(self, *, ids: list[str] | None = None) -> list[DenseHit]:
        """Exact scores over the nodes matching the filter, or over exactly ``ids``."""
        if ids is None:
            sql = _Sql(self.filter_params)
            matching = _MATCHING_BY_FILTER.format(filter=self.filter_sql)
        else:
            sql = _Sql(()).bind(ids=ids)
            matching = sql.render(_MATCHING_BY_ID)
        sql.bind(
            q=self.q,
            tenant=self.tenant,
            names=[t.name for t in self.targets],
            weights=[float(t.weight) for t in self.targets],
            total_weight=math.fsum(t.weight for t in self.targets),
            limit=self.limit,
        )
        text = sql.render(_EXACT, table=self.table, matching=matching)
        return [_combined_hit(row) for row in await self.conn.fetch(text, *sql.params)]


def _single_hit(row: asyncpg.Record, name: str) -> DenseHit:
    similarity = 1.0 - float(row["distance"])
    chunk = ChunkMatch(name, row["chunk"], row["span_start"], row["span_end"], similarity)
    return DenseHit(row["node_id"], similarity, chunk, {name: similarity})


def _combined_hit(row: asyncpg.Record) -> DenseHit:
    names: list[str] = row["names"]
    similarities = [float(s) for s in row["similarities"]]
    chunk = ChunkMatch(
        names[0], row["chunks"][0], row["span_starts"][0], row["span_ends"][0], similarities[0]
    )
    return DenseHit(
        row["node_id"], float(row["score"]), chunk, dict(zip(names, similarities, strict=True))
    )


def _check_targets(targets: Sequence[VectorTarget]) -> list[VectorTarget]:
    if not targets:
        raise InvalidArgument("targets", "name at least one vector to search")
    if len(targets) > MAX_TARGETS:
        raise InvalidArgument("targets", f"at most {MAX_TARGETS} vectors may be searched at once")
    seen: set[str] = set()
    for i, target in enumerate(targets):
        if not target.name or "\x00" in target.name:
            raise InvalidArgument(f"targets[{i}].name", "must be a non-empty name")
        if target.name in seen:
            raise InvalidArgument(f"targets[{i}].name", f"{target.name!r} is named twice")
        if not math.isfinite(target.weight) or target.weight <= 0:
            raise InvalidArgument(f"targets[{i}].weight", "must be a positive number")
        seen.add(target.name)
    return list(targets)


def _check_vector(vector: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    q = np.asarray(vector, dtype=np.float32)
    if q.ndim != 1 or q.size == 0:
        raise InvalidArgument("vector", "must be a non-empty list of numbers")
    if not np.all(np.isfinite(q)):
        raise InvalidArgument("vector", "must hold finite numbers only")
    if not np.any(q):
        raise InvalidArgument("vector", "must not be all zeros (cosine similarity is undefined)")
    return q
