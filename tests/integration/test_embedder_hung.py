"""An embedder that stopped answering (its process stopped with SIGSTOP: the connection
stays open, nothing comes back) costs a text Search at most
``SEMANTIC_SEARCH_QUERY_EMBED_TIMEOUT_S``, then UNAVAILABLE naming the embedder (it was the
120 s per call and 30 s of retries a document batch gets); vector searches are not
affected; once the embedder runs again (SIGCONT) text searches are answered again."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from indexer_kit import running_search, search_env, wait_for

from semantic.tools.devstack.service import ServiceProcess
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc


@pytest.fixture
def stoppable_embedder(
    fp32_model_dir: Path, service_starter: Callable[[str, dict[str, str]], ServiceProcess]
) -> Iterator[ServiceProcess]:
    """An embedder of this test's own (it gets stopped)."""
    service = service_starter(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        },
    )
    asyncio.run(service.wait_serving(timeout_s=120.0))
    try:
        yield service
    finally:
        os.kill(service.pid, signal.SIGCONT)
        service.stop()


async def test_a_hung_embedder_costs_a_text_search_the_query_timeout_not_minutes(
    *,
    stoppable_embedder: ServiceProcess,
    database_url: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **search_env(database_url, stoppable_embedder.address, fp32_model_dir),
        "SEMANTIC_SEARCH_QUERY_EMBED_TIMEOUT_S": "1",
    }
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        node = cpb.Node(id="tls", content_type="page", title="Renewing TLS", body="ACME renewal")
        await stub.Upsert(pb.UpsertRequest(nodes=[node]), timeout=120)
        text = pb.SearchRequest(text="certificate renewal", mode=pb.SEARCH_MODE_DENSE, top_k=3)
        assert (await stub.Search(text, timeout=30)).hits[0].node.id == "tls"
        got = await stub.Get(pb.GetRequest(ids=["tls"], include_vectors=True), timeout=30)
        vector = pb.SearchRequest(
            vector=got.nodes[0].vectors[0].vector, mode=pb.SEARCH_MODE_DENSE, top_k=3
        )

        os.kill(stoppable_embedder.pid, signal.SIGSTOP)
        # The client would wait 60 s; the service gives up after its 1 s (with retries).
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Search(text, timeout=60)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "embedder" in (refused.value.details() or "")
        assert (await stub.Search(vector, timeout=30)).hits[0].node.id == "tls"

        os.kill(stoppable_embedder.pid, signal.SIGCONT)

        async def answered() -> bool:
            try:
                reply = await stub.Search(text, timeout=30)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                return False
            return reply.hits[0].node.id == "tls"

        await wait_for(answered, timeout_s=60, what="text searches after SIGCONT")
