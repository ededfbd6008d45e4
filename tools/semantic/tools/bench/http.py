"""`semantic bench http`: the HTTP API against gRPC on the same queries, and the console's
server time, at N nodes.

Data as `semantic bench search` (COPY of N nodes with embedding-like vectors, the HNSW index
built by the product's DDL), on a tuned throw-away PostgreSQL, through a LocalStack whose
search service serves both transports. Queries: two-word texts drawn from the titles' words,
so every query embeds and runs the default text search (hybrid, k = 10).

Measured in one run, alternating rounds (gRPC then HTTP, then HTTP then gRPC, ...) with the
same queries and the same number of concurrent clients: p50/p99 latency and queries/s of
``Search`` over gRPC (grpc.aio, one channel per client) and of ``GET
/api/semantic/vector-search`` over HTTP/1.1 keep-alive (one connection per client, a plain
asyncio client so the client side costs about what grpc.aio's does). Goal: HTTP p50 at most
1.25x gRPC p50. Then each console page is loaded several times and its server time read
from the ``Server-Timing`` header the page sends (goal: under 300 ms at 100k nodes).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import grpc
import numpy as np

from semantic.tools.bench.corpus import (
    EMBEDDER_THREADS,
    WORDS,
    EmbeddingLike,
    load_corpus,
    percentiles,
    tuned_stack,
    wait_for_local_index,
)
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

HTTP_GOAL = 1.25
PAGE_GOAL_MS = 300.0


@dataclass(frozen=True)
class HttpBenchConfig:
    """What to run."""

    model_dir: Path
    n: int = 100_000
    queries: int = 200
    clients: int = 16
    rounds: int = 4
    page_loads: int = 7
    seed: int = 5


class KeepAlive:
    """One HTTP/1.1 keep-alive connection: GET and read a Content-Length body."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of ``GET target``; a connection the
        server closed while idle (keep-alive timeout) is reopened once, as clients do."""
        reused = self._streams is not None
        try:
            return await self._get(target)
        except (asyncio.IncompleteReadError, ConnectionError):
            await self.close()
            if not reused:
                raise
            return await self._get(target)

    async def _get(self, target: str) -> tuple[int, dict[str, str], bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {self._host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return status, headers, body

    async def close(self) -> None:
        """Close the connection."""
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


Call = Callable[[int], Awaitable[None]]
"""One query, made through the client (channel or connection) of the given worker."""


async def _concurrently(calls: list[Call], clients: int) -> tuple[list[float], float]:
    """Run ``calls`` with ``clients`` workers, each on its own client; latencies (ms) and
    the wall time (s)."""
    queue = list(reversed(calls))
    latencies: list[float] = []

    async def worker(client: int) -> None:
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            await call(client)
            latencies.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(clients)))
    return latencies, time.perf_counter() - began


async def _transports(
    stack: LocalStack, config: HttpBenchConfig, texts: list[str]
) -> dict[str, Any]:
    channels = [grpc.aio.insecure_channel(stack.search_address) for _ in range(config.clients)]
    stubs = [search_pb2_grpc.SearchStub(c) for c in channels]
    connections = [KeepAlive(stack.http_url) for _ in range(config.clients)]
    samples: dict[str, list[float]] = {"grpc": [], "http": []}
    rates: dict[str, list[float]] = {"grpc": [], "http": []}
    try:

        def grpc_calls() -> list[Call]:
            out: list[Call] = []
            for text in texts:

                async def call(client: int, text: str = text) -> None:
                    await stubs[client].Search(pb.SearchRequest(text=text, top_k=10))

                out.append(call)
            return out

        def http_calls() -> list[Call]:
            out: list[Call] = []
            for text in texts:
                target = "/api/semantic/vector-search?" + urlencode({"q": text, "k": 10})

                async def call(client: int, target: str = target) -> None:
                    status, _, body = await connections[client].get(target)
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}: {body[:200]!r}")

                out.append(call)
            return out

        # Warm-up: every query once each way (connections, caches, the embedder's batches).
        await _concurrently(grpc_calls(), config.clients)
        await _concurrently(http_calls(), config.clients)
        for round_ in range(config.rounds):
            order = ("grpc", "http") if round_ % 2 == 0 else ("http", "grpc")
            for name in order:
                calls = grpc_calls() if name == "grpc" else http_calls()
                latencies, wall = await _concurrently(calls, config.clients)
                samples[name] += latencies
                rates[name].append(len(calls) / wall)
    finally:
        for connection in connections:
            await connection.close()
        for channel in channels:
            await channel.close()
    out: dict[str, Any] = {
        name: {**percentiles(values), "queries_per_s": round(statistics.median(rates[name]), 1)}
        for name, values in samples.items()
    }
    ratio = out["http"]["p50_ms"] / out["grpc"]["p50_ms"]
    out["http_vs_grpc_p50"] = round(ratio, 3)
    out["http_vs_grpc_p99"] = round(out["http"]["p99_ms"] / out["grpc"]["p99_ms"], 3)
    out["goal_http_p50_met"] = ratio <= HTTP_GOAL
    return out


CONSOLE_PAGES = {
    "overview": "/admin/vector-search",
    "query_lab": "/admin/vector-search/query?q=garden+river&k=10",
    "explorer": "/admin/vector-search/explorer",
    "recommend": "/admin/vector-search/recommend?userId=u1",
    "migration": "/admin/vector-search/migration?run=1",
    "dead_letters": "/admin/vector-search/dead-letters",
}


async def _pages(stack: LocalStack, loads: int) -> dict[str, Any]:
    """Median and max server time (``Server-Timing``) of each console page."""
    connection = KeepAlive(stack.http_url)
    out: dict[str, Any] = {}
    try:
        for name, target in CONSOLE_PAGES.items():
            times: list[float] = []
            status = 0
            for _ in range(loads):
                status, headers, _ = await connection.get(target)
                timing = headers.get("server-timing", "")
                if status == 200 and "dur=" in timing:
                    times.append(float(timing.split("dur=", 1)[1].split(";")[0]))
            if not times:
                out[name] = {"status": status, "server_ms": None}
                continue
            out[name] = {
                "server_ms_median": round(statistics.median(times), 1),
                "server_ms_max": round(max(times), 1),
                "goal_met": statistics.median(times) < PAGE_GOAL_MS,
            }
    finally:
        await connection.close()
    return out


async def _measure(
    stack: LocalStack, config: HttpBenchConfig, progress: Callable[[str], None]
) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    progress(f"loading {config.n} nodes")
    vectors = EmbeddingLike(384, 200, rng).documents(config.n, rng)
    loaded = await load_corpus(stack.database_url, vectors, rng)
    loaded["local_index_sync_seconds"] = await wait_for_local_index(stack.search_address, config.n)
    picker = random.Random(config.seed)
    texts = [" ".join(picker.sample(WORDS, 2)) for _ in range(config.queries)]
    progress(
        f"{config.rounds} alternating rounds of {config.queries} queries, {config.clients} clients"
    )
    transports = await _transports(stack, config, texts)
    progress("console pages")
    pages = await _pages(stack, config.page_loads)
    return {
        "load": loaded,
        "search": transports,
        "console_pages": pages,
        "goal_pages_met": all(p.get("goal_met", False) for p in pages.values()),
    }


def run_http_bench(
    config: HttpBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build a local stack on a tuned throw-away PostgreSQL, load, measure; returns the
    JSON-ready report."""
    with tuned_stack(config.model_dir, threads=EMBEDDER_THREADS) as stack:
        report = asyncio.run(_measure(stack, config, progress))
    return {
        "benchmark": "http",
        "n": config.n,
        "clients": config.clients,
        "queries": config.queries,
        "rounds": config.rounds,
        **report,
    }
