"""`semantic bench search`: recall and latency of the search service at N nodes.

Data: N unit vectors of 384 dimensions shaped like sentence embeddings (``corpus.EmbeddingLike``:
200 topics in a shared low-rank space, one direction common to all vectors, noise); queries
are drawn the same way with more noise. The parameters are calibrated on all-MiniLM-L6-v2
embeddings of NFCorpus (3,633 documents, 323 test queries). There, a query's 1st / 10th /
100th most similar document averages 0.50 / 0.37 / 0.26, a document's nearest other
documents 0.72 / 0.56 / 0.41, two documents 0.19, and half the variance lies in 26 principal
components; at the same size these vectors give 0.50 / 0.39 / 0.29, 0.70 / 0.54 / 0.40, 0.20
and 28. (Isotropic balls around far-apart centres, the earlier data, have no nearest
neighbours to speak of: every point of a ball is about as close to a query as any other, the
exact top 10 is noise, and a graph index must visit most of the ball to reproduce it: recall@10
0.88 at ef_search 100 and 0.99 only at 1,000.)

Load: directly into PostgreSQL with COPY (nodes, then their ``content`` vectors), the HNSW
index dropped first and built afterwards by the product's own DDL (``spaces.ensure_space``,
m = 16, ef_construction = 64), as after a bulk import. The service's write path (Upsert,
which embeds and inserts into the live index) is not what this measures.

PostgreSQL: a throw-away embedded server (no fsync) with ``shared_buffers`` large enough
to hold the vectors and the index, as a server sized for its data would have.

Measured through gRPC against the search service process (``LocalStack``, the embedder with
its default threads): recall@10 of dense vector queries against the exact answer (numpy, all
N vectors), latency p50/p99 of vector queries and of text queries (dense, the embedder call
included), queries/s with concurrent clients. Baseline, same run and database: exact search,
a sequential scan ordered by distance (``enable_indexscan = off``), asked directly with
asyncpg (no gRPC). Also: recall and latency of the same dense search in this process at
several ``hnsw.ef_search`` values, the evidence for the service's default. And the floor
(``floor``): an empty gRPC round trip to the search process, the bare HNSW query over
asyncpg and one query embedding through the embedder, whose sums bound from below what any
search service could answer in on this machine, measured interleaved with the service's
queries (``_latency_against_floor``); ``floor_blocks`` times each part in its own loop.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from semantic.core.domain import Filter, VectorTarget
from semantic.search.settings import SearchSettings
from semantic.store.postgres import dense, spaces
from semantic.store.postgres.db import default_session_settings, init_connection, session_settings
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.table_sizes import grown_ef_search
from semantic.tools.bench.corpus import (
    EMBEDDER_THREADS,
    SHARED_BUFFERS,
    WORDS,
    EmbeddingLike,
    load_corpus,
    percentiles,
    tuned_stack,
    wait_for_local_index,
)
from semantic.tools.bench.throughput import measure_throughput
from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.service import ServiceProcess
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import embedder_pb2 as epb
from semantic.v1 import embedder_pb2_grpc, search_pb2_grpc
from semantic.v1 import search_pb2 as pb

EF_SWEEP = (40, 64, 100, 150, 200, 300)
GOALS = {"recall_at_10": 0.98, "qps_vs_sql": 0.7, "vector_vs_floor": 1.3, "text_vs_floor": 1.2}
EF_SEARCH = SearchSettings.model_fields["search_ef_search"].default
"""The service's default ``hnsw.ef_search``, which the SQL baselines run with too."""


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
    seed: int = 7
    rounds: int = 5
    """Throughput rounds (each kind once per round)."""
    per_round: int = 600
    """Queries per kind and round."""


async def _exact_baseline(
    dsn: str, queries: np.ndarray[Any, Any], exact: np.ndarray[Any, Any], top_k: int
) -> dict[str, float]:
    """Exact search in PostgreSQL: sequential scan ordered by distance, one query at a time."""
    conn = await asyncpg.connect(dsn)
    try:
        await init_connection(conn)
        table = (await spaces.active_space(conn)).table
        sql = f"SELECT node_id FROM {table} ORDER BY embedding <=> $1 LIMIT $2"
        samples, recalls = [], []
        for i, q in enumerate(queries):
            async with conn.transaction():
                await conn.execute("SET LOCAL enable_indexscan = off")
                started = time.perf_counter()
                rows = await conn.fetch(sql, q, top_k)
                samples.append((time.perf_counter() - started) * 1000)
            got = {int(r["node_id"][1:]) for r in rows}
            recalls.append(len(got & set(exact[i].tolist())) / top_k)
    finally:
        await conn.close()
    return {**percentiles(samples), "recall_at_10": round(statistics.fmean(recalls), 4)}


async def _floor(
    stack: LocalStack, queries: np.ndarray[Any, Any], texts: list[str], top_k: int
) -> dict[str, Any]:
    """What no search service on this machine can go below, measured in the same run: an
    empty gRPC round trip to the search process (``grpc.health.v1`` Check), the bare HNSW
    query (``ORDER BY embedding <=> q LIMIT k`` with the service's session settings, asyncpg,
    no gRPC), and one query text embedded through the embedder's gRPC ``Embed``. A text
    query's floor times the bare HNSW query with the vectors those texts embed to."""
    samples: dict[str, list[float]] = {"grpc": [], "sql": [], "text_sql": [], "embed": []}
    text_vectors: list[np.ndarray[Any, Any]] = []
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for i in range(len(queries) + 20):
            started = time.perf_counter()
            await health.Check(health_pb2.HealthCheckRequest())
            if i >= 20:
                samples["grpc"].append((time.perf_counter() - started) * 1000)
    async with grpc.aio.insecure_channel(stack.embedder_address) as channel:
        embedder = embedder_pb2_grpc.EmbedderStub(channel)
        for i, text in enumerate([*texts[:20], *texts]):
            started = time.perf_counter()
            reply = await embedder.Embed(
                epb.EmbedRequest(texts=[text], input_type=epb.INPUT_TYPE_QUERY)
            )
            if i >= 20:
                samples["embed"].append((time.perf_counter() - started) * 1000)
                text_vectors.append(np.frombuffer(reply.vectors, dtype="<f4"))
    conn = await asyncpg.connect(stack.database_url, server_settings=default_session_settings())
    try:
        await init_connection(conn)
        table = (await spaces.active_space(conn)).table
        sql = f"SELECT node_id FROM {table} ORDER BY embedding <=> $1 LIMIT $2"
        # A text's query vector is the model's, not drawn like the data: the graph walk it
        # takes differs, so the text floor times the bare query with those very vectors.
        for kind, vectors in (("sql", list(queries)), ("text_sql", text_vectors)):
            for round_ in range(2):
                for q in vectors:
                    started = time.perf_counter()
                    await conn.fetch(sql, q, top_k)
                    if round_:
                        samples[kind].append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return _floor_summary(samples)


def _floor_summary(samples: dict[str, list[float]]) -> dict[str, Any]:
    """The floor's parts (``grpc``, ``sql``, ``text_sql``, ``embed`` samples, ms) and sums."""
    grpc_call, sql_query = percentiles(samples["grpc"]), percentiles(samples["sql"])
    embed, text_sql = percentiles(samples["embed"]), percentiles(samples["text_sql"])
    return {
        "empty_grpc_call": grpc_call,
        "bare_hnsw_query_sql": sql_query,
        "bare_hnsw_text_query_sql": text_sql,
        "embed_query_grpc": embed,
        "vector_query_floor_p50_ms": round(grpc_call["p50_ms"] + sql_query["p50_ms"], 3),
        "text_query_floor_p50_ms": round(
            grpc_call["p50_ms"] + text_sql["p50_ms"] + embed["p50_ms"], 3
        ),
    }


_FLOOR_ROUNDS = 2
"""Measured rounds of the interleaved latency pass (after one unmeasured round)."""


async def _latency_against_floor(
    stack: LocalStack,
    channel: grpc.aio.Channel,
    *,
    queries: np.ndarray[Any, Any],
    texts: list[str],
    exact: np.ndarray[Any, Any],
    top_k: int,
    vector_request: Callable[[np.ndarray[Any, Any]], pb.SearchRequest],
    minimal_address: str,
) -> dict[str, Any]:
    """Service latencies and the floor's parts measured in the same rounds, one client.

    For every query the round runs, in an order rotating from query to query: a vector
    ``Search``, an empty gRPC call on the same channel (``grpc.health.v1`` Check) and the
    bare HNSW query with another query's vector (half the list away: the same query twice
    in a row would find its graph pages in the CPU's caches). For every text: a text
    ``Search``, an ``Embed`` of another text through the embedder's gRPC, the bare HNSW
    query with a third text's vector (each text's own vector, embedded in the first round)
    and an empty gRPC call. One unmeasured round, then ``_FLOOR_ROUNDS`` measured ones. So
    every part runs amid the others, as the hops of one query do, and the machine's
    moment is the same for the service and its floor (measured in separate loops minutes
    apart, a floor taken on a quiet machine sat under a service measured on a busy one;
    ``floor_blocks`` keeps that method's figures). The vector rounds also send the query
    to the minimal service (:mod:`semantic.tools.bench.minimal_search`, at
    ``minimal_address``): what the product's own layers cost above the least a Python
    service does."""
    samples: dict[str, list[float]] = {
        k: [] for k in ("search", "text_search", "grpc", "sql", "text_sql", "embed", "minimal")
    }
    recalls: list[float] = []
    minimal_recalls: list[float] = []
    health = health_pb2_grpc.HealthStub(channel)
    search = search_pb2_grpc.SearchStub(channel)
    minimal_channel = grpc.aio.insecure_channel(minimal_address)
    minimal = search_pb2_grpc.SearchStub(minimal_channel)
    n, m = len(queries), len(texts)
    text_vectors: list[np.ndarray[Any, Any] | None] = [None] * m
    conn = await asyncpg.connect(stack.database_url, server_settings=default_session_settings())
    async with grpc.aio.insecure_channel(stack.embedder_address) as embed_channel:
        embedder = embedder_pb2_grpc.EmbedderStub(embed_channel)
        try:
            await init_connection(conn)
            table = (await spaces.active_space(conn)).table
            bare = await conn.prepare(
                f"SELECT node_id FROM {table} ORDER BY embedding <=> $1 LIMIT $2"
            )

            async def timed(kind: str, measured: bool, call: Callable[[], Any]) -> Any:
                started = time.perf_counter()
                result = await call()  # the call starts here (a grpc.aio call starts when made)
                if measured:
                    samples[kind].append((time.perf_counter() - started) * 1000)
                return result

            def vector_part(
                kind: str, stub: search_pb2_grpc.SearchStub, found: list[float]
            ) -> Callable[[int, bool], Awaitable[None]]:
                """A vector ``Search`` through ``stub``, timed as ``kind``; its recall
                into ``found``."""

                async def part(i: int, measured: bool) -> None:
                    reply = await timed(
                        kind, measured, lambda: stub.Search(vector_request(queries[i]))
                    )
                    if measured:
                        got = {int(h.node.id[1:]) for h in reply.hits}
                        found.append(len(got & set(exact[i].tolist())) / top_k)

                return part

            vector_search = vector_part("search", search, recalls)
            minimal_search = vector_part("minimal", minimal, minimal_recalls)

            async def text_search(i: int, measured: bool) -> None:
                request = pb.SearchRequest(text=texts[i], mode=pb.SEARCH_MODE_DENSE, top_k=top_k)
                await timed("text_search", measured, lambda: search.Search(request))

            async def empty(_: int, measured: bool) -> None:
                await timed("grpc", measured, lambda: health.Check(_HEALTH))

            async def bare_sql(i: int, measured: bool) -> None:
                q = queries[(i + n // 2) % n]
                await timed("sql", measured, lambda: bare.fetch(q, top_k))

            async def bare_text_sql(i: int, measured: bool) -> None:
                vector = text_vectors[(i + 2 * m // 3) % m]
                await timed("text_sql", measured, lambda: bare.fetch(vector, top_k))

            async def embed(i: int, measured: bool, own: bool = False) -> None:
                j = i if own else (i + m // 3) % m
                request = epb.EmbedRequest(texts=[texts[j]], input_type=epb.INPUT_TYPE_QUERY)
                reply = await timed("embed", measured, lambda: embedder.Embed(request))
                text_vectors[j] = np.frombuffer(reply.vectors, dtype="<f4")

            for i in range(m):  # every text's own vector first: the bare text query needs it
                await embed(i, False, own=True)
            vector_parts = (vector_search, empty, bare_sql, minimal_search)
            text_parts = (text_search, embed, bare_text_sql, empty)
            for round_ in range(_FLOOR_ROUNDS + 1):
                measured = round_ > 0
                for parts, count in ((vector_parts, n), (text_parts, m)):
                    for i in range(count):
                        for k in range(len(parts)):
                            await parts[(i + round_ + k) % len(parts)](i, measured)
        finally:
            await conn.close()
            await minimal_channel.close()
    return {
        "vector_query": percentiles(samples["search"]),
        "minimal_service": {
            **percentiles(samples["minimal"]),
            "recall_at_10": round(statistics.fmean(minimal_recalls), 4),
        },
        "text_query": percentiles(samples["text_search"]),
        "recall_at_10": round(statistics.fmean(recalls), 4),
        "floor": {
            "method": f"interleaved with the service's queries, {_FLOOR_ROUNDS} rounds",
            **_floor_summary(samples),
        },
    }


_HEALTH = health_pb2.HealthCheckRequest()


async def _ef_sweep(
    dsn: str,
    queries: np.ndarray[Any, Any],
    exact: np.ndarray[Any, Any],
    top_k: int,
    values: tuple[int, ...] = EF_SWEEP,
) -> dict[str, dict[str, float]]:
    """Recall@10 and latency of the product's dense search (``dense.dense_search``, no
    filter, in this process, no gRPC) at several ``hnsw.ef_search`` values."""
    out: dict[str, dict[str, float]] = {}
    for ef in values:
        conn = await asyncpg.connect(dsn, server_settings=session_settings(ef))
        try:
            await init_connection(conn)
            table = (await spaces.active_space(conn)).table
            tenant_only, params = compile_filter("", Filter())
            samples, recalls = [], []
            for round_ in range(2):  # the first round reads index pages in
                for i, q in enumerate(queries):
                    started = time.perf_counter()
                    hits = await dense.dense_search(
                        conn,
                        table,
                        "",
                        q,
                        targets=(VectorTarget(),),
                        filter_sql=tenant_only,
                        filter_params=params,
                        limit=top_k,
                        ef_search=ef,
                        exact_threshold=0,
                        filtered=False,
                    )
                    if round_:
                        samples.append((time.perf_counter() - started) * 1000)
                        got = {int(h.node_id[1:]) for h in hits}
                        recalls.append(len(got & set(exact[i].tolist())) / top_k)
        finally:
            await conn.close()
        out[str(ef)] = {
            "recall_at_10": round(statistics.fmean(recalls), 4),
            "p50_ms": percentiles(samples)["p50_ms"],
        }
    return out


async def _expansion_cost(
    stub: search_pb2_grpc.SearchStub, texts: list[str], top_k: int
) -> dict[str, Any]:
    """What query expansion adds to a hybrid text query (a mean-vector read and a second dense
    statement; the corpus has no keyword postings, so the keyword side costs one empty
    statement): each text asked with expansion off and with the server's default, in
    alternating order."""
    samples: dict[str, list[float]] = {"off": [], "default": []}
    for i, text in enumerate(texts):
        order = ("off", "default") if i % 2 == 0 else ("default", "off")
        for arm in order:
            request = pb.SearchRequest(text=text, mode=pb.SEARCH_MODE_HYBRID, top_k=top_k)
            if arm == "off":
                request.hybrid.expansion_docs = 0
            started = time.perf_counter()
            reply = await stub.Search(request)
            samples[arm].append((time.perf_counter() - started) * 1000)
            assert bool(reply.expanded_with) == (arm == "default"), "expansion not as asked"
    off, on = percentiles(samples["off"]), percentiles(samples["default"])
    return {
        "off": off,
        "default": on,
        "added_p50_ms": round(on["p50_ms"] - off["p50_ms"], 3),
        "ratio_p50": round(on["p50_ms"] / off["p50_ms"], 3),
    }


async def _measure(
    stack: LocalStack,
    other: ServiceProcess,
    config: SearchBenchConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    rng = np.random.default_rng(config.seed)
    shape = EmbeddingLike(config.dim, config.clusters, rng)
    progress(f"drawing {config.n} vectors")
    data = shape.documents(config.n, rng)
    queries = shape.queries(config.queries, rng)
    warm = shape.queries(100, rng)
    similarity = queries @ data.T
    exact = np.argsort(-similarity, axis=1, kind="stable")[:, : config.top_k]
    top = -np.sort(-similarity, axis=1)
    progress(f"loading {config.n} nodes with COPY, then the HNSW index")
    load = await load_corpus(stack.database_url, data, rng)
    progress(f"loaded: {load}; waiting for the service's local index")
    load["local_index_sync_seconds"] = await wait_for_local_index(stack.search_address, config.n)
    await wait_for_local_index(other.address, config.n)  # the asyncio-loop search process
    texts = [
        " ".join(rng.choice(WORDS, size=int(rng.integers(3, 9)))) for _ in range(config.queries)
    ]

    def vector_request(q: np.ndarray[Any, Any]) -> pb.SearchRequest:
        return pb.SearchRequest(
            vector=cpb.Vector(packed=q.astype("<f4").tobytes()),
            mode=pb.SEARCH_MODE_DENSE,
            top_k=config.top_k,
        )

    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        progress("warming up")
        for q in warm:  # other queries than the measured ones: index pages into memory
            await stub.Search(vector_request(q))
        progress("vector and text queries, interleaved with the floor's parts")
        with _minimal_service(stack.database_url, config.n) as minimal:
            await minimal.wait_serving(timeout_s=60)
            latency = await _latency_against_floor(
                stack,
                channel,
                queries=queries,
                texts=texts,
                exact=exact,
                top_k=config.top_k,
                vector_request=vector_request,
                minimal_address=minimal.address,
            )
            progress("hybrid text queries, expansion off and on (the default), alternating")
            expansion = await _expansion_cost(stub, texts, config.top_k)
            progress(
                f"throughput: {config.clients} clients, service against its own SQL, alternating"
            )
            throughput = await measure_throughput(
                search_address=stack.search_address,
                database_url=stack.database_url,
                search_pid=stack.pids()["search"],
                ef_search=EF_SEARCH,
                queries=queries,
                node_ids=[
                    f"n{i}" for i in rng.choice(config.n, size=config.queries, replace=False)
                ],
                clients=config.clients,
                rounds=config.rounds,
                per_round=config.per_round,
                asyncio_search=(other.address, other.pid),
                minimal_service=(minimal.address, minimal.pid),
            )
    progress(f"throughput: {throughput['qps']}")
    progress("exact baseline")
    baseline = await _exact_baseline(stack.database_url, queries, exact, config.top_k)
    progress("floor again, each part in its own loop (reported beside the interleaved one)")
    blocks = await _floor(stack, queries, texts, config.top_k)
    progress("ef_search sweep")
    sweep = await _ef_sweep(stack.database_url, queries, exact, config.top_k)
    vector, text_query, floor = latency["vector_query"], latency["text_query"], latency["floor"]
    recall = latency["recall_at_10"]
    minimal = latency["minimal_service"]
    return {
        "data": {
            "kind": "embedding-like clusters (calibrated on MiniLM / NFCorpus)",
            "clusters": config.clusters,
            "queries": config.queries,
            "query_similarity_1st": round(float(top[:, 0].mean()), 3),
            "query_similarity_10th": round(float(top[:, config.top_k - 1].mean()), 3),
            "query_similarity_100th": round(float(top[:, min(99, config.n - 1)].mean()), 3),
        },
        "setup": {
            "load": "COPY, then HNSW built by the product DDL (m=16, ef_construction=64)",
            **load,
            "shared_buffers": SHARED_BUFFERS,
            "embedder_threads": EMBEDDER_THREADS,
            "model": str(config.model_dir),
            "ef_search": EF_SEARCH,
        },
        "recall_at_10": recall,
        "vector_query": vector,
        "text_query": text_query,
        "vs_floor": {
            "vector_p50": round(vector["p50_ms"] / floor["vector_query_floor_p50_ms"], 3),
            "text_p50": round(text_query["p50_ms"] / floor["text_query_floor_p50_ms"], 3),
            "minimal_service_p50": round(minimal["p50_ms"] / floor["vector_query_floor_p50_ms"], 3),
        },
        "vector_vs_minimal_service_p50": round(vector["p50_ms"] / minimal["p50_ms"], 3),
        "minimal_service": minimal,
        "vs_floor_blocks": {
            "vector_p50": round(vector["p50_ms"] / blocks["vector_query_floor_p50_ms"], 3),
            "text_p50": round(text_query["p50_ms"] / blocks["text_query_floor_p50_ms"], 3),
        },
        "throughput": throughput,
        "hybrid_expansion": expansion,
        "baseline_exact_seq_scan": baseline,
        "vs_baseline": {
            "p50_speedup": round(baseline["p50_ms"] / vector["p50_ms"], 1),
            "p99_speedup": round(baseline["p99_ms"] / vector["p99_ms"], 1),
            "recall_ratio": round(recall / baseline["recall_at_10"], 4),
        },
        "floor": floor,
        "floor_blocks": blocks,
        "ef_search_sweep_in_process": sweep,
        "goals_met": {
            "recall_at_10>=0.98": recall >= GOALS["recall_at_10"],
            "search_qps>=0.7x_own_sql": throughput["search_vs_own_sql"] >= GOALS["qps_vs_sql"],
            "vector_p50<=1.3x_floor": vector["p50_ms"]
            <= GOALS["vector_vs_floor"] * floor["vector_query_floor_p50_ms"],
            "text_p50<=1.2x_floor": text_query["p50_ms"]
            <= GOALS["text_vs_floor"] * floor["text_query_floor_p50_ms"],
        },
    }


@contextmanager
def _minimal_service(database_url: str, rows: int) -> Iterator[ServiceProcess]:
    """The minimal search server (:mod:`semantic.tools.bench.minimal_search`) on the
    bench's database, at the ``ef_search`` the service uses for a table of ``rows``."""
    growth = SearchSettings.model_fields["search_ef_search_growth"].default
    ef = grown_ef_search(EF_SEARCH, rows, growth)
    service = ServiceProcess.spawn(
        "semantic.tools.bench.minimal_search",
        {"DATABASE_URL": database_url, "SEMANTIC_SEARCH_EF_SEARCH": str(ef)},
    )
    try:
        yield service
    finally:
        service.stop(10.0)


@contextmanager
def _asyncio_search(stack: LocalStack, model_dir: Path) -> Iterator[ServiceProcess]:
    """A second search process, as the stack's but on the standard library's event loop
    (``throughput``'s ``search_asyncio``)."""
    service = ServiceProcess.spawn(
        "semantic.search",
        {
            "SEMANTIC_LOG_LEVEL": "warning",
            "SEMANTIC_HTTP_PORT": str(free_port()),
            "DATABASE_URL": stack.database_url,
            "SEMANTIC_EMBEDDER_ADDRESS": stack.embedder_address,
            "SEMANTIC_AUTH_MODE": "disabled",
            "SEMANTIC_SEARCH_TOKENIZER": str(model_dir / "tokenizer.json"),
            "SEMANTIC_EVENT_LOOP": "asyncio",
        },
    )
    try:
        asyncio.run(service.wait_serving())
        yield service
    finally:
        service.stop(30.0)


def run_search_bench(
    config: SearchBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build a local stack on a tuned throw-away PostgreSQL, load, measure; returns the
    JSON-ready report."""
    with (
        tuned_stack(config.model_dir, threads=EMBEDDER_THREADS) as stack,
        _asyncio_search(stack, config.model_dir) as other,
    ):
        report = asyncio.run(_measure(stack, other, config, progress))
    return {"benchmark": "search", "n": config.n, "dim": config.dim, **report}
