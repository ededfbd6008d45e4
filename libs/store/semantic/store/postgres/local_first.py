"""A local-first dense search's statement in PostgreSQL: the change log's verdict on the
local index, the nodes changed since its sync scored exactly, and the page's rows
(``semantic.core.local_first`` has the design; the SQL is
``dense_statements._CANDIDATES``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.core.degraded import LocalCandidate, LocalCandidates
from semantic.core.domain import DenseHit
from semantic.store.postgres.dense import check_table, dense_hit
from semantic.store.postgres.dense_inputs import checked_vector
from semantic.store.postgres.dense_statements import candidate_text
from semantic.store.postgres.node_rows import node_from_row

ROWS_MARGIN = 8
"""A local-first search reads the rows of this many candidates beyond the page: enough for
the page when a few of the index's nearest nodes changed since its sync."""


async def candidate_search(
    conn: asyncpg.Connection,
    space_table: str,
    space_id: int,
    tenant: str,
    query_vector: np.ndarray[Any, Any],
    *,
    name: str,
    filter_sql: str,
    filter_params: Sequence[Any],
    candidates: LocalCandidates,
    max_changed: int,
    limit: int,
    attach_after: int | None = None,
) -> list[DenseHit] | None:
    """The ``limit`` nodes nearest ``query_vector`` among a local index's ``candidates`` (the
    distances it computed standing for the nodes the change log does not name since its
    cursor) and the nodes the log names, scored exactly with the filter applied, best first,
    node rows attached after ``attach_after`` hits, from one statement; None when the log
    cannot say which nodes changed since the cursor, more than ``max_changed`` did, or a row
    the page needs is not there (an index scan must answer then)."""
    check_table(space_table)
    q = checked_vector(query_vector)
    if limit <= 0:
        return []
    over = max(0, int(max_changed)) + 1
    found = candidates.found
    text, names = candidate_text(space_table, filter_sql, len(filter_params))
    values = {
        "cursor": int(candidates.cursor),
        "tenant": tenant,
        "space": int(space_id),
        "over": over,
        "q": q,
        "name": name,
        "ids": [c.node_id for c in found[: limit + ROWS_MARGIN]],
        "origin": int(candidates.origin),
    }
    try:
        rows = await conn.fetch(text, *filter_params, *(values[n] for n in names))
    except asyncpg.DataError as exc:
        if "different vector dimensions" in str(exc):
            raise InvalidArgument("vector", f"dimension does not match the space: {exc}") from exc
        raise
    head = rows[0]
    changed = set(head["changed"])
    if not head["usable"] or len(changed) >= over or "" in changed:
        return None
    held: dict[str, asyncpg.Record] = {}
    fresh: dict[str, asyncpg.Record] = {}
    for row in rows:
        node_id = row["node_id"]
        if node_id is None:
            continue
        if row["distance"] is None:
            held[node_id] = row
            continue
        best = fresh.get(node_id)
        if best is None or (row["distance"], row["chunk"]) < (best["distance"], best["chunk"]):
            fresh[node_id] = row
    ranked: list[tuple[float, str, tuple[int, int, int], asyncpg.Record | None]] = [
        (c.distance, c.node_id, _chunk(c), held.get(c.node_id))
        for c in found
        if c.node_id not in changed
    ]
    ranked += [
        (float(r["distance"]), node_id, (r["chunk"], r["span_start"], r["span_end"]), r)
        for node_id, r in fresh.items()
    ]
    ranked.sort(key=lambda item: (item[0], item[1]))
    floor = attach_after if attach_after is not None else limit
    hits: list[DenseHit] = []
    for rank, (distance, node_id, chunk, row) in enumerate(ranked[:limit], start=1):
        wanted = rank > floor
        if wanted and row is None:
            return None  # a candidate beyond the rows read, or gone unlogged: distrust
        node = node_from_row(row) if wanted and row is not None else None
        hits.append(dense_hit(node_id, name, distance, chunk, node))
    return hits


def _chunk(candidate: LocalCandidate) -> tuple[int, int, int]:
    return (candidate.chunk, candidate.span_start, candidate.span_end)
