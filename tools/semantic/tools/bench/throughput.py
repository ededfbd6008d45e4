"""Queries/s of the search service against PostgreSQL answering the same queries directly.

Part of `semantic bench search`. Same run, same database, same queries, the same number of
concurrent clients, in alternating rounds (each kind once per round, the order rotating),
medians over the rounds:

- ``search``: ``Search`` dense with a query vector, top_k 10, through gRPC (the clients share
  one channel: a grpc.aio channel per client costs the bench process five times the CPU per
  call, which on a small machine would be taken from the service under test);
- ``own_sql``: the statement the service runs for that query (``dense.dense_search``, one
  asyncpg connection per client with the service's session settings, node rows read in the
  same statement): the service without gRPC, validation, conversion and its event loop;
- ``minimal_sql``: ``SELECT node_id ... ORDER BY embedding <=> $1 LIMIT 10`` (ids only, no
  tenant, no node rows): the least a hand-written pgvector client can ask;
- ``nearest``, ``nearest_own_sql`` and ``nearest_sql``: ``Nearest`` by node id through gRPC;
  the two statements the service runs for it (the node's mean vector, then
  ``dense.dense_search`` for one more than top_k, node rows included), as ``own_sql``; and one
  statement that orders by the distance to that node's vector, excluding it;
- ``search_asyncio`` (when a second search process is given): ``search`` against a search
  process on the standard library's event loop (``SEMANTIC_EVENT_LOOP=asyncio``), same
  database, so ``event_loop`` compares the default (uvloop) with it in one run;
- ``minimal_service`` (when given): the same ``Search`` requests answered by the bench's
  minimal search service (``semantic.tools.bench.minimal_search``: grpc.aio on uvloop, the
  service's own statement on plain connections, the node rows written into the reply), the
  least a Python gRPC service does for them: ``minimal_service_vs_own_sql`` is what the
  architecture allows, ``search_vs_minimal_service`` what the product's own layers cost.

CPU milliseconds per query of each process (the search service, PostgreSQL's processes, the
bench's own client) are read from the kernel's counters around every round, so the report
shows where the time goes, not only how much there is (on a machine shared with other work,
what other processes used shows in ``machine_busy_ms`` beside the three).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import numpy as np
import psutil

from semantic.core.domain import Filter, VectorTarget
from semantic.store.postgres import dense, spaces
from semantic.store.postgres.db import PooledConnection, init_connection, session_settings
from semantic.store.postgres.filters import compile_filter
from semantic.store.postgres.node_store import NodeRepository
from semantic.tools.bench.footprint import process_tree
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

Call = Callable[[int, int], Awaitable[Any]]
"""One query: (client number, query number) -> awaitable."""


class _Cpu:
    """CPU seconds used by process trees (or single processes: ``alone``) and by the whole
    machine, between two reads."""

    def __init__(self, roots: dict[str, int], alone: frozenset[str] = frozenset()) -> None:
        self._roots = roots
        self._alone = alone

    def read(self) -> dict[str, float]:
        out = {"machine_busy": _machine_busy()}
        for name, pid in self._roots.items():
            total = 0.0
            processes = [psutil.Process(pid)] if name in self._alone else process_tree(pid)
            for process in processes:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                total += times.user + times.system
            out[name] = total
        return out


def _machine_busy() -> float:
    times = psutil.cpu_times()
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


async def _round(call: Call, clients: int, total: int, cpu: _Cpu) -> dict[str, float]:
    pending = list(range(total))

    async def client(k: int) -> None:
        while pending:
            await call(k, pending.pop())

    before, started = cpu.read(), time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    after = cpu.read()
    out = {"qps": total / elapsed}
    for name, value in after.items():
        out[f"{name}_ms"] = (value - before[name]) * 1000 / total
    return out


async def measure_throughput(
    *,
    search_address: str,
    database_url: str,
    search_pid: int,
    ef_search: int,
    queries: np.ndarray[Any, Any],
    node_ids: list[str],
    clients: int,
    rounds: int,
    per_round: int,
    asyncio_search: tuple[str, int] | None = None,
    minimal_service: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The report's ``throughput`` part (see the module doc). ``asyncio_search``: the address
    and pid of a search process on the standard library's loop (``search_asyncio``);
    ``minimal_service``: those of the minimal search service."""
    pool = await asyncpg.create_pool(
        database_url,
        min_size=clients,
        max_size=clients,
        init=init_connection,
        connection_class=PooledConnection,
        server_settings=session_settings(ef_search),
    )
    assert pool is not None
    channel = grpc.aio.insecure_channel(search_address)
    other = grpc.aio.insecure_channel(asyncio_search[0]) if asyncio_search else None
    least = grpc.aio.insecure_channel(minimal_service[0]) if minimal_service else None
    try:
        conns = [await pool.acquire() for _ in range(clients)]
        space = await spaces.active_space(conns[0])
        table = space.table
        repository = NodeRepository(text_config="simple")  # reads no text
        postmaster = psutil.Process(await conns[0].fetchval("SELECT pg_backend_pid()")).ppid()
        roots = {"search": search_pid, "postgres": postmaster, "client": psutil.Process().pid}
        if asyncio_search:
            roots["search_asyncio"] = asyncio_search[1]
        if minimal_service:
            roots["minimal_service"] = minimal_service[1]
        cpu = _Cpu(roots, alone=frozenset({"client"}))  # the services may be its children
        stub = search_pb2_grpc.SearchStub(channel)
        requests = [
            pb.SearchRequest(
                vector=cpb.Vector(packed=q.astype("<f4").tobytes()),
                mode=pb.SEARCH_MODE_DENSE,
                top_k=10,
            )
            for q in queries
        ]
        tenant_only, params = compile_filter("", Filter(), start=1)
        minimal = f"SELECT node_id FROM {table} ORDER BY embedding <=> $1 LIMIT 10"
        nearest = (
            f"SELECT v.node_id FROM {table} v WHERE v.tenant = '' AND v.name = 'content'"
            f" AND v.node_id <> $1 ORDER BY v.embedding <=> (SELECT s.embedding FROM {table} s"
            " WHERE s.tenant = '' AND s.node_id = $1 AND s.name = 'content' AND s.chunk = 0)"
            " LIMIT 10"
        )
        n = len(queries)

        async def search(k: int, i: int) -> None:
            await stub.Search(requests[i % n])

        async def dense_statement(k: int, vector: np.ndarray[Any, Any], limit: int) -> None:
            """The service's dense statement for an unfiltered query, node rows included."""
            await dense.dense_search(
                conns[k],
                table,
                "",
                vector,
                targets=(VectorTarget(),),
                filter_sql=tenant_only,
                filter_params=params,
                limit=limit,
                ef_search=ef_search,
                exact_threshold=0,
                filtered=False,
                attach_after=0,
            )

        async def own_sql(k: int, i: int) -> None:
            await dense_statement(k, queries[i % n], 10)

        async def minimal_sql(k: int, i: int) -> None:
            await conns[k].fetch(minimal, queries[i % n])

        async def nearest_rpc(k: int, i: int) -> None:
            await stub.Nearest(pb.NearestRequest(id=node_ids[i % len(node_ids)], top_k=10))

        async def nearest_own_sql(k: int, i: int) -> None:
            found = await repository.centre(
                conns[k], space, "", node_id=node_ids[i % len(node_ids)], slug=None, name="content"
            )
            centre = found[1] if found is not None else None
            if centre is None:
                raise RuntimeError(f"node {node_ids[i % len(node_ids)]} has no vector")
            await dense_statement(k, centre, 11)  # top_k + 1: the node itself is left out

        async def nearest_sql(k: int, i: int) -> None:
            await conns[k].fetch(nearest, node_ids[i % len(node_ids)])

        kinds: dict[str, Call] = {
            "search": search,
            "own_sql": own_sql,
            "minimal_sql": minimal_sql,
            "nearest": nearest_rpc,
            "nearest_own_sql": nearest_own_sql,
            "nearest_sql": nearest_sql,
        }
        if other is not None:
            other_stub = search_pb2_grpc.SearchStub(other)

            async def search_asyncio(k: int, i: int) -> None:
                await other_stub.Search(requests[i % n])

            kinds["search_asyncio"] = search_asyncio
        if least is not None:
            least_stub = search_pb2_grpc.SearchStub(least)

            async def minimal_rpc(k: int, i: int) -> None:
                await least_stub.Search(requests[i % n])

            kinds["minimal_service"] = minimal_rpc
        for call in kinds.values():  # warm-up: statements prepared, pages read in
            await _round(call, clients, min(per_round, 4 * n), cpu)
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in kinds}
        order = list(kinds)
        for r in range(rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                samples[name].append(await _round(kinds[name], clients, per_round, cpu))
        for conn in conns:
            await pool.release(conn)
    finally:
        await channel.close()
        if other is not None:
            await other.close()
        if least is not None:
            await least.close()
        await pool.close()
    medians = {
        name: {key: round(statistics.median(s[key] for s in runs), 3) for key in runs[0]}
        for name, runs in samples.items()
    }
    qps = {name: m["qps"] for name, m in medians.items()}
    report: dict[str, Any] = {
        "clients": clients,
        "rounds": rounds,
        "queries_per_round": per_round,
        "qps": {name: round(v, 1) for name, v in qps.items()},
        "search_vs_own_sql": round(qps["search"] / qps["own_sql"], 3),
        "search_vs_minimal_sql": round(qps["search"] / qps["minimal_sql"], 3),
        "nearest_vs_nearest_own_sql": round(qps["nearest"] / qps["nearest_own_sql"], 3),
        "nearest_vs_nearest_sql": round(qps["nearest"] / qps["nearest_sql"], 3),
        "cpu_ms_per_query": {
            name: {k[:-3]: v for k, v in m.items() if k.endswith("_ms")}
            for name, m in medians.items()
        },
    }
    if "minimal_service" in medians:
        report["minimal_service_vs_own_sql"] = round(qps["minimal_service"] / qps["own_sql"], 3)
        report["search_vs_minimal_service"] = round(qps["search"] / qps["minimal_service"], 3)
    if "search_asyncio" in medians:
        report["event_loop"] = {
            "uvloop_vs_asyncio_qps": round(qps["search"] / qps["search_asyncio"], 3),
            "search_cpu_ms_per_query": {
                "uvloop": medians["search"]["search_ms"],
                "asyncio": medians["search_asyncio"]["search_asyncio_ms"],
            },
        }
    return report
