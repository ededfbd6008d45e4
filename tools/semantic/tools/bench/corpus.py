"""Shared pieces of the search-service benchmarks: the synthetic corpus (embedding-like
vectors, :class:`EmbeddingLike`, and the words of node titles and text queries), loading it
into PostgreSQL (:func:`load_corpus`: COPY, then the HNSW index by the product's DDL), the
tuned throw-away stack (:func:`tuned_stack`), waiting for the service's local index to catch
up with a bulk load (:func:`wait_for_local_index`) and latency percentiles
(:func:`percentiles`).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np

from semantic.store.postgres import spaces
from semantic.store.postgres.db import init_connection
from semantic.tools.devstack import EmbeddedPostgres, free_port
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

WORDS = (
    *("how", "to", "cache", "http", "responses", "vector", "index", "search", "ranking"),
    *("database", "query", "latency", "tune", "memory", "disk", "backup", "restore"),
    *("certificate", "renew", "deploy", "service", "error", "timeout", "retry", "logs"),
    *("bread", "flour", "recipe", "oven", "pasta", "garden", "tomato", "water", "salt"),
    *("refund", "order", "shipping", "price", "invoice", "account", "password", "reset"),
)
SHARED_BUFFERS = "1GB"
BULK_LOAD_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": SHARED_BUFFERS,
}
"""A throw-away server tuned for bulk loads (no durability, buffers that hold the data)."""
EMBEDDER_THREADS = max(1, len(os.sched_getaffinity(0)))
"""onnxruntime threads of the embedder: its default (every core)."""


class EmbeddingLike:
    """Vectors shaped like sentence embeddings (see :mod:`semantic.tools.bench.search` for the
    calibration).

    Every vector shares one direction (``common``: real embeddings are anisotropic); the rest
    lives mostly in ``rank`` global directions whose scales decay as ``j ** -decay`` (half of
    the variance in ~28 principal components, as with MiniLM). A topic is a point in that
    space; a document is its topic plus a deviation in the same space (``within``), a little
    along ``directions`` of the topic's own (``own``) and isotropic noise; a query is drawn the
    same way with more noise (a query is further from any one document than documents are
    from each other).
    """

    def __init__(
        self,
        dim: int,
        clusters: int,
        rng: np.random.Generator,
        *,
        common: float = 0.75,
        rank: int = 96,
        decay: float = 0.4,
        within: float = 0.8,
        directions: int = 8,
        own: float = 0.3,
        noise: float = 0.1,
        query_noise: float = 1.75,
    ) -> None:
        self.dim = dim
        self.clusters = clusters
        shared = rng.normal(size=dim)
        self.common = shared * common / np.linalg.norm(shared)
        scales = np.arange(1, rank + 1) ** -decay
        basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0]  # orthonormal columns
        self.global_basis = basis * (scales / np.sqrt(np.sum(scales**2)))[None, :]
        self.topics = rng.normal(size=(clusters, rank))
        self.own_bases = rng.normal(size=(clusters, directions, dim)) / np.sqrt(dim)
        self.within = within
        self.own = own
        self.noise = noise
        self.query_noise = query_noise

    def documents(self, n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
        """``n`` unit vectors (float32)."""
        return self._sample(n, rng, self.noise)

    def queries(self, n: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
        """``n`` unit query vectors: like documents, further from any one of them."""
        return self._sample(n, rng, self.query_noise)

    def _sample(self, n: int, rng: np.random.Generator, noise: float) -> np.ndarray[Any, Any]:
        out = np.empty((n, self.dim), np.float32)
        which = rng.integers(0, self.clusters, n)
        rank, directions = self.topics.shape[1], self.own_bases.shape[1]
        for start in range(0, n, 10_000):  # bounded memory for the per-point bases
            part = which[start : start + 10_000]
            m = len(part)
            position = self.topics[part] + rng.normal(size=(m, rank)) * self.within
            own = rng.normal(size=(m, directions)) * self.own
            points = (
                self.common
                + position @ self.global_basis.T
                + np.einsum("mk,mkd->md", own, self.own_bases[part])
                + rng.normal(size=(m, self.dim)) / np.sqrt(self.dim) * noise
            )
            out[start : start + m] = points / np.linalg.norm(points, axis=1, keepdims=True)
        return out


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99 and mean of millisecond samples."""
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


async def wait_for_local_index(address: str, nodes: int, timeout_s: float = 1800.0) -> float:
    """Wait until the search service's degraded-mode index (``SEMANTIC_SEARCH_LOCAL_INDEX``,
    on by default) holds ``nodes`` nodes and has saved them; returns the seconds waited.
    After a bulk load it copies every vector into its own HNSW graph, then writes it to
    disk (within ``save_s``), which takes the CPU a measurement needs: nothing is measured
    before both are done. No such component: it is off, nothing to wait for."""
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as channel:
        admin = search_pb2_grpc.AdminStub(channel)
        while True:
            report = await admin.HealthReport(pb.HealthReportRequest())
            found = [c for c in report.components if c.name == "local_index"]
            if not found:
                return 0.0
            detail = found[0].detail
            held = re.search(r"(\d+) nodes", detail)
            if held is not None and int(held.group(1)) >= nodes and detail.endswith("; saved"):
                return round(time.perf_counter() - started, 1)
            if time.perf_counter() - started > timeout_s:
                raise TimeoutError(f"the local index did not reach {nodes} nodes: {found[0]}")
            await asyncio.sleep(1.0)


async def load_corpus(
    dsn: str, vectors: np.ndarray[Any, Any], rng: np.random.Generator
) -> dict[str, float]:
    """COPY nodes ``n0..`` and their vectors into the active space, then build its HNSW
    index with the product's DDL; returns the seconds each step took."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        space = await spaces.active_space(conn)
        schema, table = space.table.split(".")
        index = await conn.fetchval(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = $2"
            " AND indexdef LIKE '%USING hnsw%'",
            schema,
            table,
        )
        if index is not None:
            await conn.execute(f'DROP INDEX {schema}."{index}"')
        started = time.perf_counter()
        titles = [" ".join(rng.choice(WORDS, size=5)) for _ in range(len(vectors))]
        # One transaction: the nodes' change-log rows (written by their trigger) must not
        # commit before their vectors, or the local index's follower may read a node
        # without its vector and, since the vectors' COPY writes no change-log row, never
        # come back for it (degraded reads then miss those nodes).
        async with conn.transaction():
            await conn.copy_records_to_table(
                "nodes",
                schema_name=schema,
                columns=["tenant", "id", "content_type", "title", "content_hash"],
                records=[
                    ("", f"n{i}", f"type{i % 100}", titles[i], "") for i in range(len(vectors))
                ],
            )
            await conn.copy_records_to_table(
                table,
                schema_name=schema,
                columns=[
                    "tenant",
                    "node_id",
                    "name",
                    "chunk",
                    "content_hash",
                    "span_end",
                    "embedding",
                ],
                records=[
                    ("", f"n{i}", "content", 0, "", len(titles[i]), vectors[i])
                    for i in range(len(vectors))
                ],
            )
        copied = time.perf_counter()
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await spaces.ensure_space(
            conn, model_id=space.model_id, model_sha256=space.model_sha256, dim=space.dim
        )
        indexed = time.perf_counter()
        await conn.execute("VACUUM ANALYZE semantic.nodes")
        await conn.execute(f"VACUUM ANALYZE {space.table}")
    finally:
        await conn.close()
    return {
        "copy_seconds": round(copied - started, 1),
        "hnsw_build_seconds": round(indexed - copied, 1),
    }


@contextmanager
def tuned_stack(model_dir: Path, *, threads: int) -> Iterator[LocalStack]:
    """A LocalStack on a throw-away PostgreSQL tuned for bulk loads (no fsync, large
    shared_buffers), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="semantic-bench-") as folder:
        postgres = EmbeddedPostgres(
            Path(folder) / "postgres",
            free_port(),
            settings=BULK_LOAD_SETTINGS,
        )
        postgres.start()
        try:
            with LocalStack(
                [model_dir], threads=threads, database_url=postgres.url("semantic")
            ) as stack:
                yield stack
        finally:
            postgres.stop()
