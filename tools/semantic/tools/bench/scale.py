"""`semantic bench search` at scale: N nodes against a 100k reference, float32 and half-precision
HNSW indexes, in one run.

Used when ``--n`` is above the reference size (100,000) or ``--precision`` is not ``float32``.
The data is ``corpus.EmbeddingLike`` (the same calibrated shape as the 100k bench), drawn in
batches of 50,000 from seeds derived from the batch number, so the first 100k nodes are the
same whatever N is and the bench process never holds more than one batch (plus the exact
answers: the running top 10 of every query, merged batch by batch).

One PostgreSQL server, sized for the run (``postgres_settings``), one stack (embedder +
search). Every size and precision has its own space, as a deployment would (the space the
search service creates at start holds N at float32; the others are new versions of the same
model, ``half`` ones with ``index_precision='half'``: their index is on
``embedding::halfvec(dim)``). The reference spaces hold the first 100k nodes, the others
all N. Sizes in order (the reference first):

1. the nodes from the previous size up to this one are COPYed into ``semantic.nodes`` and
   into the table of every space of this size or larger, their HNSW indexes dropped first
   (seconds per table);
2. the index of each space of this size is built by the product's DDL
   (``spaces.ensure_vector_table``, m = 16, ef_construction = 64) with
   ``maintenance_work_mem`` large enough for an in-memory build and the parallel workers
   the cores allow (seconds, table and index size), then VACUUM ANALYZE;
3. each of them is activated (the bench waits until the service answers from it) and
   warmed with other queries than the measured ones, ``warm_queries`` per reference size
   of nodes (1,000 at 100k, 10,000 at 1M: a walk touches a share of the graph, so a
   graph ten times larger needs ten times the walks to be read in as far; with the same
   1,000 at 1M the p99 of the four rounds fell from 23.4 to 16.8 ms as its pages came in,
   while the 100k rounds stayed level); then the resident memory of
   PostgreSQL (PSS of its process tree: shared buffers counted once) and of the search
   service.

Then the measured vector queries through gRPC in alternating rounds: each round, every
space (activated in turn, the order rotating) answers the next quarter of the queries, so
a burst of other work on the machine falls on every space alike; recall@10 against the
exact answer and p50/p99 over all rounds. Last, recall and latency in this process at
several ``hnsw.ef_search`` values (``dense.dense_search``, as the service runs it).

Reference and N are the same server, settings, data (the reference is N's first 100k
nodes) and queries, so the ratios (p99 at N / at the reference, half / float32) come from
one run. The search service runs without its local degraded-mode index
(``SEMANTIC_SEARCH_LOCAL_INDEX=false``): keeping a second, in-process copy of every
vector of the active space (followed from the change log) would take the CPU the measurement
needs.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
import psutil

from semantic.core.domain import Filter, VectorTarget
from semantic.core.spaces import IndexPrecision, Space
from semantic.store.postgres import dense, spaces
from semantic.store.postgres.db import init_connection, session_settings
from semantic.store.postgres.filters import compile_filter
from semantic.tools.bench.corpus import (
    BULK_LOAD_SETTINGS,
    EMBEDDER_THREADS,
    EmbeddingLike,
    percentiles,
)
from semantic.tools.bench.footprint import footprint, machine
from semantic.tools.bench.scale_load import (
    MB,
    ExactTop,
    Loader,
    Target,
    build_index,
    database_size_mb,
    parallel_workers,
    table_sizes,
)
from semantic.tools.bench.search import EF_SEARCH
from semantic.tools.devstack import EmbeddedPostgres, free_port
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

REFERENCE_N = 100_000
BATCH = 50_000
PRECISIONS: dict[str, tuple[IndexPrecision, ...]] = {
    "float32": ("float32",),
    "half": ("half",),
    "both": ("float32", "half"),
}
EF_SWEEP = (100, 150, 200, 300, 400)
GOALS = {"recall_at_10": 0.95, "p99_vs_reference": 3.0}


@dataclass(frozen=True)
class ScaleBenchConfig:
    """What to measure."""

    model_dir: Path
    n: int = 1_000_000
    precision: str = "both"
    reference_n: int = REFERENCE_N
    dim: int = 384
    clusters: int = 200
    queries: int = 1000
    warm_queries: int = 1000
    """Warm-up queries per ``reference_n`` nodes of a space (module doc, step 3)."""
    top_k: int = 10
    seed: int = 7
    batch: int = BATCH
    rounds: int = 4
    """Alternating rounds: every space answers a quarter of the queries per round."""
    ef_sweep: tuple[int, ...] = EF_SWEEP
    sweep_queries: int = 500
    ef_search: int = EF_SEARCH
    """The search service's ``SEMANTIC_SEARCH_EF_SEARCH`` in the rounds (default: its own)."""

    @property
    def sizes(self) -> list[int]:
        """The sizes measured: the reference first when N is above it."""
        return [self.reference_n, self.n] if self.n > self.reference_n else [self.n]


def heap_bytes(n: int, dim: int) -> int:
    """About the size of a space table of ``n`` single-chunk rows (8 kB pages, ~100 bytes
    of columns and headers beside the vector)."""
    per_page = max(1, 8192 // (4 * dim + 8 + 100))
    return -(-n // per_page) * 8192


def index_bytes(n: int, dim: int, precision: IndexPrecision) -> int:
    """About the size of an HNSW index (m = 16) of ``n`` vectors: a page per element tuple
    of the vector (4 or 2 bytes a dimension) and a neighbour tuple (2m ids of 6 bytes)."""
    per_element = (4 if precision == "float32" else 2) * dim + 8 + 24 + 32 * 6 + 24
    return -(-n // max(1, 8192 // per_element)) * 8192


def postgres_settings(config: ScaleBenchConfig) -> dict[str, str]:
    """A throw-away server sized for the run: shared buffers that hold every space's table
    and index (at most a quarter of the memory), no durability, WAL that does not checkpoint
    in the middle of a load; ``maintenance_work_mem`` (set for each build) comes from
    :func:`build_memory_mb`."""
    data = sum(
        heap_bytes(size, config.dim) + index_bytes(size, config.dim, p)
        for size in config.sizes
        for p in PRECISIONS[config.precision]
    )
    quarter = psutil.virtual_memory().total // 4
    buffers_mb = max(1024, int(min(data * 1.1, quarter) / MB))
    return {
        **BULK_LOAD_SETTINGS,
        "shared_buffers": f"{buffers_mb}MB",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        "max_wal_size": "16GB",
        "checkpoint_timeout": "1h",
        "max_parallel_maintenance_workers": str(parallel_workers()),
    }


def _request(q: np.ndarray[Any, Any], top_k: int) -> pb.SearchRequest:
    return pb.SearchRequest(
        vector=cpb.Vector(packed=q.astype("<f4").tobytes()), mode=pb.SEARCH_MODE_DENSE, top_k=top_k
    )


class _Service:
    """Vector queries through the search service's gRPC Search, on the space made active."""

    def __init__(self, stub: Any, dsn: str, top_k: int) -> None:
        self._stub = stub
        self._dsn = dsn
        self._top_k = top_k

    async def activate(self, space: Space, probe: np.ndarray[Any, Any]) -> None:
        """Point ``active`` at the space and wait until the service answers from it (a
        switch reaches it within its active-space TTL)."""
        conn = await asyncpg.connect(self._dsn)
        try:
            await init_connection(conn)
            await spaces.activate(conn, space.id, allow_building=True)
        finally:
            await conn.close()
        while True:
            reply = await self._stub.Search(_request(probe, self._top_k))
            if reply.space_id == str(space.id):
                return
            await asyncio.sleep(0.05)

    async def warm(self, target: Target, warm: np.ndarray[Any, Any]) -> None:
        """Other queries than the measured ones: the index pages into memory."""
        await self.activate(target.space, warm[0])
        for q in warm:
            await self._stub.Search(_request(q, self._top_k))

    async def run(self, target: Target, queries: np.ndarray[Any, Any], first: int) -> None:
        """Queries ``first ..`` of the run on the target's space: latency and recall."""
        await self.activate(target.space, queries[0])
        target.rounds.append([])
        for i, q in enumerate(queries, start=first):
            started = time.perf_counter()
            reply = await self._stub.Search(_request(q, self._top_k))
            target.rounds[-1].append((time.perf_counter() - started) * 1000)
            got = {int(h.node.id[1:]) for h in reply.hits}
            target.recalls.append(len(got & target.exact[i]) / self._top_k)


async def _sweep(
    dsn: str,
    target: Target,
    *,
    queries: np.ndarray[Any, Any],
    top_k: int,
    values: Sequence[int],
) -> dict[str, dict[str, float]]:
    """Recall@10 and latency of the product's dense search in this process at several
    ``hnsw.ef_search`` values (one round each, after the service's rounds)."""
    out: dict[str, dict[str, float]] = {}
    tenant_only, params = compile_filter("", Filter())
    space = target.space
    for ef in values:
        conn = await asyncpg.connect(dsn, server_settings=session_settings(ef))
        try:
            await init_connection(conn)
            samples, recalls = [], []
            for i, q in enumerate(queries):
                started = time.perf_counter()
                hits = await dense.dense_search(
                    conn,
                    space.table,
                    "",
                    q,
                    targets=(VectorTarget(),),
                    filter_sql=tenant_only,
                    filter_params=params,
                    limit=top_k,
                    ef_search=ef,
                    exact_threshold=0,
                    filtered=False,
                    halfvec_dim=spaces.halfvec_dim(space.index_precision, space.dim),
                )
                samples.append((time.perf_counter() - started) * 1000)
                got = {int(h.node_id[1:]) for h in hits}
                recalls.append(len(got & target.exact[i]) / top_k)
        finally:
            await conn.close()
        p = percentiles(samples)
        out[str(ef)] = {
            "recall_at_10": round(statistics.fmean(recalls), 4),
            "p50_ms": p["p50_ms"],
            "p99_ms": p["p99_ms"],
        }
    return out


def _memory(stack: LocalStack, postgres_pid: int) -> dict[str, float]:
    postgres = footprint(postgres_pid)
    search = footprint(stack.pids()["search"])
    return {
        "postgres_pss_mb": round(postgres.pss_bytes / MB, 1),
        "postgres_rss_mb": round(postgres.rss_bytes / MB, 1),
        "search_rss_mb": round(search.rss_bytes / MB, 1),
    }


async def _targets(dsn: str, config: ScaleBenchConfig) -> list[Target]:
    """One space per size and precision: the service's own float32 space holds N; the
    others are created beside it (``reindex_space``, a new version of the same model)."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        active = await spaces.active_space(conn)
        out: list[Target] = []
        for size in config.sizes:
            for precision in PRECISIONS[config.precision]:
                if size == config.n and precision == active.index_precision:
                    out.append(Target(active, size))
                    continue
                space, _ = await spaces.reindex_space(
                    conn,
                    model_id=active.model_id,
                    model_sha256=active.model_sha256,
                    dim=active.dim,
                    build={"bench": f"scale {size} {precision}"},
                    force_new=True,
                    index_precision=precision,
                )
                out.append(Target(space, size))
    finally:
        await conn.close()
    return out


async def _measure(
    stack: LocalStack,
    postgres_pid: int,
    config: ScaleBenchConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    shape = EmbeddingLike(config.dim, config.clusters, rng)
    queries = shape.queries(config.queries, np.random.default_rng([config.seed, 10**9]))
    warm = shape.queries(
        _warm_count(config, max(config.sizes)), np.random.default_rng([config.seed, 10**9 + 1])
    )
    exact = ExactTop(queries, config.top_k)
    targets = await _targets(stack.database_url, config)
    loader = Loader(
        stack.database_url,
        seed=config.seed,
        batch=config.batch,
        shape=shape,
        exact=exact,
        progress=progress,
    )
    built: dict[int, dict[str, Any]] = {}
    memory: dict[str, dict[str, float]] = {}
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        service = _Service(search_pb2_grpc.SearchStub(channel), stack.database_url, config.top_k)
        for size in config.sizes:
            progress(f"loading nodes {loader.done} to {size} with COPY")
            await loader.load_to(size, [t for t in targets if t.size >= size])
            at_size = [t for t in targets if t.size == size]
            for target in at_size:
                target.exact = exact.answer()
                progress(f"n={size} {target.precision}: building the HNSW index")
                built[id(target)] = {
                    **await build_index(stack.database_url, target.space, size),
                    **await table_sizes(stack.database_url, target.space),
                }
                progress(f"n={size} {target.precision}: {built[id(target)]}")
            for target in at_size:
                await service.warm(target, warm[: _warm_count(config, size)])
            memory[str(size)] = _memory(stack, postgres_pid)
            progress(f"n={size}: memory {memory[str(size)]}")
        database_mb = await database_size_mb(stack.database_url)
        chunks = np.array_split(np.arange(config.queries), config.rounds)
        for number, chunk in enumerate(chunks):
            progress(f"round {number + 1} of {config.rounds}")
            order = targets[number % len(targets) :] + targets[: number % len(targets)]
            for target in order:
                await service.run(target, queries[chunk], int(chunk[0]))
    sweeps = {}
    for target in targets:
        progress(f"n={target.size} {target.precision}: ef_search sweep")
        sweeps[id(target)] = await _sweep(
            stack.database_url,
            target,
            queries=queries[: config.sweep_queries],
            top_k=config.top_k,
            values=config.ef_sweep,
        )
    sizes: dict[str, dict[str, Any]] = {}
    for target in targets:
        sizes.setdefault(str(target.size), {"memory": memory[str(target.size)]})[
            target.precision
        ] = {
            "copy_seconds": round(target.copy_seconds, 1),
            **built[id(target)],
            "vector_query": {
                "recall_at_10": round(statistics.fmean(target.recalls), 4),
                **percentiles(target.latencies),
                "by_round": [percentiles(r) for r in target.rounds],
            },
            "ef_search_sweep_in_process": sweeps[id(target)],
        }
    return {
        "nodes_copy_seconds": round(loader.nodes_seconds, 1),
        "database_mb": database_mb,
        "sizes": sizes,
        **_compare(config, PRECISIONS[config.precision], sizes),
    }


def _warm_count(config: ScaleBenchConfig, size: int) -> int:
    """Warm-up queries for a space of ``size`` nodes: ``warm_queries`` per reference size."""
    return config.warm_queries * max(1, -(-size // config.reference_n))


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _compare(
    config: ScaleBenchConfig, precisions: Sequence[IndexPrecision], sizes: dict[str, Any]
) -> dict[str, Any]:
    """The ratios and goals: N against the reference, half against float32."""
    top = sizes[str(config.n)]
    out: dict[str, Any] = {}
    if config.n > config.reference_n:
        ref = sizes[str(config.reference_n)]
        out["vs_reference"] = {
            p: {
                "p99_ratio": _ratio(
                    top[p]["vector_query"]["p99_ms"], ref[p]["vector_query"]["p99_ms"]
                ),
                "p50_ratio": _ratio(
                    top[p]["vector_query"]["p50_ms"], ref[p]["vector_query"]["p50_ms"]
                ),
                "recall_at_10": [
                    ref[p]["vector_query"]["recall_at_10"],
                    top[p]["vector_query"]["recall_at_10"],
                ],
                "hnsw_build_seconds_ratio": _ratio(
                    top[p]["hnsw_build_seconds"], ref[p]["hnsw_build_seconds"]
                ),
            }
            for p in precisions
        }
    if len(precisions) == 2:
        out["half_vs_float32"] = {
            size: {
                "hnsw_index_size_ratio": _ratio(
                    at["half"]["hnsw_index_mb"], at["float32"]["hnsw_index_mb"]
                ),
                "hnsw_build_seconds_ratio": _ratio(
                    at["half"]["hnsw_build_seconds"], at["float32"]["hnsw_build_seconds"]
                ),
                "recall_at_10_difference": round(
                    at["half"]["vector_query"]["recall_at_10"]
                    - at["float32"]["vector_query"]["recall_at_10"],
                    4,
                ),
                "p50_ratio": _ratio(
                    at["half"]["vector_query"]["p50_ms"], at["float32"]["vector_query"]["p50_ms"]
                ),
                "p99_ratio": _ratio(
                    at["half"]["vector_query"]["p99_ms"], at["float32"]["vector_query"]["p99_ms"]
                ),
            }
            for size, at in sizes.items()
        }
    goals: dict[str, bool] = {}
    for p in precisions:
        goals[f"{p}: recall_at_10>={GOALS['recall_at_10']}"] = (
            top[p]["vector_query"]["recall_at_10"] >= GOALS["recall_at_10"]
        )
        if "vs_reference" in out:
            goals[f"{p}: p99<={GOALS['p99_vs_reference']}x_reference"] = (
                out["vs_reference"][p]["p99_ratio"] <= GOALS["p99_vs_reference"]
            )
    out["goals_met"] = goals
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(psutil.Process().memory_info().rss / MB, 1)


@contextmanager
def sized_stack(
    config: ScaleBenchConfig,
) -> Iterator[tuple[LocalStack, int, dict[str, str]]]:
    """A LocalStack on a throw-away PostgreSQL sized for ``config.n`` (removed afterwards),
    the search service without its local index; with the postmaster's pid and settings."""
    settings = postgres_settings(config)
    with tempfile.TemporaryDirectory(prefix="semantic-bench-scale-") as folder:
        postgres = EmbeddedPostgres(Path(folder) / "postgres", free_port(), settings=settings)
        postgres.start()
        try:
            with LocalStack(
                [config.model_dir],
                threads=EMBEDDER_THREADS,
                database_url=postgres.url("semantic"),
                search_env={
                    "SEMANTIC_SEARCH_LOCAL_INDEX": "false",
                    "SEMANTIC_SEARCH_EF_SEARCH": str(config.ef_search),
                },
            ) as stack:
                yield stack, postgres.pid or 0, settings
        finally:
            postgres.stop()


def run_scale_bench(
    config: ScaleBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Load N nodes in two steps (the reference, then the rest), measure each size and
    precision; returns the JSON-ready report."""
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")
    started = time.perf_counter()
    with sized_stack(config) as (stack, postgres_pid, settings):
        report = asyncio.run(_measure(stack, postgres_pid, config, progress))
    return {
        "benchmark": "search",
        "n": config.n,
        "reference_n": config.reference_n if config.n > config.reference_n else None,
        "dim": config.dim,
        "precision": config.precision,
        "queries": config.queries,
        "setup": {
            "load": "COPY in batches, then HNSW built by the product DDL (m=16, "
            "ef_construction=64), one space per precision",
            "ef_search": config.ef_search,
            "postgres": {
                k: settings[k]
                for k in ("shared_buffers", "max_parallel_maintenance_workers", "wal_level")
            },
            "search_local_index": False,
        },
        **report,
        "bench_peak_rss_mb": _peak_rss_mb(),
        "total_seconds": round(time.perf_counter() - started, 1),
        "machine": machine(),
    }
