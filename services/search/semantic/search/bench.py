"""`semantic bench search`: recall and latency of the search service at N nodes.

N nodes with 384-d vectors drawn from a clustered distribution are pushed through
``Search.Upsert`` (client-supplied vectors), then measured through gRPC: recall@10 of
dense vector queries against exact search, latency p50/p99 of vector queries and of
text queries (embedding included), and queries/s with concurrent clients. The baseline,
measured in the same run, is exact search: a sequential scan ordered by distance.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np

from semantic.devstack.stack import LocalStack
from semantic.search.db import init_connection
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

WORDS = [
    *("alpha", "beta", "gamma", "delta", "cache", "index"),
    *("vector", "query", "search", "ranking", "fusion", "chunk"),
]


@dataclass(frozen=True)
class SearchBenchConfig:
    """What to measure."""

    model_dir: Path
    n: int = 100_000
    dim: int = 384
    clusters: int = 200
    queries: int = 200
    clients: int = 8
    top_k: int = 10
    batch: int = 500
    seed: int = 7


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray[Any, Any]:
    """Unit vectors around ``clusters`` random centres (a mix of tight and loose ones)."""
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    spread = rng.uniform(0.3, 0.8, size=clusters).astype(np.float32)
    which = rng.integers(0, clusters, size=n)
    points = centres[which] + rng.normal(size=(n, dim)).astype(np.float32) * spread[which, None]
    return np.asarray(points / np.linalg.norm(points, axis=1, keepdims=True), np.float32)


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


async def _load(
    stub: search_pb2_grpc.SearchStub, vectors: np.ndarray[Any, Any], batch: int
) -> float:
    started = time.perf_counter()
    rng = np.random.default_rng(1)
    for start in range(0, len(vectors), batch):
        nodes = []
        for i in range(start, min(start + batch, len(vectors))):
            node = cpb.Node(
                id=f"n{i}",
                content_type=f"type{i % 100}",
                title=" ".join(rng.choice(WORDS, size=4)),
            )
            node.vectors.append(
                cpb.NamedVector(
                    name="content", vector=cpb.Vector(packed=vectors[i].astype("<f4").tobytes())
                )
            )
            nodes.append(node)
        await stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=600)
    return time.perf_counter() - started


async def _measure(
    stack: LocalStack, config: SearchBenchConfig, progress: Callable[[str], None]
) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    data = clustered(config.n, config.dim, config.clusters, rng)
    queries = clustered(
        config.queries, config.dim, config.clusters, np.random.default_rng(config.seed)
    )
    queries = queries + rng.normal(size=queries.shape).astype(np.float32) * 0.05
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, : config.top_k]
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        progress(f"loading {config.n} nodes")
        load_s = await _load(stub, data, config.batch)
        progress(f"loaded in {load_s:.0f} s")

        def request(q: np.ndarray[Any, Any]) -> pb.SearchRequest:
            return pb.SearchRequest(
                vector=cpb.Vector(packed=q.astype("<f4").tobytes()),
                mode=pb.SEARCH_MODE_DENSE,
                top_k=config.top_k,
            )

        for q in queries[:20]:  # warm-up: the index pages into memory
            await stub.Search(request(q))
        latencies, recalls = [], []
        for i, q in enumerate(queries):
            started = time.perf_counter()
            reply = await stub.Search(request(q))
            latencies.append((time.perf_counter() - started) * 1000)
            got = {int(h.node.id[1:]) for h in reply.hits}
            recalls.append(len(got & set(exact[i].tolist())) / config.top_k)
        text_latencies = []
        for i in range(config.queries):
            text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(5))
            started = time.perf_counter()
            await stub.Search(pb.SearchRequest(text=text, mode=pb.SEARCH_MODE_DENSE, top_k=10))
            text_latencies.append((time.perf_counter() - started) * 1000)
        progress("concurrent clients")
        pending = [request(q) for q in np.tile(queries, (3, 1))]
        started = time.perf_counter()
        total = len(pending)

        async def client() -> None:
            while pending:
                await stub.Search(pending.pop())

        await asyncio.gather(*(client() for _ in range(config.clients)))
        qps = total / (time.perf_counter() - started)
    progress("exact baseline")
    baseline = await _exact_baseline(stack.database_url, queries, config.top_k)
    return {
        "load_seconds": round(load_s, 1),
        "recall_at_10": round(statistics.fmean(recalls), 4),
        "vector_query": _percentiles(latencies),
        "text_query": _percentiles(text_latencies),
        f"qps_{config.clients}_clients": round(qps, 1),
        "baseline_exact_seq_scan": baseline,
        "speedup_p50_vs_exact": round(baseline["p50_ms"] / _percentiles(latencies)["p50_ms"], 1),
    }


async def _exact_baseline(dsn: str, queries: np.ndarray[Any, Any], top_k: int) -> dict[str, float]:
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        table = "semantic.vectors_" + str(
            await conn.fetchval("SELECT space_id FROM semantic.space_aliases WHERE name = 'active'")
        )
        samples = []
        for q in queries[:50]:
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                started = time.perf_counter()
                await conn.fetch(
                    f"SELECT node_id FROM {table} ORDER BY embedding <=> $1 LIMIT $2", q, top_k
                )
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return _percentiles(samples)


def run_search_bench(
    config: SearchBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build a local stack, load, measure; returns the JSON-ready report."""
    with LocalStack([config.model_dir], threads=1) as stack:
        report = asyncio.run(_measure(stack, config, progress))
    return {"benchmark": "search", "n": config.n, "dim": config.dim, **report}
