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
    RelationSignals,
    Similar,
)
from semantic.core.spaces import vector_table
from semantic.store.postgres import dense
from semantic.store.postgres.db import as_array
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
) -> list[str]:
    """The ``limit`` nearest nodes to ``vector`` that pass ``flt``, nearest first.

    When ``flt`` only excludes ids (a user's seen, converted or dismissed nodes, the
    examples) and not more than ``limit`` of them, the index is scanned without a filter
    for ``limit`` + that many nodes and the excluded ones are dropped here: the same
    nodes, without counting the matching nodes and joining every index row to its node.
    """
    excluded = set(flt.exclude_ids)
    post_filter = replace(flt, exclude_ids=()).is_empty and len(excluded) <= limit
    sql, params = compile_filter(tenant, Filter() if post_filter else flt, start=1)
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
    )
    return [h.node_id for h in hits if h.node_id not in excluded][:limit]


async def popular(
    conn: asyncpg.Connection, tenant: str, flt: Filter, archetype: str, limit: int
) -> tuple[list[tuple[str, bool]], float]:
    """Popular node ids (archetype first) and the archetype's best score."""
    sql, params = compile_filter(tenant, flt, start=1)
    n = len(params)
    rows = await conn.fetch(
        "(SELECT a.node_id, true AS from_archetype, a.score AS rank,"
        f"  (SELECT max(score) FROM semantic.archetype_engagement"
        f"   WHERE tenant = ${n + 1} AND archetype = ${n + 2}) AS best"
        " FROM semantic.archetype_engagement a"
        " JOIN semantic.nodes n ON n.tenant = a.tenant AND n.id = a.node_id"
        f" WHERE a.tenant = ${n + 1} AND a.archetype = ${n + 2} AND {sql}"
        f" ORDER BY a.score DESC LIMIT ${n + 3})"
        " UNION ALL"
        " (SELECT e.node_id, false, e.popularity, NULL"
        " FROM semantic.node_engagement e"
        " JOIN semantic.nodes n ON n.tenant = e.tenant AND n.id = e.node_id"
        f" WHERE e.tenant = ${n + 1} AND {sql} AND e.popularity > 0"
        f" ORDER BY e.popularity DESC LIMIT ${n + 3})",
        *params,
        tenant,
        archetype or "",
        limit,
    )
    best = max((float(r["best"] or 0.0) for r in rows if r["from_archetype"]), default=0.0)
    return [(r["node_id"], bool(r["from_archetype"])) for r in rows], best


async def details(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    *,
    vector_name: str,
    archetype: str,
    ids: Sequence[str],
    slim: bool,
    similarity_to: Vector | None,
) -> dict[str, CandidateDetails]:
    """What scoring needs of each candidate: ``slim``, only the node's id, type and
    update time (:func:`complete` reads the rest for the final hits) and, given
    ``similarity_to``, the cosine of the node's vector (mean of its chunks) to it;
    else the full node row and its vector."""
    if not ids:
        return {}
    vector_sql = mean_vector(space_id, "n.tenant", "n.id", "$4")
    slim_columns = "n.tenant, n.id, n.content_type, n.updated_at"
    extra: tuple[Any, ...] = (vector_name,)
    if not slim:
        columns = f"{node_select('n')}, NULL::float8 AS similarity, {vector_sql} AS vector"
    elif similarity_to is not None:
        columns = f"{slim_columns}, 1.0 - ({vector_sql} <=> $5) AS similarity, NULL AS vector"
        extra = (vector_name, similarity_to)
    else:
        columns = f"{slim_columns}, NULL::float8 AS similarity, NULL AS vector"
        extra = ()
    rows = await conn.fetch(
        f"SELECT {columns}, coalesce(e.impressions, 0) AS impressions,"
        " coalesce(e.views, 0) AS views, coalesce(e.clicks, 0) AS clicks,"
        " coalesce(e.likes, 0) AS likes, coalesce(e.conversions, 0) AS conversions,"
        " coalesce(e.dismissals, 0) AS dismissals, coalesce(a.score, 0) AS archetype_score"
        " FROM semantic.nodes n"
        # Primary-key lookups per candidate (LIMIT 1 keeps the planner from joining
        # the whole engagement tables instead).
        " LEFT JOIN LATERAL (SELECT * FROM semantic.node_engagement"
        "   WHERE tenant = n.tenant AND node_id = n.id LIMIT 1) AS e ON true"
        " LEFT JOIN LATERAL (SELECT score FROM semantic.archetype_engagement"
        "   WHERE tenant = n.tenant AND archetype = $3 AND node_id = n.id LIMIT 1) AS a"
        "   ON true"
        " WHERE n.tenant = $1 AND n.id = ANY($2::text[])",
        tenant,
        list(ids),
        archetype or "",
        *extra,
    )
    out = {}
    for r in rows:
        similarity = r["similarity"]
        out[r["id"]] = CandidateDetails(
            node=NodeRecord(
                tenant=r["tenant"],
                id=r["id"],
                content_type=r["content_type"],
                updated_at=r["updated_at"],
            )
            if slim
            else node_from_row(r),
            counts={k: int(r[k]) for k in COUNT_NAMES},
            archetype_score=float(r["archetype_score"]),
            vector=_unit_or_none(r["vector"]),
            similarity=float(similarity) if similarity is not None else None,
            partial=slim,
        )
    return out


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
            occurred_at=r["last_at"],
            negative=bool(r["dismissed"]),
        )
        items.append((item, unit(as_array(r["vector"]))))
    return items


async def relation_signals(
    conn: asyncpg.Connection,
    tenant: str,
    user_id: str,
    flt: Filter,
    recent: int,
    *,
    related: bool,
) -> RelationSignals:
    """Where the user's recent nodes lead and what conflicts with their conversions
    (:meth:`~semantic.core.recommend.ports.RecommendSession.relation_signals`)."""
    sql, params = compile_filter(tenant, flt, start=1)
    n = len(params)
    leads: list[RelatedVia] = []
    if related:
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
        leads = [
            RelatedVia(r["node_id"], r["from_id"], r["type"], float(r["strength"])) for r in rows
        ]
    conflicts = await conn.fetch(
        "SELECT DISTINCT CASE WHEN r.source_id = s.node_id THEN r.target_id"
        " ELSE r.source_id END AS node_id, s.node_id AS converted"
        " FROM semantic.user_nodes s JOIN semantic.relations r"
        "   ON r.tenant = s.tenant AND r.type = 'conflicts'"
        "   AND (r.source_id = s.node_id OR r.target_id = s.node_id)"
        " WHERE s.tenant = $1 AND s.user_id = $2 AND s.converted"
        " ORDER BY 1, 2 LIMIT 1000",
        tenant,
        user_id,
    )
    return RelationSignals(
        related=tuple(leads),
        conflicts=tuple((r["node_id"], r["converted"]) for r in conflicts),
    )
