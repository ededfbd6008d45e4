"""The dense search's SQL text: the index scan and the exact path, rendered once per shape.

:mod:`semantic.store.postgres.dense` runs them; this module only writes them. Parameters:
a filter's fragment (``filters.compile_filter``) numbers its own ``$1..$m``; the
statements' own parameters are named (``${q}``, ``${tenant}``, ...) and numbered after
them by :class:`Sql`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from semantic.store.postgres.node_rows import node_select

# {filter}: the fragment of filters.compile_filter, parameters $1..$m; ${...}: ours, after.
TUNE = """
SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true),
       set_config('plan_cache_mode', 'force_custom_plan', true),
       set_config('hnsw.ef_search', $1::int::text, true),
       set_config('hnsw.max_scan_tuples', $2::int::text, true)
"""
SET_EF = "SELECT set_config('hnsw.ef_search', $1::int::text, false)"

# Whether the statement ran with the settings this search needs (read back, not assumed):
# all of them (tuned), or all but ef_search (pooled: a search pool's connection).
_POOLED = """coalesce(
        current_setting('hnsw.iterative_scan', true) = 'relaxed_order'
        AND current_setting('hnsw.max_scan_tuples', true)::int = ${max_scan}
        AND current_setting('plan_cache_mode') = 'force_custom_plan', false)"""
_TUNED = f"""({_POOLED}
        AND coalesce(current_setting('hnsw.ef_search', true)::int = ${{ef}}, false))"""

# With a filter: count the matching nodes up to ${cap}; the index is scanned only when the
# count reaches it (a one-time gating condition, evaluated before the scan starts).
_GATE_CTE = """matching AS (
    SELECT count(*) AS n FROM (SELECT 1 FROM semantic.nodes n WHERE {filter} LIMIT ${cap}) AS m
),
"""
_GATE = " AND (SELECT matching.n FROM matching) >= ${cap}"

# The rows the index scan reads: with a filter, joined to the nodes it tests; without one
# (the tenant alone), the vector table only.
_FILTERED_SOURCE = """{table} v
    JOIN semantic.nodes n ON n.tenant = v.tenant AND n.id = v.node_id
    WHERE v.tenant = ${tenant} AND v.name = ${name} AND {filter}{gate}"""
_UNFILTERED_SOURCE = "{table} v WHERE v.tenant = ${tenant} AND v.name = ${name}"

_INDEX_SCAN = """
WITH {gate_cte}chunk AS MATERIALIZED (
    SELECT v.node_id, v.chunk, v.span_start, v.span_end, v.embedding <=> ${q} AS distance
    FROM {source}
    ORDER BY {index_order}
    LIMIT ${fetch}
),
best AS (
    SELECT DISTINCT ON (node_id) node_id, chunk, span_start, span_end, distance
    FROM chunk ORDER BY node_id, distance
),
ranked AS (
    SELECT best.*, row_number() OVER (ORDER BY distance, node_id) AS rank
    FROM best ORDER BY distance, node_id LIMIT ${limit}
)
SELECT ranked.node_id, ranked.chunk, ranked.span_start, ranked.span_end, ranked.distance,
       (SELECT count(*) FROM chunk) AS fetched, (SELECT count(*) FROM best) AS distinct_nodes,
       {matching} AS matching, {tuned} AS tuned, {pooled} AS pooled,
       {nodes}
FROM (SELECT 1) AS one
LEFT JOIN ranked ON true
LEFT JOIN semantic.nodes n
    ON ranked.rank > ${attach}::bigint AND n.tenant = ${tenant} AND n.id = ranked.node_id{joins}
ORDER BY ranked.rank
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
),
ranked AS (
    SELECT scored.*, row_number() OVER (ORDER BY score DESC, node_id) AS rank
    FROM scored ORDER BY score DESC, node_id LIMIT ${limit}
)
SELECT ranked.*, {nodes}
FROM ranked
LEFT JOIN semantic.nodes n
    ON ranked.rank > ${attach}::bigint AND n.tenant = ${tenant} AND n.id = ranked.node_id
ORDER BY ranked.rank
"""

# A local-first search (``local_first.candidate_search``), one statement: whether the change log
# can vouch for the local index (``usable``: the change-log table the index followed, no
# transaction behind its cursor), the nodes the log names since the cursor (of this tenant,
# in this space or in semantic.nodes; ``changed``, ${over} at most: more means the index
# has not caught up with a burst of writes), every chunk of those of them that exist and
# pass the filter with its distance to the query and the node's row, and the rows of the
# index's nearest candidates (``ids``). Which nodes make the page is decided by the caller:
# a candidate the log does not name keeps the distance the index computed.
_CANDIDATES = """
WITH changed AS MATERIALIZED (
    SELECT DISTINCT c.node_id FROM semantic.node_changes c
    WHERE c.xid >= ${cursor}::bigint::text::xid8
      AND (c.tenant = ${tenant} OR c.node_id = '')
      AND (c.space_id IS NULL OR c.space_id = ${space})
    LIMIT ${over}
)
SELECT r.*,
       'semantic.node_changes'::regclass::oid::bigint = ${origin}
           AND pg_snapshot_xmin(pg_current_snapshot())::text::bigint >= ${cursor} AS usable,
       ARRAY(SELECT changed.node_id FROM changed) AS changed
FROM (SELECT 1) AS one
LEFT JOIN (
    SELECT v.node_id, v.chunk, v.span_start, v.span_end, v.embedding <=> ${q} AS distance,
           {nodes}
    FROM changed JOIN semantic.nodes n ON {filter} AND n.id = changed.node_id
    JOIN {table} v ON v.tenant = ${tenant} AND v.node_id = n.id AND v.name = ${name}
    UNION ALL
    SELECT n.id, NULL, NULL, NULL, NULL, {nodes}
    FROM semantic.nodes n WHERE n.tenant = ${tenant} AND n.id = ANY(${ids}::text[])
) AS r ON true
"""

NODES = node_select("n")


class Sql:
    """A statement's parameters: the filter's first ($1..$m), then named ones after them."""

    def __init__(self, filter_params: Sequence[Any]) -> None:
        self.params: list[Any] = list(filter_params)
        self.numbers: dict[str, str] = {}

    def bind(self, **values: Any) -> Sql:
        for name, value in values.items():
            self.params.append(value)
            self.numbers[name] = str(len(self.params))
        return self

    def render(self, template: str, **fragments: str) -> str:
        return template.format(**self.numbers, **fragments)


_SCAN_PARAMS = ("q", "tenant", "name", "fetch", "limit", "ef", "max_scan", "attach")
"""The index scan's own parameters, numbered in this order after the filter's (then
``cap`` when the scan is gated, then those of a :class:`Beside`)."""
SCAN_NAMES = frozenset((*_SCAN_PARAMS, "cap"))


@functools.lru_cache(maxsize=1024)
def index_scan_text(
    table: str,
    filter_sql: str,
    *,
    filtered: bool,
    filter_params: int,
    gated: bool,
    halfvec_dim: int | None,
    beside: tuple[str, str, tuple[str, ...]] | None = None,
) -> tuple[str, tuple[str, ...]]:
    """The index scan's SQL, rendered once per shape, and the names of the parameters it
    takes after the filter's ``filter_params``, in order; ``beside``:
    :meth:`Beside.shape`."""
    names = (*_SCAN_PARAMS, "cap") if gated else _SCAN_PARAMS
    columns, joins = NODES, ""
    if beside is not None:
        columns, joins, own = beside
        names = (*names, *own)
    sql = Sql([None] * filter_params).bind(**dict.fromkeys(names))
    source = _FILTERED_SOURCE if filtered else _UNFILTERED_SOURCE
    text = sql.render(
        _INDEX_SCAN,
        source=sql.render(
            source,
            table=table,
            filter=filter_sql,
            gate=sql.render(_GATE) if gated else "",
        ),
        gate_cte=sql.render(_GATE_CTE, filter=filter_sql) if gated else "",
        matching="(SELECT matching.n FROM matching)" if gated else "NULL::bigint",
        tuned=sql.render(_TUNED),
        pooled=sql.render(_POOLED),
        nodes=sql.render(columns),
        joins=sql.render(joins) if joins else "",
        index_order=_index_order(sql.numbers["q"], halfvec_dim),
    )
    return text, names


def _index_order(q: str, halfvec_dim: int | None) -> str:
    """The ORDER BY of the index scan: the expression the space's HNSW index is built on
    (``spaces.hnsw_key``) against the query parameter ``$q``."""
    if halfvec_dim is None:
        return f"v.embedding <=> ${q}"
    d = int(halfvec_dim)
    return f"v.embedding::halfvec({d}) <=> ${q}::vector::halfvec({d})"


def exact_statement(
    table: str,
    filter_sql: str,
    filter_params: Sequence[Any],
    *,
    ids: list[str] | None,
    q: np.ndarray[Any, Any],
    tenant: str,
    names: list[str],
    weights: list[float],
    limit: int,
    attach: int | None,
) -> tuple[str, list[Any]]:
    """The exact path's SQL and parameters: scores over the nodes matching the filter, or
    over exactly ``ids``."""
    if ids is None:
        sql = Sql(filter_params)
        matching = _MATCHING_BY_FILTER.format(filter=filter_sql)
    else:
        sql = Sql(()).bind(ids=ids)
        matching = sql.render(_MATCHING_BY_ID)
    sql.bind(
        q=q,
        tenant=tenant,
        names=names,
        weights=weights,
        total_weight=math.fsum(weights),
        limit=limit,
        attach=attach,
    )
    return sql.render(_EXACT, table=table, matching=matching, nodes=NODES), sql.params


_CANDIDATE_PARAMS = (
    "cursor",
    "tenant",
    "space",
    "over",
    "q",
    "name",
    "ids",
    "origin",
)


@functools.lru_cache(maxsize=256)
def candidate_text(table: str, filter_sql: str, filter_params: int) -> tuple[str, tuple[str, ...]]:
    """A local-first search's SQL (``_CANDIDATES``), rendered once per shape, and the names of
    the parameters it takes after the filter's ``filter_params``, in order."""
    sql = Sql([None] * filter_params).bind(**dict.fromkeys(_CANDIDATE_PARAMS))
    return sql.render(_CANDIDATES, table=table, filter=filter_sql, nodes=NODES), _CANDIDATE_PARAMS
