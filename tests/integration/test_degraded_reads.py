"""Reads survive a PostgreSQL outage: a search service with its local vector index answers
dense Search (filters included) and Nearest from it while PostgreSQL is stopped, flags those
answers degraded, refuses writes with UNAVAILABLE, and serves normally again by itself once
PostgreSQL is back.

The service runs in this process on the session's PostgreSQL, which the test stops (a fast
shutdown, every connection cut) and starts again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from indexer_kit import WORDS, running_search, search_env, wait_for

from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

NODES = 500
TOP_K = 10
TYPES = ("page", "post", "note")


def _node(i: int) -> cpb.Node:
    rng = np.random.default_rng(i)
    words = [WORDS[j] for j in rng.integers(0, len(WORDS), 12)]
    return cpb.Node(
        id=f"n{i}",
        slug=f"s{i}",
        content_type=TYPES[i % 3],
        title=" ".join(words[:3]),
        body=" ".join(words),
        tags=["even" if i % 2 == 0 else "odd", f"g{i % 5}"],
    )


def _packed(vector: np.ndarray) -> cpb.Vector:
    return cpb.Vector(packed=vector.astype("<f4").tobytes(), dim=vector.size)


async def _health(admin: search_pb2_grpc.AdminStub) -> pb.HealthReportResponse:
    return await admin.HealthReport(pb.HealthReportRequest(), timeout=20)


async def test_dense_reads_survive_a_postgresql_restart(
    *,
    pg_server: EmbeddedPostgres,
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **search_env(database_url, embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(tmp_path / "local-index"),
        "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "0.2",
        "SEMANTIC_DATABASE_CHECK_INTERVAL_S": "1",
        "SEMANTIC_DATABASE_RECOVERY_MAX_BACKOFF_S": "1",
    }
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        for start in range(0, NODES, 100):
            nodes = [_node(i) for i in range(start, start + 100)]
            await stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=120)

        async def caught_up() -> bool:
            local = next(c for c in (await _health(admin)).components if c.name == "local_index")
            return local.status == pb.COMPONENT_STATUS_OK and f"; {NODES} nodes;" in local.detail

        await wait_for(caught_up, timeout_s=120, what="the local index caught up")

        # The queries: stored vectors of some nodes, moved a little; with and without filters.
        got = await stub.Get(
            pb.GetRequest(ids=[f"n{i}" for i in range(0, 200, 10)], include_vectors=True)
        )
        rng = np.random.default_rng(1)
        requests: list[pb.SearchRequest] = []
        filters = [
            cpb.Filter(),
            cpb.Filter(content_types=["post"]),
            cpb.Filter(tags_any=["g1", "g2"], tags_none=["odd"]),
        ]
        for k, node in enumerate(got.nodes):
            base = np.frombuffer(node.vectors[0].vector.packed, dtype="<f4")
            moved = base + rng.normal(0, 0.02, base.size).astype(np.float32)
            requests.append(
                pb.SearchRequest(
                    vector=_packed(moved),
                    mode=pb.SEARCH_MODE_DENSE,
                    top_k=TOP_K,
                    filter=filters[k % len(filters)],
                )
            )
        nearest = [pb.NearestRequest(id=f"n{i}", top_k=TOP_K) for i in range(0, 50, 5)]
        nearest.append(pb.NearestRequest(slug="s7", top_k=TOP_K, content_types=["note"]))

        normal_search = [await stub.Search(r, timeout=20) for r in requests]
        normal_nearest = [await stub.Nearest(r, timeout=20) for r in nearest]
        assert not any(r.degraded for r in [*normal_search, *normal_nearest])
        assert all(len(r.hits) == TOP_K for r in normal_search)

        failures: list[str] = []
        degraded_search: dict[int, pb.SearchResponse] = {}
        degraded_nearest: dict[int, pb.NearestResponse] = {}

        async def query_round() -> tuple[int, int]:
            """Every query once; (degraded answers, normal answers)."""
            flagged = plain = 0
            for i, request in enumerate(requests):
                try:
                    reply = await stub.Search(request, timeout=20)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"Search: {exc.code().name} {exc.details()}")
                    continue
                if reply.degraded:
                    degraded_search[i] = reply
                    flagged += 1
                else:
                    plain += 1
            for i, near in enumerate(nearest):
                try:
                    answer = await stub.Nearest(near, timeout=20)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"Nearest: {exc.code().name} {exc.details()}")
                    continue
                if answer.degraded:
                    degraded_nearest[i] = answer
                    flagged += 1
                else:
                    plain += 1
            return flagged, plain

        await asyncio.to_thread(pg_server.stop)
        try:

            async def all_degraded() -> bool:
                flagged, plain = await query_round()
                return plain == 0 and flagged == len(requests) + len(nearest)

            await wait_for(all_degraded, timeout_s=60, what="every read answered degraded")
            report = await _health(admin)
            assert report.degraded
            serving = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=20
            )
            assert serving.status == health_pb2.HealthCheckResponse.SERVING
            assert report.status == pb.COMPONENT_STATUS_DEGRADED
            with pytest.raises(grpc.aio.AioRpcError) as write:
                await stub.Upsert(pb.UpsertRequest(nodes=[_node(NODES)]), timeout=20)
            assert write.value.code() == grpc.StatusCode.UNAVAILABLE
            keyword = await stub.Search(
                pb.SearchRequest(text="bread oven", mode=pb.SEARCH_MODE_KEYWORD), timeout=20
            )
            assert keyword.degraded
            assert keyword.mode == pb.SEARCH_MODE_DENSE
            assert keyword.hits
            with pytest.raises(grpc.aio.AioRpcError) as unsupported:
                await stub.Search(
                    pb.SearchRequest(
                        vector=requests[0].vector,
                        filter=cpb.Filter(created=cpb.TimeRange(start={"seconds": 1})),
                    ),
                    timeout=20,
                )
            assert unsupported.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "content type, tag and id" in (unsupported.value.details() or "")
        finally:
            await asyncio.to_thread(pg_server.start)

        async def normal_again() -> bool:
            flagged, plain = await query_round()
            return flagged == 0 and plain == len(requests) + len(nearest)

        await wait_for(normal_again, timeout_s=120, what="normal answers after the restart")
        assert failures == []

        def recall(normal: list[str], degraded: list[str]) -> float:
            return len(set(normal) & set(degraded)) / max(len(normal), 1)

        recalls = [
            recall([h.node.id for h in normal_search[i].hits], [h.node.id for h in r.hits])
            for i, r in degraded_search.items()
        ] + [
            recall([h.node.id for h in normal_nearest[i].hits], [h.node.id for h in r.hits])
            for i, r in degraded_nearest.items()
        ]
        assert len(recalls) == len(requests) + len(nearest)
        assert sum(recalls) / len(recalls) >= 0.95, recalls
        for i, reply in degraded_search.items():
            post = requests[i].filter.content_types
            assert all(h.node.content_type in post for h in reply.hits) if post else True
        assert (await stub.Upsert(pb.UpsertRequest(nodes=[_node(NODES)]), timeout=60)).results
