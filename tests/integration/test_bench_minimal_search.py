"""The search bench's minimal service (``semantic.tools.bench.minimal_search``) answers a
dense vector ``Search`` as the product does: the same nodes in the same order, the same
scores and node fields, so the bench compares the product with a service that does the
same work and no more."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
from indexer_kit import running_search, search_env

from semantic.tools.devstack.service import ServiceProcess
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

WORDS = ["bread", "vector", "heart", "flour", "index", "renewal", "vitamin", "cache", "starter"]


async def test_the_minimal_service_answers_as_the_product(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], ServiceProcess],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(5)
    nodes = [
        cpb.Node(
            id=f"m{i}",
            content_type="page",
            title=" ".join(rng.choice(WORDS, size=3)),
            body=" ".join(rng.choice(WORDS, size=12)),
            tags=[f"t{i % 4}"],
        )
        for i in range(60)
    ]
    async with running_search(
        search_env(database_url, embedder_address, fp32_model_dir), monkeypatch
    ) as channel:
        product = search_pb2_grpc.SearchStub(channel)
        await product.Upsert(pb.UpsertRequest(nodes=nodes))
        stored = await product.Get(
            pb.GetRequest(ids=[f"m{i}" for i in range(0, 60, 6)], include_vectors=True)
        )
        minimal_process = service_starter(
            "semantic.tools.bench.minimal_search",
            {"DATABASE_URL": database_url, "SEMANTIC_SEARCH_EF_SEARCH": "200"},
        )
        await minimal_process.wait_serving(timeout_s=60)
        async with grpc.aio.insecure_channel(minimal_process.address) as minimal_channel:
            minimal = search_pb2_grpc.SearchStub(minimal_channel)
            assert len(stored.nodes) == 10
            for node in stored.nodes:
                base = np.frombuffer(node.vectors[0].vector.packed, dtype="<f4")
                query = (base + rng.normal(0, 0.05, base.size)).astype("<f4")
                request = pb.SearchRequest(
                    vector=cpb.Vector(packed=query.tobytes()), mode=pb.SEARCH_MODE_DENSE, top_k=10
                )
                want = await product.Search(request)
                got = await minimal.Search(request)
                assert [h.node.id for h in got.hits] == [h.node.id for h in want.hits]
                assert len(got.hits) == 10
                for mine, theirs in zip(got.hits, want.hits, strict=True):
                    assert mine.score == pytest.approx(theirs.score, abs=1e-6)
                    assert mine.node.title == theirs.node.title
                    assert list(mine.node.tags) == list(theirs.node.tags)
                    assert mine.node.version == theirs.node.version
        minimal_process.stop(10)
