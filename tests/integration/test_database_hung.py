"""A hung PostgreSQL (every one of its processes stopped with SIGSTOP: connections stay
open, nothing answers, as in a network partition) is noticed by the guardian's probe: new
reads are answered from the local index, flagged degraded, and writes get UNAVAILABLE,
instead of every request waiting for the 60 s command timeout; health stays SERVING
(degraded mode). Once PostgreSQL runs again (SIGCONT) the service serves normally by itself.

Without the probe, a read after the stop waits the whole command timeout: the test's
wait for a degraded answer would time out first."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from indexer_kit import WORDS, running_search, search_env, wait_for

from semantic.tools.devstack.ports import free_port
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

NODES = 40


@pytest.fixture
def hanging_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own (it gets stopped)."""
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port())
    server.start()
    try:
        yield server
    finally:
        _signal_all(server, signal.SIGCONT)
        server.stop()


def _signal_all(server: EmbeddedPostgres, sig: signal.Signals) -> int:
    """Send ``sig`` to the postmaster and every process it started; how many got it."""
    pid = server.pid
    if pid is None:
        return 0
    postmaster = psutil.Process(pid)
    processes = [postmaster, *postmaster.children(recursive=True)]
    for process in processes:
        try:
            os.kill(process.pid, sig)
        except ProcessLookupError:
            continue
    return len(processes)


def _node(i: int) -> cpb.Node:
    rng = np.random.default_rng(i)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 10)]
    return cpb.Node(
        id=f"n{i}", content_type="page", title=" ".join(words[:3]), body=" ".join(words)
    )


async def test_a_hung_database_is_noticed_and_reads_go_to_the_local_index(
    *,
    hanging_postgres: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hanging_postgres.create_database("semantic")
    env = {
        **search_env(hanging_postgres.url("semantic"), embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(tmp_path / "local-index"),
        "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "0.2",
        "SEMANTIC_DATABASE_PROBE_TIMEOUT_S": "1",
        "SEMANTIC_DATABASE_PROBE_INTERVAL_S": "0.3",
        "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
    }
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        await stub.Upsert(pb.UpsertRequest(nodes=[_node(i) for i in range(NODES)]), timeout=120)

        async def caught_up() -> bool:
            report = await admin.HealthReport(pb.HealthReportRequest(), timeout=20)
            local = next(c for c in report.components if c.name == "local_index")
            return local.status == pb.COMPONENT_STATUS_OK and f"; {NODES} nodes;" in local.detail

        await wait_for(caught_up, timeout_s=120, what="the local index caught up")
        got = await stub.Get(pb.GetRequest(ids=["n3"], include_vectors=True), timeout=20)
        query = pb.SearchRequest(
            vector=got.nodes[0].vectors[0].vector, mode=pb.SEARCH_MODE_DENSE, top_k=5
        )
        normal = await stub.Search(query, timeout=20)
        assert not normal.degraded
        assert normal.hits[0].node.id == "n3"

        assert _signal_all(hanging_postgres, signal.SIGSTOP) > 1
        degraded: list[pb.SearchResponse] = []
        waited: list[grpc.StatusCode] = []

        async def answered_degraded() -> bool:
            try:
                reply = await stub.Search(query, timeout=2)
            except grpc.aio.AioRpcError as exc:  # asked before the probe noticed: it waits
                waited.append(exc.code())
                return False
            degraded.append(reply)
            return True

        # Well inside the 60 s command timeout a request would wait without the probe.
        await wait_for(answered_degraded, timeout_s=30, what="a degraded answer")
        assert set(waited) <= {grpc.StatusCode.DEADLINE_EXCEEDED}
        assert degraded[0].degraded, "a normal answer from a stopped database"
        assert degraded[0].hits[0].node.id == "n3"
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Upsert(pb.UpsertRequest(nodes=[_node(NODES)]), timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        serving = await health.Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert serving.status == health_pb2.HealthCheckResponse.SERVING

        _signal_all(hanging_postgres, signal.SIGCONT)

        async def normal_again() -> bool:
            try:
                reply = await stub.Search(query, timeout=5)
            except grpc.aio.AioRpcError:
                return False
            return not reply.degraded

        await wait_for(normal_again, timeout_s=120, what="normal answers after SIGCONT")
        written = await stub.Upsert(pb.UpsertRequest(nodes=[_node(NODES)]), timeout=60)
        assert written.results[0].outcome == pb.UPSERT_OUTCOME_CREATED
