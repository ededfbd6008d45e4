"""The search benchmarks measure nothing while the service's local index is still copying a
bulk load (``bench.corpus.wait_for_local_index``): the wait ends when the index holds the
nodes and has saved them, gives up with TimeoutError when it never does, and is nothing
when the index is off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from indexer_kit import running_search, search_env

from semantic.tools.bench.corpus import wait_for_local_index
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc


async def test_the_wait_ends_when_the_local_index_holds_the_nodes(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {
        **search_env(database_url, embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_LOCAL_INDEX_DIR": str(tmp_path / "local"),
        "SEMANTIC_SEARCH_LOCAL_INDEX_SYNC_S": "0.2",
        "SEMANTIC_SEARCH_LOCAL_INDEX_SAVE_S": "0.2",
    }
    async with running_search(env, monkeypatch) as channel:
        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"
        nodes = [cpb.Node(id=f"w{i}", content_type="page", title=f"page {i}") for i in range(3)]
        await search_pb2_grpc.SearchStub(channel).Upsert(pb.UpsertRequest(nodes=nodes))
        assert await wait_for_local_index(address, 3, timeout_s=60) >= 0.0
        with pytest.raises(TimeoutError, match="4 nodes"):
            await wait_for_local_index(address, 4, timeout_s=1.5)
    off = {**env, "SEMANTIC_SEARCH_LOCAL_INDEX": "false"}
    async with running_search(off, monkeypatch):
        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"
        assert await wait_for_local_index(address, 10**6, timeout_s=1) == 0.0
