"""A node's vector in a space: the mean of its chunks' embeddings, as one SQL fragment
(:func:`mean_vector`) that every recommendation query uses, the batch read of it, and the
read of several names' means at once that a hybrid query's expansion makes."""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any

import asyncpg
import numpy as np

from semantic.core.spaces import vector_table
from semantic.store.postgres.db import as_array


def mean_vector(space_id: int, tenant: str, node_id: str, name: str) -> str:
    """A scalar subquery: the mean embedding named ``name`` of the node (``tenant``,
    ``node_id``) in the space's table, NULL when it has none. The three arguments are SQL
    expressions (column references or ``$n`` parameters), never values from input; the
    table name is built from the integer id."""
    return (
        f"(SELECT avg(v.embedding) FROM {vector_table(space_id)} v WHERE v.tenant = {tenant}"
        f" AND v.node_id = {node_id} AND v.name = {name})"
    )


async def node_vectors(
    conn: asyncpg.Connection, space_id: int, keys: Set[tuple[str, str]], name: str
) -> dict[tuple[str, str], np.ndarray[Any, Any]]:
    """Each (tenant, node id)'s vector ``name`` in the space; nodes without one left out."""
    if not keys:
        return {}
    ordered = sorted(keys)
    rows = await conn.fetch(
        "SELECT tenant, id, vector FROM (SELECT k.tenant, k.id,"
        f" {mean_vector(space_id, 'k.tenant', 'k.id', '$3')} AS vector"
        " FROM unnest($1::text[], $2::text[]) AS k(tenant, id)) AS m"
        " WHERE vector IS NOT NULL",
        [k[0] for k in ordered],
        [k[1] for k in ordered],
        name,
    )
    return {(r["tenant"], r["id"]): as_array(r["vector"]) for r in rows}


async def named_mean_vectors(
    conn: asyncpg.Connection,
    space_id: int,
    tenant: str,
    ids: Sequence[str],
    names: Sequence[str],
) -> dict[str, dict[str, np.ndarray[Any, Any]]]:
    """node id -> name -> the node's mean vector of that name, for ``ids`` x ``names`` of the
    tenant (pairs without vectors left out)."""
    if not ids or not names:
        return {}
    rows = await conn.fetch(
        "SELECT v.node_id, v.name, avg(v.embedding) AS vector"
        f" FROM {vector_table(space_id)} v"
        " WHERE v.tenant = $1 AND v.node_id = ANY($2::text[]) AND v.name = ANY($3::text[])"
        " GROUP BY v.node_id, v.name",
        tenant,
        list(dict.fromkeys(ids)),
        list(dict.fromkeys(names)),
    )
    out: dict[str, dict[str, np.ndarray[Any, Any]]] = {}
    for row in rows:
        out.setdefault(row["node_id"], {})[row["name"]] = as_array(row["vector"])
    return out
