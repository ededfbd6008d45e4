"""Helpers of the foreign-store tests: the documents, a search service with its address and
active space, and the `semantic` command run as a process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from indexer_kit import running_search, search_env

from semantic.tools.foreign.formats import open_source
from semantic.tools.foreign.load import LoadOptions, LoadSummary, load
from semantic.tools.foreign.records import MappingOptions, ReadOptions
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

DOCS = {
    "cache": ("Caching HTTP responses", "Use Cache-Control headers and ETags to cache responses."),
    "pasta": ("Fresh pasta at home", "Flour, eggs and a rolling pin make silky tagliatelle."),
    "tls": ("Renewing TLS certificates", "Automate certificate renewal with ACME before expiry."),
    "bread": ("Sourdough bread", "A starter, flour, water and salt; long fermentation."),
    "index": ("Database indexes", "B-tree indexes speed up lookups; HNSW indexes find vectors."),
    "garden": ("Tomatoes in pots", "Water deeply, stake the stems and pinch the side shoots."),
    "running": ("Marathon training", "Build mileage slowly with one long run every week."),
    "guitar": ("Learning guitar chords", "Practice switching between G, C and D every day."),
}
QUERIES = {
    "how do I cache HTTP responses": "cache",
    "making noodles from scratch": "pasta",
    "certificate expiry automation": "tls",
}
WRONG_DIM = 8


class Stack:
    """A search service on a fresh database: its channel, address and active space."""

    def __init__(self, channel: grpc.aio.Channel, address: str, model_id: str, dim: int) -> None:
        self.channel = channel
        self.address = address
        self.stub = search_pb2_grpc.SearchStub(channel)
        self.model_id = model_id
        self.dim = dim

    async def load(self, fmt: str, path: Path | None, **kwargs: Any) -> LoadSummary:
        """import-from's loading, in this event loop."""
        read = kwargs.pop("source", None) or ReadOptions(
            collection=kwargs.pop("collection", None),
            vector_name=kwargs.pop("vector_name", None),
        )
        mapping = MappingOptions(id_prefix=kwargs.pop("id_prefix", ""))
        source = open_source(fmt, path, read)
        options = LoadOptions(mapping=mapping, **kwargs)
        return await load(self.channel, source.records, options, total=source.total)

    async def nodes(self, ids: list[str], tenant: str = "") -> dict[str, Any]:
        reply = await self.stub.Get(pb.GetRequest(tenant=tenant, ids=ids, include_vectors=True))
        return {n.id: n for n in reply.nodes}

    async def kept(self, ids: list[str], tenant: str = "") -> dict[str, bool]:
        """Per node: whether its content vector is the client-supplied one."""
        nodes = await self.nodes(ids, tenant)
        return {
            i: any(v.client_supplied for v in n.vectors if v.name == "content")
            for i, n in nodes.items()
        }

    async def top(self, query: str, tenant: str = "", k: int = 5) -> list[str]:
        reply = await self.stub.Search(
            pb.SearchRequest(tenant=tenant, text=query, mode=pb.SEARCH_MODE_DENSE, top_k=k)
        )
        return [h.node.id for h in reply.hits]


@asynccontextmanager
async def start_stack(
    database_url: str, embedder_address: str, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stack]:
    env = search_env(database_url, embedder_address, model_dir)
    async with running_search(env, monkeypatch) as channel:
        stats = await search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest())
        address = f"127.0.0.1:{os.environ['SEMANTIC_GRPC_PORT']}"
        yield Stack(channel, address, stats.active_space.model_id, stats.active_space.dim)


def doc(key: str, **extra: Any) -> dict[str, Any]:
    title, body = DOCS[key]
    return {"id": key, "text": body, "metadata": {"title": title, "source": "test", **extra}}


def wrong(key: str) -> np.ndarray:
    return np.random.default_rng(len(key)).random(WRONG_DIM).astype(np.float32)


async def assert_finds(stack: Stack, tenant: str = "") -> None:
    for query, expected in QUERIES.items():
        assert (await stack.top(query, tenant))[0] == expected, query


async def cli(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "semantic.tools.cli.main",
        *args,
        "--json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result
