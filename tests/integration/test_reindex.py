"""A model change without downtime: Reindex builds a new space from a model directory the
embedder loads, search keeps answering from the old space until the switch (one
transaction), and Rollback switches back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from indexer_kit import running_search, wait_for

from semantic.tools.cli.main import main
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

TOPICS = [
    "sourdough bread needs a starter and a long fermentation",
    "renew TLS certificates automatically with ACME",
    "cache HTTP responses with Cache-Control and ETags",
    "fresh pasta is flour and eggs rolled thin",
    "HNSW indexes find the nearest vectors quickly",
    "vitamin D and heart disease in older adults",
]


@pytest.fixture
async def reindex_embedder(fp32_model_dir: Path, service_starter: Callable[..., Any]) -> str:
    """An embedder of our own: Reindex makes it load a second model."""
    service = service_starter(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
            # like the search service below: LoadModel takes no token here
            "SEMANTIC_AUTH_MODE": "disabled",
        },
    )
    await service.wait_serving()
    return str(service.address)


def _search_env(database_url: str, embedder: str, fp32_model_dir: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_EMBEDDER_ADDRESS": embedder,
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
    }


async def test_reindex_switches_models_while_search_keeps_answering(
    database_url: str,
    reindex_embedder: str,
    fp32_model_dir: Path,
    int8_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = _search_env(database_url, reindex_embedder, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        nodes = [
            cpb.Node(id=f"n{i}", content_type="page", title=f"Note {i}", body=TOPICS[i % 6])
            for i in range(120)
        ]
        for start in range(0, len(nodes), 40):
            await search.Upsert(pb.UpsertRequest(nodes=nodes[start : start + 40]))
        first = (await admin.ListSpaces(pb.ListSpacesRequest())).active_space_id

        answered, failures, spaces = [0], [], []
        stop = asyncio.Event()

        async def keep_searching() -> None:
            i = 0
            while not stop.is_set():
                query = pb.SearchRequest(text=TOPICS[i % 6], top_k=5)
                i += 1
                try:
                    reply = await search.Search(query, timeout=30)
                except grpc.aio.AioRpcError as exc:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                    continue
                if len(reply.hits) != 5:
                    failures.append(f"{len(reply.hits)} hits for {query.text!r}")
                answered[0] += 1
                spaces.append(reply.space_id)

        searcher = asyncio.create_task(keep_searching())
        try:
            started = await admin.Reindex(pb.ReindexRequest(model_dir=str(int8_model_dir)))
            assert started.created
            assert started.space.state == pb.SPACE_STATE_BUILDING
            assert started.space.model_id.endswith(":int8")
            again = await admin.Reindex(pb.ReindexRequest(model_dir=str(int8_model_dir)))
            assert not again.created  # idempotent: the same space
            assert again.space.id == started.space.id
            listed = await admin.ListSpaces(pb.ListSpacesRequest())
            old = next(s for s in listed.spaces if s.id != started.space.id)
            assert old.vectors == 120  # the space being replaced, as listed
            same = await admin.Reindex(pb.ReindexRequest(model_id=old.model_id))
            assert (same.created, same.space.id) == (False, old.id)
            assert (same.space.nodes, same.space.vectors) == (120, 120)  # counted, not 0

            async def switched() -> bool:
                listed = await admin.ListSpaces(pb.ListSpacesRequest())
                return listed.active_space_id == started.space.id

            await wait_for(switched, timeout_s=180, what="the switch to the int8 space")

            async def searched_the_new_space() -> bool:
                return spaces.count(started.space.id) >= 10

            await wait_for(searched_the_new_space, what="searches against the new space too")
        finally:
            stop.set()
            await searcher
        assert failures == []
        assert answered[0] > 10
        listed = await admin.ListSpaces(pb.ListSpacesRequest())
        new = next(s for s in listed.spaces if s.id == started.space.id)
        assert new.state == pb.SPACE_STATE_ACTIVE
        assert new.build.nodes_done == 120
        assert (new.nodes, new.vectors) == (120, 120)  # one chunk per short note
        assert new.build.HasField("finished_at")
        reply = await search.Search(pb.SearchRequest(text=TOPICS[1], top_k=3))
        assert reply.space_id == started.space.id
        assert int(reply.hits[0].node.id[1:]) % 6 == 1  # a TLS note

        # The operator's command line: `semantic rollback` calls Admin.Rollback.
        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"  # set by running_search
        monkeypatch.setenv("SEMANTIC_SEARCH_ADDRESS", address)
        assert await asyncio.to_thread(main, ["rollback"]) == 0
        listed = await admin.ListSpaces(pb.ListSpacesRequest())
        assert listed.active_space_id == first
        reply = await search.Search(pb.SearchRequest(text=TOPICS[1], top_k=3))
        assert int(reply.hits[0].node.id[1:]) % 6 == 1  # a TLS note

        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await admin.Reindex(pb.ReindexRequest(model_dir="/nonexistent/model"))
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model_dir" in (bad.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await admin.Reindex(pb.ReindexRequest(model_id="no/such-model"))
        assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model_id" in (unknown.value.details() or "")


async def test_an_fp32_deployment_keeps_its_space_when_int8_becomes_the_default(
    database_url: str,
    fp32_model_dir: Path,
    int8_model_dir: Path,
    service_starter: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Upgrading an installation whose active space is fp32 to an embedder whose default is
    int8 (SEMANTIC_EMBEDDER_PRECISION=int8, or auto on a VNNI CPU: int8 first, fp32 beside
    it): search keeps answering from the fp32 space, and one `semantic reindex` moves it."""
    env = {
        "DATABASE_URL": database_url,
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
    }
    threads = {"SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1"}
    before = service_starter(
        "semantic.embedder", {"SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir), **threads}
    )
    await before.wait_serving()
    nodes = [
        cpb.Node(id=f"n{i}", content_type="page", title=f"Note {i}", body=TOPICS[i % 6])
        for i in range(30)
    ]
    async with running_search(
        {**env, "SEMANTIC_EMBEDDER_ADDRESS": str(before.address)}, monkeypatch
    ) as channel:
        await search_pb2_grpc.SearchStub(channel).Upsert(pb.UpsertRequest(nodes=nodes))
        listed = await search_pb2_grpc.AdminStub(channel).ListSpaces(pb.ListSpacesRequest())
        fp32_space = listed.active_space_id
    before.stop()

    after = service_starter(
        "semantic.embedder",
        {"SEMANTIC_EMBEDDER_MODEL_DIRS": f"{int8_model_dir},{fp32_model_dir}", **threads},
    )
    await after.wait_serving()
    async with running_search(
        {**env, "SEMANTIC_EMBEDDER_ADDRESS": str(after.address)}, monkeypatch
    ) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        listed = await admin.ListSpaces(pb.ListSpacesRequest())
        assert listed.active_space_id == fp32_space  # the new default does not take over
        reply = await search.Search(pb.SearchRequest(text=TOPICS[1], top_k=3))
        assert reply.space_id == fp32_space
        assert int(reply.hits[0].node.id[1:]) % 6 == 1  # a TLS note

        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"  # set by running_search
        monkeypatch.setenv("SEMANTIC_SEARCH_ADDRESS", address)
        int8_id = "sentence-transformers/all-MiniLM-L6-v2:int8"
        assert await asyncio.to_thread(main, ["reindex", "--model-id", int8_id]) == 0
        listed = await admin.ListSpaces(pb.ListSpacesRequest())
        active = next(s for s in listed.spaces if s.id == listed.active_space_id)
        assert active.model_id == int8_id
        assert (active.nodes, active.vectors) == (30, 30)
        reply = await search.Search(pb.SearchRequest(text=TOPICS[1], top_k=3))
        assert reply.space_id == active.id
        assert int(reply.hits[0].node.id[1:]) % 6 == 1


async def test_a_reindex_under_steady_writes_ends_with_every_vector_current(  # noqa: PLR0917
    database_url: str,
    reindex_embedder: str,
    fp32_model_dir: Path,
    int8_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    service_starter: Callable[..., Any],
) -> None:
    """Another process writes all through the build and on after the switch: until its
    active-space cache expires it writes to the old space, so the new one has stale
    vectors right after the switch. The build re-embeds them then, not at some later heal
    pass (no heal loop runs here: no indexer)."""
    env = _search_env(database_url, reindex_embedder, fp32_model_dir)
    other = service_starter("semantic.search", {**env, "SEMANTIC_HTTP_ENABLED": "false"})
    await other.wait_serving()
    async with (
        running_search(env, monkeypatch) as channel,
        grpc.aio.insecure_channel(other.address) as other_channel,
    ):
        search = search_pb2_grpc.SearchStub(other_channel)  # the other process writes
        admin = search_pb2_grpc.AdminStub(channel)

        def note(i: int, version: int) -> cpb.Node:
            body = f"{TOPICS[(i + version) % 6]} (revision {version})"
            return cpb.Node(
                id=f"w{i}", content_type="page", title=f"Note {i}", body=body, version=version
            )

        await search.Upsert(pb.UpsertRequest(nodes=[note(i, 1) for i in range(60)]))
        stop = asyncio.Event()
        written = [0]

        async def keep_writing() -> None:
            version = 1
            while not stop.is_set():
                version += 1
                for start in range(0, 60, 10):
                    batch = [note(i, version) for i in range(start, start + 10)]
                    await search.Upsert(pb.UpsertRequest(nodes=batch))
                    written[0] += len(batch)

        writer = asyncio.create_task(keep_writing())
        try:
            started = await admin.Reindex(pb.ReindexRequest(model_dir=str(int8_model_dir)))

            async def switched() -> bool:
                listed = await admin.ListSpaces(pb.ListSpacesRequest())
                return listed.active_space_id == started.space.id

            await wait_for(switched, timeout_s=180, what="the switch to the int8 space")
            # and on for two batches, while the other process's cache may still name the
            # old space (the notes those batches write are not written again after them)
            mark = written[0]

            async def wrote_on() -> bool:
                return written[0] >= mark + 20

            await wait_for(wrote_on, timeout_s=60, what="writes after the switch")
        finally:
            stop.set()
            await writer

        async def every_vector_current() -> bool:
            checked = await admin.CheckConsistency(pb.CheckConsistencyRequest())
            by_name = {check.name: check for check in checked.checks}
            return by_name["nodes_have_vectors"].ok and by_name["no_stale_vectors"].ok

        await wait_for(every_vector_current, timeout_s=60, what="every vector current")
        listed = await admin.ListSpaces(pb.ListSpacesRequest())
        new = next(s for s in listed.spaces if s.id == started.space.id)
        assert new.build.nodes_done <= new.build.nodes_total
