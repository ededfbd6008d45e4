"""Recommend's candidate reads: the nearest nodes, the popular ones, what scoring needs of
each candidate, the final hits' full rows, and the user's latest journey items."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import numpy as np

from semantic.core.domain import Filter, NodeRecord, VectorTarget
from semantic.core.recommend.events import Action
from semantic.core.recommend.similarity import unit
from semantic.core.recommend.values import (
    COUNT_NAMES,
    CandidateDetails,
    RelatedVia,
    Similar,
    Wanted,
)
from semantic.core.spaces import vector_table
from semantic.store.postgres import dense
from semantic.store.postgres.db import as_array, utc
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.mean_vector import mean_vector
from semantic.store.postgres.node_rows import node_from_row, node_select

Vector = np.ndarray[Any, Any]


def _unit_or_none(value: Any) -> Vector | None:
    return unit(as_array(value)) if value is not None else None


async def nearest(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    vector: Vector,
    *,
    vector_name: str,
    flt: Filter,
    limit: int,
    ef_search: int,
    exact_threshold: int,
    halfvec_dim: int | None = None,
    wanted: Wanted | None = None,
) -> tuple[list[str], dict[str, CandidateDetails]]:
    """The ``limit`` nearest nodes to ``vector`` that pass ``flt``, nearest first, and with
    ``wanted`` the details of those the index scan's statement read beside them (all of
    them unless the search went exact).

    When ``flt`` only excludes ids (a user's seen, converted or dismissed nodes, the
    examples) and not more than ``limit`` of them, the index is scanned without a filter
    for ``limit`` + that many nodes and the excluded ones are dropped here: the same
    nodes, without counting the matching nodes and joining every index row to its node.
    """
    excluded = set(flt.exclude_ids)
    post_filter = replace(flt, exclude_ids=()).is_empty and len(excluded) <= limit
    sql, params = compile_filter(tenant, Filter() if post_filter else flt, start=1)
    beside = None
    if wanted is not None:
        columns, joins = _detail_sql(
            space_id,
            wanted,
            archetype="${archetype}",
            name="${vname}",
            to="${to}",
            scanned=wanted.vector_name == vector_name
            and _same_vector(wanted.similarity_to, vector),
        )
        values = _detail_params(wanted)
        beside = dense.Beside(columns, joins, dict(zip(_DETAIL_NAMES, values, strict=False)))
    hits = await dense.dense_search(
        conn,
        vector_table(space_id),
        tenant,
        vector,
        targets=(VectorTarget(vector_name),),
        filter_sql=sql,
        filter_params=params,
        limit=limit + len(excluded) if post_filter else limit,
        ef_search=max(ef_search, limit),
        exact_threshold=exact_threshold,
        filtered=not post_filter,
        halfvec_dim=halfvec_dim,
        beside=beside,
    )
    ids = [h.node_id for h in hits if h.node_id not in excluded][:limit]
    if beside is None or wanted is None:
        return ids, {}
    rows = beside.rows
    return ids, {i: _candidate(rows[i], wanted) for i in ids if i in rows and rows[i]["id"]}


def _with_similarity(wanted: Wanted) -> bool:
    return wanted.slim and wanted.similarity_to is not None


def _same_vector(a: Vector | None, b: Vector) -> bool:
    """Whether ``a`` is ``b`` as the database sees them (float32 values)."""
    if a is None:
        return False
    return a is b or np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def _detail_sql(
    space_id: int, wanted: Wanted, *, archetype: str, name: str, to: str, scanned: bool = False
) -> tuple[str, str]:
    """The columns and joins of a candidate's details over its node row ``n``: the node
    (slim or full), the similarity or the vector, the engagement counters and the
    archetype's score; ``archetype``, ``name`` and ``to`` are the SQL parameters holding
    the archetype, the vector name and the vector to compare with.

    ``scanned``: the columns are read beside an index scan for ``to`` itself
    (``dense.Beside``), whose hit row ``ranked`` holds the distance of the node's best
    chunk to it: the similarity of a node with that one chunk is read from there, and only
    a node with several chunks averages them (the mean of one vector is that vector, so
    the value is the same; the average cost a vector read per candidate)."""
    vector_sql = mean_vector(space_id, "n.tenant", "n.id", name)
    slim_columns = "n.tenant, n.id, n.content_type, n.updated_at"
    if not wanted.slim:
        columns = f"{node_select('n')}, NULL::float8 AS similarity, {vector_sql} AS vector"
    elif _with_similarity(wanted) and scanned:
        table = vector_table(space_id)
        columns = (
            f"{slim_columns}, 1.0 - CASE WHEN NOT EXISTS (SELECT FROM {table} o"
            f"   WHERE o.tenant = n.tenant AND o.node_id = n.id AND o.name = {name}"
            "   AND o.chunk <> ranked.chunk) THEN ranked.distance"
            f" ELSE {vector_sql} <=> {to} END AS similarity, NULL AS vector"
        )
    elif _with_similarity(wanted):
        columns = f"{slim_columns}, 1.0 - ({vector_sql} <=> {to}) AS similarity, NULL AS vector"
    else:
        columns = f"{slim_columns}, NULL::float8 AS similarity, NULL AS vector"
    columns += f", ARRAY[{_COUNTS}] AS counts, coalesce(a.score, 0) AS archetype_score"
    # Primary-key lookups per candidate (LIMIT 1 keeps the planner from joining the whole
    # engagement tables instead). No archetype ('') has no prior: planned for its value
    # (custom plans), the condition on it drops that lookup altogether.
    joins = (
        " LEFT JOIN LATERAL (SELECT * FROM semantic.node_engagement"
        "   WHERE tenant = n.tenant AND node_id = n.id LIMIT 1) AS e ON true"
        " LEFT JOIN LATERAL (SELECT score FROM semantic.archetype_engagement"
        f"   WHERE {archetype} <> '' AND tenant = n.tenant AND archetype = {archetype}"
        "   AND node_id = n.id LIMIT 1) AS a ON true"
    )
    return columns, joins


_DETAIL_NAMES = ("archetype", "vname", "to")
_COUNTS = ", ".join(f"coalesce(e.{name}, 0)" for name in COUNT_NAMES)
"""The engagement counters in the order of ``COUNT_NAMES`` (one array column)."""


def _detail_params(wanted: Wanted) -> tuple[Any, ...]:
    """The values of :func:`_detail_sql`'s parameters, in order (archetype, name, to),
    those it does not use left out."""
    if not wanted.slim:
        return (wanted.archetype, wanted.vector_name)
    if _with_similarity(wanted):
        return (wanted.archetype, wanted.vector_name, wanted.similarity_to)
    return (wanted.archetype,)


def _candidate(row: asyncpg.Record, wanted: Wanted) -> CandidateDetails:
    similarity = row["similarity"]
    return CandidateDetails(
        node=NodeRecord.partial(row["tenant"], row["id"], row["content_type"], row["updated_at"])
        if wanted.slim
        else node_from_row(row),
        counts=dict(zip(COUNT_NAMES, row["counts"], strict=True)),
        archetype_score=float(row["archetype_score"]),
        vector=_unit_or_none(row["vector"]),
        similarity=float(similarity) if similarity is not None else None,
        partial=wanted.slim,
    )


_POPULAR = (
    "(SELECT a.node_id, true AS from_archetype, a.score AS rank,"
    "  (SELECT max(score) FROM semantic.archetype_engagement"
    "   WHERE tenant = ${tenant} AND archetype = ${archetype}) AS best"
    " FROM semantic.archetype_engagement a"
    " JOIN semantic.nodes n ON n.tenant = a.tenant AND n.id = a.node_id"
    " WHERE a.tenant = ${tenant} AND a.archetype = ${archetype} AND {filter}"
    " ORDER BY a.score DESC LIMIT ${limit})"
    " UNION ALL"
    " (SELECT e.node_id, false, e.popularity, NULL"
    " FROM semantic.node_engagement e"
    " JOIN semantic.nodes n ON n.tenant = e.tenant AND n.id = e.node_id"
    " WHERE e.tenant = ${tenant} AND {filter} AND e.popularity > 0"
    " ORDER BY e.popularity DESC LIMIT ${limit})"
)


_NEWEST = (
    "(SELECT n.id AS node_id, false AS from_archetype, 0::double precision AS rank,"
    " NULL::double precision AS best"
    " FROM semantic.nodes n WHERE n.tenant = ${tenant} AND {filter}"
    " ORDER BY n.updated_at DESC, n.id LIMIT ${limit})"
)
"""The fill of a tenant with too few engaged nodes: its newest nodes. A statement of its
own, sent only when the popular ones fall short: as a branch of the popular statement
behind a one-time condition, PostgreSQL still planned it (a parallel scan and sort of the
tenant's nodes), and started its parallel worker on every call before the condition was
checked (5-6 ms a cold-start Recommend at 100k nodes)."""


async def popular(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    flt: Filter,
    *,
    limit: int,
    wanted: Wanted,
) -> tuple[list[tuple[str, bool]], float, dict[str, CandidateDetails]]:
    """Popular node ids (``wanted.archetype``'s first), the archetype's best score and
    the nodes' details, in one statement; where fewer than ``limit`` nodes have
    engagement (a new tenant, few events), the newest nodes follow (a second statement),
    so a cold start still answers top_k when that many pass the filters."""
    rows = await _with_details(conn, space_id, tenant, flt, _POPULAR, limit=limit, wanted=wanted)
    if len(rows) < limit:
        newest = await _with_details(
            conn, space_id, tenant, flt, _NEWEST, limit=limit, wanted=wanted
        )
        rows = [*rows, *newest]
    best = max((float(r["best"] or 0.0) for r in rows if r["from_archetype"]), default=0.0)
    details = {r["id"]: _candidate(r, wanted) for r in rows if r["id"] is not None}
    return [(r["node_id"], bool(r["from_archetype"])) for r in rows], best, details


async def _with_details(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    flt: Filter,
    found: str,
    *,
    limit: int,
    wanted: Wanted,
) -> list[asyncpg.Record]:
    """The rows of ``found`` (``node_id``, ``from_archetype``, a rank and ``best``; its
    ``{filter}``, ``${tenant}``, ``${archetype}`` and ``${limit}`` filled in), in its
    order, each with the details ``wanted`` asks of its node."""
    sql, params = compile_filter(tenant, flt, start=1)
    n = len(params)
    numbers = {"tenant": f"${n + 1}", "archetype": f"${n + 2}", "limit": f"${n + 3}"}
    found = found.replace("{filter}", sql)
    for name, number in numbers.items():
        found = found.replace(f"${{{name}}}", number)
    extra = _detail_params(wanted)[1:]  # the archetype is ${n + 2} already
    columns, joins = _detail_sql(
        space_id,
        wanted,
        archetype=numbers["archetype"],
        name=f"${n + 4}",
        to=f"${n + 5}",
    )
    rows: list[asyncpg.Record] = await conn.fetch(
        f"WITH p AS MATERIALIZED ({found}),"
        " o AS (SELECT p.*, row_number() OVER () AS at FROM p)"
        f" SELECT o.node_id, o.from_archetype, o.best, {columns}"
        " FROM o LEFT JOIN semantic.nodes n ON n.tenant = $"
        f"{n + 1} AND n.id = o.node_id{joins}"
        " ORDER BY o.at",
        *params,
        tenant,
        wanted.archetype or "",
        limit,
        *extra,
    )
    return rows


async def details(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    ids: Sequence[str],
    wanted: Wanted,
) -> dict[str, CandidateDetails]:
    """What scoring needs of each candidate (:class:`Wanted`; deleted nodes left out)."""
    if not ids:
        return {}
    columns, joins = _detail_sql(space_id, wanted, archetype="$3", name="$4", to="$5")
    rows = await conn.fetch(
        f"SELECT {columns} FROM semantic.nodes n{joins}"
        " WHERE n.tenant = $1 AND n.id = ANY($2::text[])",
        tenant,
        list(ids),
        *_detail_params(wanted),
    )
    return {r["id"]: _candidate(r, wanted) for r in rows}


async def complete(
    conn: asyncpg.Connection, space_id: int, tenant: str, vector_name: str, ids: Sequence[str]
) -> dict[str, tuple[NodeRecord, Vector | None]]:
    """The full node rows and unit vectors of ``ids`` (deleted nodes left out)."""
    rows = await conn.fetch(
        f"SELECT {node_select('n')},"
        f" {mean_vector(space_id, 'n.tenant', 'n.id', '$3')} AS vector"
        " FROM semantic.nodes n WHERE n.tenant = $1 AND n.id = ANY($2::text[])",
        tenant,
        list(ids),
        vector_name,
    )
    return {r["id"]: (node_from_row(r), _unit_or_none(r["vector"])) for r in rows}


async def journey_items(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    *,
    user_id: str,
    vector_name: str,
    limit: int,
) -> list[tuple[Similar, Vector]]:
    """The user's ``limit`` latest nodes acted on more than by an impression, with unit
    vectors (nodes without one left out)."""
    rows = await conn.fetch(
        "SELECT s.node_id, s.strongest, s.last_at, s.dismissed, n.slug, n.title,"
        f" {mean_vector(space_id, 's.tenant', 's.node_id', '$5')} AS vector"
        " FROM semantic.user_nodes s JOIN semantic.nodes n"
        "   ON n.tenant = s.tenant AND n.id = s.node_id"
        " WHERE s.tenant = $1 AND s.user_id = $2 AND s.strongest > $3"
        " ORDER BY s.last_at DESC LIMIT $4",
        tenant,
        user_id,
        int(Action.IMPRESSION),
        limit,
        vector_name,
    )
    items = []
    for r in rows:
        if r["vector"] is None:
            continue
        item = Similar(
            node_id=r["node_id"],
            slug=r["slug"] or "",
            title=r["title"],
            similarity=0.0,
            action=int(r["strongest"]),
            occurred_at=utc(r["last_at"]),
            negative=bool(r["dismissed"]),
        )
        items.append((item, unit(as_array(r["vector"]))))
    return items


async def related(
    conn: asyncpg.Connection, tenant: str, user_id: str, flt: Filter, recent: int
) -> tuple[RelatedVia, ...]:
    """Where the user's recent nodes lead
    (:meth:`~semantic.core.recommend.ports.RecommendSession.related`)."""
    sql, params = compile_filter(tenant, flt, start=1)
    n = len(params)
    rows = await conn.fetch(
        "WITH recent AS (SELECT s.node_id FROM semantic.user_nodes s"
        f"  WHERE s.tenant = ${n + 1} AND s.user_id = ${n + 2} AND s.strongest > ${n + 3}"
        f"  AND NOT s.dismissed ORDER BY s.last_at DESC LIMIT ${n + 4}),"
        " edges AS ("
        "  SELECT r.source_id AS from_id, r.target_id AS node_id, r.type, r.strength"
        "  FROM semantic.relations r JOIN recent ON recent.node_id = r.source_id"
        f"  WHERE r.tenant = ${n + 1} AND r.type = 'prerequisite' AND NOT r.discovered"
        "  UNION ALL"
        "  SELECT r.target_id, r.source_id, r.type, r.strength"
        "  FROM semantic.relations r JOIN recent ON recent.node_id = r.target_id"
        f"  WHERE r.tenant = ${n + 1} AND r.type = 'follows' AND NOT r.discovered)"
        " SELECT e.from_id, e.node_id, e.type, e.strength FROM edges e"
        " JOIN semantic.nodes n ON n.tenant = $1 AND n.id = e.node_id"
        f" WHERE {sql} AND e.strength > 0"
        " ORDER BY e.strength DESC, e.node_id, e.from_id LIMIT 1000",
        *params,
        tenant,
        user_id,
        int(Action.IMPRESSION),
        recent,
    )
    return tuple(
        RelatedVia(r["node_id"], r["from_id"], r["type"], float(r["strength"])) for r in rows
    )
