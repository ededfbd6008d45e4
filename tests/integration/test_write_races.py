"""The newest version wins under any interleaving, for nodes and their vectors.

Many trials of two writers of one node racing: Upsert against Upsert (through a real search
process), indexer batches against each other (two processors, two pools), and Upsert
against events; on nodes that do not exist yet and on existing ones. After each round every
node holds its highest version with exactly that version's title and body, its content hash
is the hash of that content, and every vector row belongs to that content: stamped with the
node's hash and equal to a fresh embedding of the stored body.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import grpc
import numpy as np
import pytest
from indexer_kit import write_paths

from semantic.common.embedder_client import EmbedderClient
from semantic.core.domain import NodeRecord
from semantic.core.nodes import content_hash
from semantic.indexer.events import ContentChange
from semantic.indexer.processor import ChangeProcessor
from semantic.store.postgres.db import as_array
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

pytestmark = pytest.mark.integration

TRIALS = 24  # nodes per round; each round races every node once
TOPICS = [
    "sourdough bread needs a lively starter",
    "rotate TLS certificates before they expire",
    "HNSW graphs find approximate nearest neighbours",
    "vitamin D comes from sunlight and oily fish",
    "cache HTTP responses with ETags",
    "fresh pasta wants flour, eggs and patience",
]


def _content(node_id: str, version: int) -> tuple[str, str]:
    """The title and body of version ``version`` of ``node_id``: different per version."""
    topic = TOPICS[(hash(node_id) + version) % len(TOPICS)]
    return f"{node_id} version {version}", f"{topic} (revision {version} of {node_id})"


def _record(node_id: str, version: int) -> NodeRecord:
    title, body = _content(node_id, version)
    return NodeRecord(
        tenant="", id=node_id, content_type="page", title=title, body=body, version=version
    )


def _proto(node_id: str, version: int) -> cpb.Node:
    title, body = _content(node_id, version)
    return cpb.Node(id=node_id, content_type="page", title=title, body=body, version=version)


def _change(node_id: str, version: int) -> ContentChange:
    return ContentChange(
        event_id=f"{node_id}-{version}",
        upsert=True,
        tenant="",
        id=node_id,
        slug=None,
        version=version,
        node=_record(node_id, version),
        occurred_at=None,
        source="tests",
    )


@dataclass
class Stack:
    """A search process on a fresh database, and two indexer write paths on their own pools."""

    dsn: str
    search: search_pb2_grpc.SearchStub
    processors: tuple[ChangeProcessor, ...]
    embedder: EmbedderClient


@pytest.fixture
async def stack(
    database_url: str,
    embedder_address: str,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> AsyncIterator[Stack]:
    async with write_paths(database_url, embedder_address, service_starter, 2) as paths:
        channel = grpc.aio.insecure_channel(paths.address)
        try:
            yield Stack(
                database_url, search_pb2_grpc.SearchStub(channel), paths.processors, paths.embedder
            )
        finally:
            await channel.close()


async def _upsert(stack: Stack, node_id: str, version: int) -> None:
    await stack.search.Upsert(pb.UpsertRequest(nodes=[_proto(node_id, version)]), timeout=120)


async def _batch(stack: Stack, which: int, node_id: str, version: int) -> None:
    await stack.processors[which].apply([_change(node_id, version)])


async def _race(stack: Stack, prefix: str, writers: tuple[str, str], *, existing: bool) -> None:
    """Race two writers over TRIALS nodes, then check every node."""
    rng = random.Random(prefix)
    ids = [f"{prefix}-{i}" for i in range(TRIALS)]
    base = 0
    if existing:
        for node_id in ids:
            await _upsert(stack, node_id, 1)
        base = 1

    def call(kind: str, node_id: str, version: int) -> asyncio.Task[None]:
        if kind == "upsert":
            return asyncio.ensure_future(_upsert(stack, node_id, version))
        return asyncio.ensure_future(_batch(stack, int(kind[-1]), node_id, version))

    expected: dict[str, int] = {}
    tasks: list[asyncio.Task[None]] = []
    for node_id in ids:
        versions = [base + 1, base + 2]
        rng.shuffle(versions)  # which writer carries the newer version varies per trial
        expected[node_id] = base + 2
        tasks += [call(writers[0], node_id, versions[0]), call(writers[1], node_id, versions[1])]
    await asyncio.gather(*tasks)
    await _check(stack, expected)


async def _check(stack: Stack, expected: dict[str, int]) -> None:
    conn = await asyncpg.connect(stack.dsn)
    try:
        space = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        nodes = {
            r["id"]: r
            for r in await conn.fetch(
                "SELECT id, version, title, body, content_hash, content_type, texts"
                " FROM semantic.nodes WHERE id = ANY($1::text[])",
                list(expected),
            )
        }
        vectors = await conn.fetch(
            "SELECT node_id, content_hash, embedding::real[] AS e"
            f" FROM semantic.vectors_{int(space)} WHERE node_id = ANY($1::text[])",
            list(expected),
        )
    finally:
        await conn.close()
    wrong = []
    for node_id, version in expected.items():
        row = nodes.get(node_id)
        title, body = _content(node_id, version)
        if row is None or (row["version"], row["title"], row["body"]) != (version, title, body):
            got = None if row is None else (row["version"], row["title"], row["body"])
            wrong.append((node_id, version, got))
            continue
        assert row["content_hash"] == content_hash(_record(node_id, version))
    assert wrong == [], f"nodes whose newest version carries other content: {wrong}"
    by_node: dict[str, list[asyncpg.Record]] = {}
    for v in vectors:
        by_node.setdefault(v["node_id"], []).append(v)
    assert set(by_node) == set(expected)  # every node has vectors ...
    for node_id, rows in by_node.items():
        assert len(rows) == 1  # ... one (chunking off), not one per racing writer
        assert rows[0]["content_hash"] == nodes[node_id]["content_hash"]
    ids = sorted(expected)
    texts = [_record(i, expected[i]).text_for("content") for i in ids]
    fresh = await stack.embedder.embed(texts, input_type="document")
    for node_id, vector in zip(ids, fresh.vectors, strict=True):
        stored = as_array(by_node[node_id][0]["e"])
        cosine = float(np.dot(stored, vector) / (np.linalg.norm(stored) * np.linalg.norm(vector)))
        assert cosine > 0.9999, f"{node_id}: stored vector is not its content's ({cosine:.4f})"


PAIRS = [("upsert", "upsert"), ("batch0", "batch1"), ("upsert", "batch0")]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "existing"])
@pytest.mark.parametrize("writers", PAIRS, ids=["-".join(p) for p in PAIRS])
async def test_the_newest_version_keeps_its_own_content_under_races(
    stack: Stack, writers: tuple[str, str], existing: bool
) -> None:
    for round_ in range(3):
        await _race(stack, f"{'-'.join(writers)}-{existing}-{round_}", writers, existing=existing)


async def test_batches_over_shared_nodes_in_opposite_orders_do_not_deadlock(stack: Stack) -> None:
    """Two processors write the same nodes (several tenants) in opposite orders, many times:
    one global lock order means no `deadlock detected`, and the newest versions win."""
    ids = [f"d{i}" for i in range(12)]

    def changes(version: int, order: list[str]) -> list[ContentChange]:
        out = []
        for node_id in order:
            change = _change(node_id, version)
            tenant = f"t{int(node_id[1:]) % 3}"
            assert change.node is not None
            node = NodeRecord(**{**change.node.__dict__, "tenant": tenant})
            out.append(ContentChange(**{**change.__dict__, "tenant": tenant, "node": node}))
        return out

    for version in range(1, 9, 2):
        await asyncio.gather(
            stack.processors[0].apply(changes(version, ids)),
            stack.processors[1].apply(changes(version + 1, list(reversed(ids)))),
        )
    conn = await asyncpg.connect(stack.dsn)
    try:
        rows = await conn.fetch("SELECT id, version, title FROM semantic.nodes WHERE id LIKE 'd%'")
        stats = await conn.fetch("SELECT tenant, documents FROM semantic.keyword_stats")
    finally:
        await conn.close()
    assert {r["id"]: (r["version"], r["title"]) for r in rows} == {
        i: (8, _content(i, 8)[0]) for i in ids
    }
    assert {r["tenant"]: r["documents"] for r in stats} == {"t0": 4, "t1": 4, "t2": 4}


async def test_one_slug_given_to_two_new_nodes_at_once_is_already_exists(stack: Stack) -> None:
    """The slug check cannot see the other writer's uncommitted row; the unique index can.
    Either way the loser gets ALREADY_EXISTS, never INTERNAL, and one node holds the slug."""
    for trial in range(10):
        slug = f"shared-slug-{trial}"
        nodes = [
            cpb.Node(id=f"s{trial}-{side}", slug=slug, content_type="page", title=f"{side}")
            for side in ("a", "b")
        ]
        replies = await asyncio.gather(
            *(stack.search.Upsert(pb.UpsertRequest(nodes=[n]), timeout=120) for n in nodes),
            return_exceptions=True,
        )
        codes = sorted(
            r.code().name if isinstance(r, grpc.aio.AioRpcError) else "OK" for r in replies
        )
        assert codes == ["ALREADY_EXISTS", "OK"], replies
        lost = next(r for r in replies if isinstance(r, grpc.aio.AioRpcError))
        message = lost.details() or ""
        assert repr(slug) in message, message  # named, whichever check saw the other
        assert "Key (" not in message, message  # not the database's text
        found = await stack.search.Get(pb.GetRequest(slugs=[slug]), timeout=30)
        assert len(found.nodes) == 1
