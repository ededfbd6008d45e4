"""Degraded reads against normal ones, for `semantic bench snapshot`.

A local stack (the embedder, the search service with its local index, the indexer) on a
new database of the benchmark's PostgreSQL gets N embedding-like vectors COPYed into its
active space (``load_corpus``, as `bench search` loads). Once the local index holds every
node, the same query vectors go through gRPC dense ``Search`` (top_k 10), one client, in
alternating rounds: PostgreSQL up (normal answers), then PostgreSQL stopped (degraded
answers from the local index), then up again. Reported: p50/p99 of each, their ratios, and
recall@10 of the degraded answers against the normal answers to the same queries.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from semantic.tools.bench.corpus import load_corpus, percentiles
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

TOP_K = 10
CATCH_UP_S = 1800.0
"""Longest wait for the local index to hold the corpus (a bound on a wait, not a result)."""


async def _wait(check: Callable[[], Any], what: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


class _Reads:
    """The search service's stubs and the query vectors."""

    def __init__(self, channel: grpc.aio.Channel, queries: np.ndarray[Any, Any]) -> None:
        self.search = search_pb2_grpc.SearchStub(channel)
        self.admin = search_pb2_grpc.AdminStub(channel)
        self.requests = [
            pb.SearchRequest(
                vector=cpb.Vector(packed=q.astype("<f4").tobytes(), dim=q.size),
                mode=pb.SEARCH_MODE_DENSE,
                top_k=TOP_K,
            )
            for q in queries
        ]

    async def local_nodes(self) -> int:
        report = await self.admin.HealthReport(pb.HealthReportRequest(), timeout=30)
        local = next((c for c in report.components if c.name == "local_index"), None)
        if local is None or local.status != pb.COMPONENT_STATUS_OK:
            return -1
        # "space 1; 200000 nodes; synced 0.4 s ago" (see LocalIndexFollower.describe)
        for part in local.detail.split(";"):
            words = part.split()
            if len(words) == 2 and words[1] == "nodes" and words[0].isdigit():
                return int(words[0])
        return -1

    async def degraded(self) -> bool:
        try:
            reply = await self.search.Search(self.requests[0], timeout=30)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.degraded)

    async def normal(self) -> bool:
        try:
            reply = await self.search.Search(self.requests[0], timeout=30)
        except grpc.aio.AioRpcError:
            return False
        return not reply.degraded

    async def run(self, degraded: bool) -> tuple[list[float], list[list[str]]]:
        """Every query once, sequentially: latencies (ms) and the answers' ids."""
        latencies, answers = [], []
        for request in self.requests:
            started = time.perf_counter()
            reply = await self.search.Search(request, timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            if reply.degraded != degraded:
                raise RuntimeError(f"expected degraded={degraded}, got {reply.degraded}")
            answers.append([h.node.id for h in reply.hits])
        return latencies, answers


async def _measure(
    stack: LocalStack,
    postgres: EmbeddedPostgres,
    *,
    vectors: np.ndarray[Any, Any],
    queries: np.ndarray[Any, Any],
    rounds: int,
    rng: np.random.Generator,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    load = await load_corpus(stack.database_url, vectors, rng)
    n = len(vectors)
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        reads = _Reads(channel, queries)
        progress(f"degraded reads: waiting for the local index to hold {n} nodes")
        started = time.perf_counter()

        async def caught_up() -> bool:
            return await reads.local_nodes() == n

        await _wait(caught_up, "the local index", CATCH_UP_S)
        catch_up_s = time.perf_counter() - started
        await reads.run(degraded=False)  # warm-up: connections, caches
        normal_ms: list[float] = []
        degraded_ms: list[float] = []
        recalls: list[float] = []
        for r in range(rounds):
            progress(f"degraded reads: round {r + 1}, PostgreSQL up")
            latencies, normal_answers = await reads.run(degraded=False)
            normal_ms += latencies
            await asyncio.to_thread(postgres.stop)
            try:
                await _wait(reads.degraded, "degraded answers", 120)
                progress(f"degraded reads: round {r + 1}, PostgreSQL stopped")
                latencies, degraded_answers = await reads.run(degraded=True)
                degraded_ms += latencies
            finally:
                await asyncio.to_thread(postgres.start)
            await _wait(reads.normal, "normal answers again", 300)
            recalls += [
                len(set(a) & set(b)) / max(len(a), 1)
                for a, b in zip(normal_answers, degraded_answers, strict=True)
            ]
    normal, degraded = percentiles(normal_ms), percentiles(degraded_ms)
    return {
        "setup": {
            "load": load,
            "local_index_catch_up_seconds": round(catch_up_s, 1),
            "queries": len(queries),
            "rounds": rounds,
            "client": "one, sequential gRPC dense Search (vector), top_k 10",
        },
        "normal_read_ms": normal,
        "degraded_read_ms": degraded,
        "degraded_vs_normal_p50": round(degraded["p50_ms"] / normal["p50_ms"], 3),
        "degraded_vs_normal_p99": round(degraded["p99_ms"] / normal["p99_ms"], 3),
        "degraded_recall@10": round(statistics.mean(recalls), 4),
    }


def measure_degraded_reads(
    postgres: EmbeddedPostgres,
    model_dir: Path,
    vectors: np.ndarray[Any, Any],
    queries: np.ndarray[Any, Any],
    *,
    work: Path,
    rounds: int,
    rng: np.random.Generator,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Normal against degraded dense reads on a new database ``degraded`` of ``postgres``
    (stopped and started by the measurement); the JSON-ready report."""
    postgres.create_database("degraded")
    search_env = {
        "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(work / "local-index"),
        "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "1",
        "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "1",
        "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
    }
    with LocalStack(
        [model_dir], threads=1, database_url=postgres.url("degraded"), search_env=search_env
    ) as stack:
        return asyncio.run(
            _measure(
                stack,
                postgres,
                vectors=vectors,
                queries=queries,
                rounds=rounds,
                rng=rng,
                progress=progress,
            )
        )
