"""The dense side: nearest nodes to a query vector in one space's table, filters never shrinking.

A node's similarity for one named vector is its best chunk's cosine similarity
(``1 - (embedding <=> q)``). With several targets the node's score is
``sum(weight * similarity) / sum(weights)`` over the targets, a target the node has no vector
for counting as 0. The best chunk reported is the one contributing most (weight x similarity).

How a query runs (one round trip in the common case):

1. The HNSW settings (``hnsw.iterative_scan = relaxed_order``, ``hnsw.ef_search``,
   ``hnsw.max_scan_tuples``, ``plan_cache_mode = force_custom_plan``) are expected on the
   connection already: the search pool sets them when it connects (``db.session_settings``,
   via ``db.create_pool``), and since they are start-up values the pool's ``RESET ALL`` keeps
   them. Every index scan reads back the settings it ran with; on a connection that lacks
   them the search runs again in a transaction that sets them with ``set_config(..., true)``
   (three more round trips). A search-pool connection that has them all but another
   ``ef_search`` (a ``limit`` above it, a space big enough for a wider search:
   ``table_sizes``) gets that one as its session's value instead (one round trip, paid
   once per connection and value). The connection remembers the value its session has
   (``PooledConnection.ef_search``, back to the start-up value when a lease that is not
   read-only resets the session), so the round trip comes before the search rather
   than after a search run with the wrong one. The answer never depends on how the
   connection was configured, only its cost does.
2. Without a filter (the tenant alone) the HNSW index scan runs directly, over the vector
   table alone (its rows carry the tenant; the node rows come with step 4). With one, the same
   statement first counts the matching nodes up to ``exact_threshold + 1`` and only scans the
   index when more match (a gating condition: the index is not touched otherwise); at most
   ``exact_threshold`` matching nodes are searched exactly: they are materialised, joined to
   the vector table by its primary key prefix (tenant, node_id) and every chunk's distance is
   computed.
3. The HNSW index scan applies the filter through the join to ``semantic.nodes``. Iterative
   scanning keeps it going until enough rows pass the filter. Chunk rows are over-fetched (a
   node may have several chunks) and reduced to nodes; when too few nodes come back the fetch
   grows, and when the index scan ends early (its tuple budget is spent or the graph is
   exhausted, as in a small table) the search falls back to the exact path. A filter therefore
   never silently shrinks the result. Several targets: each target's nearest nodes are
   gathered this way and the union is scored exactly.
4. A space whose HNSW index is half precision (``spaces.hnsw_key``: the index is built on
   ``embedding::halfvec(dim)``) is scanned in the order of that expression
   (``v.embedding::halfvec(dim) <=> q::halfvec(dim)``, ``halfvec_dim``), the only order
   that uses the index; the distance reported, and the order of the nodes returned, are
   the exact ones (``v.embedding <=> q``): the over-fetched rows are re-ranked by them.
5. ``attach_after``: the node rows of the hits ranked after that many are read in the same
   statement (``DenseHit.node``), so a dense search needs no second query for them.

The statements' text is written by :mod:`semantic.store.postgres.dense_statements`.
The vector table's name comes from ``semantic.core.spaces.vector_table`` (an integer id), never
from input.
The connection must have the pgvector codec registered (``pgvector.asyncpg.register_vector``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.core.domain import ChunkMatch, DenseHit, NodeRecord, VectorTarget, assembled
from semantic.store.postgres.db import DEFAULT_MAX_SCAN_TUPLES, MAX_EF_SEARCH
from semantic.store.postgres.dense_inputs import checked_targets, checked_vector
from semantic.store.postgres.dense_statements import (
    SCAN_NAMES,
    SET_EF,
    TUNE,
    exact_statement,
    index_scan_text,
)
from semantic.store.postgres.node_rows import node_from_row

FIRST_FETCH_PER_NODE = 3
"""Chunk rows fetched per wanted node on the first index scan of a table not seen yet."""
FETCH_MARGIN = 1.25
"""The first fetch asks this much more than the chunk rows per node seen so far predict."""
_DENSITY_WEIGHT = 0.2
_rows_per_node: dict[tuple[str, str], float] = {}
"""(table, vector name) -> chunk rows per distinct node among the rows recent index scans
fetched (a moving average). Every row an index scan fetches beyond ``ef_search`` costs a
further step of the graph walk: asking 3 rows per wanted node of a table whose nodes have
one chunk each made a 100-candidate scan (recommendations) 2.5 times slower than needed.
A fetch that falls short grows (``FETCH_GROWTH``), so an estimate that is too low costs a
second statement, never a wrong answer."""
FETCH_GROWTH = 4
MAX_INDEX_FETCH = 20_000
"""Beyond this many chunk rows the exact path is cheaper than growing the index scan."""

_TABLE = re.compile(r"^semantic\.vectors_[0-9]+$")


def check_table(space_table: str) -> None:
    """Refuse a table name that ``spaces.vector_table`` did not make (a programming error)."""
    if not _TABLE.match(space_table):
        raise ValueError(f"{space_table!r} is not a vector table name from spaces.vector_table")


@dataclass
class Beside:
    """What an index scan reads beside each hit, in its own statement, in place of the
    node row: ``columns`` over the hit's node row ``n``, its hit row ``ranked`` (``chunk``,
    the best chunk, and its ``distance``) and the tables ``joins`` adds
    (``LEFT JOIN LATERAL ... ON true``, after the node row's join); both name their own
    parameters ``${name}``, valued by ``params``. The rows are collected in ``rows`` by
    node id (the hits carry no node then); a search that ends on the exact path collects
    none, so the caller reads what is missing itself."""

    columns: str
    joins: str
    params: Mapping[str, Any]
    rows: dict[str, asyncpg.Record] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not SCAN_NAMES.isdisjoint(self.params):
            raise ValueError(f"beside parameters {sorted(self.params)} clash with the scan's")

    def shape(self) -> tuple[str, str, tuple[str, ...]]:
        """What the statement's text depends on (its cache key)."""
        return self.columns, self.joins, tuple(self.params)


class _Untuned(Exception):
    """The connection lacks the HNSW settings the search needs; run again with them."""

    def __init__(self, pooled: bool) -> None:
        super().__init__()
        self.pooled = pooled
        """Only ``ef_search`` differs (a search pool's connection)."""


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
    filtered: bool = True,
    attach_after: int | None = None,
    halfvec_dim: int | None = None,
    beside: Beside | None = None,
) -> list[DenseHit]:
    """The ``limit`` nodes most similar to ``query_vector``, best first.

    ``filter_sql`` / ``filter_params`` come from ``filters.compile_filter(..., start=1)``;
    ``filtered=False`` says they hold the tenant alone: the matching nodes are not counted.
    ``exact_threshold``: when at most this many nodes match the filter, search exactly.
    ``attach_after``: read the node rows of the hits ranked after this many (``None``: none).
    ``query_vector`` must have the space's dimension; a mismatch is an ``InvalidArgument``.
    ``halfvec_dim``: the space's dimension when its HNSW index is half precision
    (``spaces.halfvec_dim``); None for a float32 index.
    ``beside``: columns read beside every hit of an index scan instead of its node row
    (:class:`Beside`; ``attach_after`` does not apply then).
    """
    check_table(space_table)
    if not filtered and len(filter_params) != 1:
        raise ValueError("filtered=False is for a filter that holds the tenant alone")
    chosen = checked_targets(targets)
    q = checked_vector(query_vector)
    if halfvec_dim is not None and q.size != halfvec_dim:
        raise InvalidArgument(
            "vector", f"dimension does not match the space: {q.size}, not {halfvec_dim}"
        )
    if limit <= 0:
        return []
    search = _DenseQuery(
        conn,
        space_table,
        tenant,
        q,
        chosen,
        limit,
        filter_sql,
        filter_params,
        filtered=filtered,
        cap=max(0, int(exact_threshold)) + 1,
        ef=max(1, min(int(ef_search), MAX_EF_SEARCH)),
        max_scan=max(1, int(max_scan_tuples)),
        attach=attach_after,
        halfvec_dim=halfvec_dim,
        beside=beside,
    )
    try:
        return await _tuned(search)
    except asyncpg.DataError as exc:
        if "different vector dimensions" in str(exc):
            raise InvalidArgument("vector", f"dimension does not match the space: {exc}") from exc
        raise


async def _tuned(search: _DenseQuery) -> list[DenseHit]:
    """Run ``search`` with the settings it needs (module doc, step 1)."""
    conn = search.conn
    known = getattr(conn, "ef_search", None)  # a pool's connection's record
    if known is not None and known != search.ef:
        await _set_ef(conn, search.ef)  # known to differ: set before, not after a search
    try:
        try:
            return await search.run()
        except _Untuned as untuned:
            if not untuned.pooled:
                raise
            await _set_ef(conn, search.ef)
            return await search.run()
    except _Untuned:
        async with conn.transaction():
            await conn.execute(TUNE, search.ef, search.max_scan)
            return await search.run()


async def _set_ef(conn: asyncpg.Connection, ef: int) -> None:
    """``ef`` as the session's ``hnsw.ef_search`` (kept by a pool's read-only leases)."""
    await conn.execute(SET_EF, ef)
    note = getattr(conn, "note_ef_search", None)  # a pool's connection (PooledConnection)
    if note is not None:
        note(ef)


async def explain_index_scan(
    conn: asyncpg.Connection,
    space_table: str,
    tenant: str,
    query_vector: np.ndarray[Any, Any],
    *,
    target: VectorTarget,
    filter_sql: str,
    filter_params: Sequence[Any],
    limit: int,
    filtered: bool = True,
    halfvec_dim: int | None = None,
) -> list[str]:
    """The plan (``EXPLAIN``, one line per row) of the first index-scan statement
    :func:`dense_search` runs with these arguments: whether it reaches the space's HNSW
    index (``Index Scan using vectors_<id>_hnsw``) is the question it answers."""
    check_table(space_table)
    search = _DenseQuery(
        conn,
        space_table,
        tenant,
        checked_vector(query_vector),
        [target],
        limit,
        filter_sql,
        filter_params,
        filtered=filtered,
        cap=1,
        ef=1,
        max_scan=1,
        attach=None,
        halfvec_dim=halfvec_dim,
        beside=None,
    )
    fetch = max(limit * FIRST_FETCH_PER_NODE, limit + 16)
    text, params = search.index_scan_statement(target, gated=filtered, attach=None, fetch=fetch)
    return [str(row[0]) for row in await conn.fetch(f"EXPLAIN {text}", *params)]


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
    filtered: bool
    cap: int
    ef: int
    max_scan: int
    attach: int | None
    halfvec_dim: int | None
    beside: Beside | None

    async def run(self) -> list[DenseHit]:
        """Index scan(s) or the exact path; raises _Untuned on an untuned connection."""
        gated = self.filtered
        if len(self.targets) == 1:
            attach = 0 if self.beside is not None else self.attach
            found = await self.index_scan(self.targets[0], gated=gated, attach=attach)
            return found if found is not None else await self.exact(attach=self.attach)
        candidates: dict[str, None] = {}
        for target in self.targets:
            found = await self.index_scan(target, gated=gated, attach=None, plain=True)
            if found is None:
                return await self.exact(attach=self.attach)
            gated = False  # counted once: enough nodes match
            candidates.update((hit.node_id, None) for hit in found)
        return await self.exact(ids=list(candidates), attach=self.attach)

    def index_scan_statement(
        self,
        target: VectorTarget,
        *,
        gated: bool,
        attach: int | None,
        fetch: int,
        plain: bool = False,
    ) -> tuple[str, list[Any]]:
        """The index scan's SQL and parameters (``fetch`` chunk rows at most); ``plain``:
        without what ``beside`` reads."""
        filter_params = list(self.filter_params) if self.filtered else []
        beside = None if plain or self.beside is None else self.beside
        text, names = index_scan_text(
            self.table,
            self.filter_sql,
            filtered=self.filtered,
            filter_params=len(filter_params),
            gated=gated,
            halfvec_dim=self.halfvec_dim,
            beside=beside.shape() if beside is not None else None,
        )
        values = {
            **(beside.params if beside is not None else {}),
            "q": self.q,
            "tenant": self.tenant,
            "name": target.name,
            "fetch": fetch,
            "limit": self.limit,
            "ef": self.ef,
            "max_scan": self.max_scan,
            "attach": attach,
            "cap": self.cap,
        }
        return text, [*filter_params, *(values[name] for name in names)]

    async def index_scan(
        self, target: VectorTarget, *, gated: bool, attach: int | None, plain: bool = False
    ) -> list[DenseHit] | None:
        """The nearest ``limit`` nodes for one named vector via HNSW; None: go exact.

        ``gated``: count the nodes matching the filter first (same statement) and return
        None without touching the index when at most ``cap - 1`` match. ``plain``: without
        what ``beside`` reads (one target of several).
        """
        beside = None if plain else self.beside
        density = _rows_per_node.get((self.table, target.name), FIRST_FETCH_PER_NODE)
        if self.halfvec_dim is not None:
            # A half-precision order is re-ranked by exact distances: its extra rows are
            # what lets the exact top k surface, so it keeps the full over-fetch.
            density = max(density, FIRST_FETCH_PER_NODE)
        fetch = max(math.ceil(self.limit * density * FETCH_MARGIN), self.limit + 16)
        fetch = min(fetch, max(MAX_INDEX_FETCH, self.limit + 16))
        while True:
            text, params = self.index_scan_statement(
                target, gated=gated, attach=attach, fetch=fetch, plain=plain
            )
            rows = await self.conn.fetch(text, *params)
            head = rows[0]  # the statement always returns at least one row
            if gated and head["matching"] < self.cap:
                return None  # few enough nodes match: exact
            if not head["tuned"]:
                raise _Untuned(pooled=head["pooled"])
            note = getattr(self.conn, "note_ef_search", None)  # a pool's connection
            if note is not None and not self.conn.is_in_transaction():
                note(self.ef)  # read back outside a transaction: the session has it
            gated = False
            if head["distinct_nodes"]:
                key = (self.table, target.name)
                seen = head["fetched"] / head["distinct_nodes"]
                before = _rows_per_node.get(key, seen)
                _rows_per_node[key] = before + _DENSITY_WEIGHT * (seen - before)
            found = [row for row in rows if row["node_id"] is not None]
            hits = [_single_hit(row, target.name, node=beside is None) for row in found]
            if len(hits) >= self.limit:
                if beside is not None:
                    beside.rows.update((row["node_id"], row) for row in found)
                return hits
            if head["fetched"] < fetch or fetch >= MAX_INDEX_FETCH:
                # The index scan stopped before its LIMIT (tuple budget spent or graph
                # exhausted): only an exact scan can tell how many nodes really qualify.
                return None
            fetch = min(fetch * FETCH_GROWTH, MAX_INDEX_FETCH)

    async def exact(
        self, *, ids: list[str] | None = None, attach: int | None = None
    ) -> list[DenseHit]:
        """Exact scores over the nodes matching the filter, or over exactly ``ids``."""
        text, params = exact_statement(
            self.table,
            self.filter_sql,
            self.filter_params,
            ids=ids,
            q=self.q,
            tenant=self.tenant,
            names=[t.name for t in self.targets],
            weights=[float(t.weight) for t in self.targets],
            limit=self.limit,
            attach=attach,
        )
        return [_combined_hit(row) for row in await self.conn.fetch(text, *params)]


def _node(row: asyncpg.Record) -> NodeRecord | None:
    return node_from_row(row) if row["id"] is not None else None


def _single_hit(row: asyncpg.Record, name: str, *, node: bool = True) -> DenseHit:
    return dense_hit(
        row["node_id"],
        name,
        float(row["distance"]),
        (row["chunk"], row["span_start"], row["span_end"]),
        _node(row) if node else None,
    )


def dense_hit(
    node_id: str,
    name: str,
    distance: float,
    chunk: tuple[int, int, int],
    node: NodeRecord | None,
) -> DenseHit:
    """A hit for one vector ``name``: its best ``chunk`` (index, span start, span end) at
    cosine ``distance`` from the query (frozen values made without their field-by-field
    ``__init__``: every hit of every search is one)."""
    similarity = 1.0 - distance
    match = assembled(
        ChunkMatch,
        vector_name=name,
        chunk_index=chunk[0],
        span_start=chunk[1],
        span_end=chunk[2],
        similarity=similarity,
    )
    return assembled(
        DenseHit,
        node_id=node_id,
        score=similarity,
        chunk=match,
        target_scores={name: similarity},
        node=node,
    )


def _combined_hit(row: asyncpg.Record) -> DenseHit:
    names: list[str] = row["names"]
    similarities = [float(s) for s in row["similarities"]]
    chunk = ChunkMatch(
        names[0], row["chunks"][0], row["span_starts"][0], row["span_ends"][0], similarities[0]
    )
    return DenseHit(
        row["node_id"],
        float(row["score"]),
        chunk,
        dict(zip(names, similarities, strict=True)),
        _node(row),
    )
