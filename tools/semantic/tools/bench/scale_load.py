"""The scale bench's data: drawing the batches, the exact answers, COPYing them into the
spaces' tables, building the HNSW indexes with the product's DDL, and their sizes.

See :mod:`semantic.tools.bench.scale` for the run they belong to.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import numpy as np

from semantic.core.spaces import IndexPrecision, Space
from semantic.store.postgres import spaces
from semantic.store.postgres.db import init_connection
from semantic.tools.bench.corpus import WORDS, EmbeddingLike

MB = 1024 * 1024


def build_memory_mb(n: int, dim: int) -> int:
    """``maintenance_work_mem`` for an in-memory HNSW build of ``n`` vectors (pgvector keeps
    the graph in memory while it fits: vector plus neighbour lists per element)."""
    return max(1024, int(n * (4 * dim + 1024) * 1.1 / MB))


def parallel_workers() -> int:
    """Parallel maintenance workers of an index build: every core but the leader's."""
    return max(0, len(os.sched_getaffinity(0)) - 1)


class ExactTop:
    """The exact top ``k`` of each query over every vector added so far (cosine of unit
    vectors: the dot product), kept batch by batch."""

    def __init__(self, queries: np.ndarray[Any, Any], k: int) -> None:
        self.queries = queries
        self.k = k
        self.scores = np.full((len(queries), k), -np.inf, np.float32)
        self.ids = np.full((len(queries), k), -1, np.int64)

    def add(self, vectors: np.ndarray[Any, Any], first_id: int) -> None:
        """Merge a batch whose rows are nodes ``first_id ..``."""
        sims = self.queries @ vectors.T
        k = min(self.k, sims.shape[1])
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        scores = np.concatenate([self.scores, np.take_along_axis(sims, part, 1)], axis=1)
        ids = np.concatenate([self.ids, part + first_id], axis=1)
        order = np.argsort(-scores, axis=1, kind="stable")[:, : self.k]
        self.scores = np.take_along_axis(scores, order, 1)
        self.ids = np.take_along_axis(ids, order, 1)

    def answer(self) -> list[set[int]]:
        """Each query's exact top ``k`` node numbers."""
        return [{i for i in row.tolist() if i >= 0} for row in self.ids]


def batch_of(shape: EmbeddingLike, seed: int, number: int, size: int) -> Any:
    """Batch ``number`` of the data: ``size`` vectors and titles from seeds derived from it."""
    rng = np.random.default_rng([seed, number])
    vectors = shape.documents(size, rng)
    titles = [" ".join(rng.choice(WORDS, size=5)) for _ in range(size)]
    return vectors, titles


async def hnsw_index(conn: asyncpg.Connection, space: Space) -> str | None:
    schema, table = space.table.split(".")
    name: str | None = await conn.fetchval(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " JOIN pg_am a ON a.oid = c.relam WHERE i.indrelid = $1::regclass AND a.amname = 'hnsw'",
        f"{schema}.{table}",
    )
    return name


async def drop_hnsw(conn: asyncpg.Connection, space: Space) -> None:
    name = await hnsw_index(conn, space)
    if name is not None:
        await conn.execute(f'DROP INDEX semantic."{name}"')


@dataclass
class Target:
    """One space measured: its size and precision, its exact answers, what was measured."""

    space: Space
    size: int
    copy_seconds: float = 0.0
    exact: list[set[int]] = field(default_factory=list)
    recalls: list[float] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    """Latencies (ms), one list per round (``by_round``: does a tail come from the first
    rounds, while pages are still being read in, or from all of them?)."""

    @property
    def latencies(self) -> list[float]:
        """Every round's latencies (ms), in order."""
        return [ms for round_ in self.rounds for ms in round_]

    @property
    def precision(self) -> IndexPrecision:
        """The space's index precision."""
        return self.space.index_precision


class Loader:
    """Loads nodes ``done ..`` up to a size into ``semantic.nodes`` and the targets' tables."""

    def __init__(
        self,
        dsn: str,
        *,
        seed: int,
        batch: int,
        shape: EmbeddingLike,
        exact: ExactTop,
        progress: Callable[[str], None],
    ) -> None:
        self._dsn = dsn
        self._seed = seed
        self._batch = batch
        self._shape = shape
        self._exact = exact
        self._progress = progress
        self.done = 0
        self.nodes_seconds = 0.0

    async def load_to(self, size: int, targets: Sequence[Target]) -> None:
        """COPY the new rows into the nodes and every target's table (its HNSW index
        dropped first), adding each table's seconds to its target."""
        conn = await asyncpg.connect(self._dsn)
        try:
            await init_connection(conn)
            for target in targets:
                await drop_hnsw(conn, target.space)
            while self.done < size:
                first = self.done
                number, offset = divmod(first, self._batch)
                count = min(self._batch - offset, size - first)
                vectors, titles = batch_of(self._shape, self._seed, number, self._batch)
                vectors = vectors[offset : offset + count]
                titles = titles[offset : offset + count]
                self._exact.add(vectors, first)
                started = time.perf_counter()
                await conn.copy_records_to_table(
                    "nodes",
                    schema_name="semantic",
                    columns=["tenant", "id", "content_type", "title", "content_hash"],
                    records=[
                        ("", f"n{first + i}", f"type{(first + i) % 100}", titles[i], "")
                        for i in range(count)
                    ],
                )
                self.nodes_seconds += time.perf_counter() - started
                records = [
                    ("", f"n{first + i}", "content", 0, "", len(titles[i]), vectors[i])
                    for i in range(count)
                ]
                for target in targets:
                    started = time.perf_counter()
                    await conn.copy_records_to_table(
                        target.space.table.split(".")[1],
                        schema_name="semantic",
                        columns=[
                            *("tenant", "node_id", "name", "chunk", "content_hash", "span_end"),
                            "embedding",
                        ],
                        records=records,
                    )
                    target.copy_seconds += time.perf_counter() - started
                self.done = first + count
                self._progress(f"copied {self.done} of {size}")
        finally:
            await conn.close()


async def build_index(dsn: str, space: Space, n: int) -> dict[str, Any]:
    """Build the space's HNSW index with the product DDL; seconds and settings."""
    memory_mb = build_memory_mb(n, space.dim)
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        await conn.execute(f"SET maintenance_work_mem = '{int(memory_mb)}MB'")
        await conn.execute(f"SET max_parallel_maintenance_workers = {parallel_workers()}")
        started = time.perf_counter()
        await spaces.ensure_vector_table(conn, space)
        built = time.perf_counter() - started
        await conn.execute(f"VACUUM ANALYZE {space.table}")
    finally:
        await conn.close()
    return {
        "hnsw_build_seconds": round(built, 1),
        "maintenance_work_mem_mb": memory_mb,
        "parallel_workers": parallel_workers(),
    }


async def table_sizes(dsn: str, space: Space) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        index = await hnsw_index(conn, space)
        row = await conn.fetchrow(
            "SELECT pg_table_size($1::regclass) AS heap, pg_indexes_size($1::regclass) AS idx,"
            " pg_relation_size($2::regclass) AS hnsw",
            space.table,
            f"semantic.{index}",
        )
    finally:
        await conn.close()
    assert row is not None
    return {
        "table_mb": round(row["heap"] / MB, 1),
        "hnsw_index_mb": round(row["hnsw"] / MB, 1),
        "all_indexes_mb": round(row["idx"] / MB, 1),
    }


async def database_size_mb(dsn: str) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        size = await conn.fetchval("SELECT pg_database_size(current_database())")
    finally:
        await conn.close()
    return round(int(size) / MB, 1)
