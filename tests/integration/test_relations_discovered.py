"""Discovered `similar` relations against the real search service, indexer (its heal loop),
embedder and PostgreSQL: near-duplicates get an edge each way and unrelated texts none; a
client `similar` relation is never overwritten nor doubled, through every refresh; changed
content drops a stale edge; a space switch recomputes every node; a deleted node leaves no
edge; Related follows them only when asked; `semantic heal` discovers them too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from indexer_kit import indexer_env, running_indexer, running_search, search_env, wait_for
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from semantic.tools.cli.main import main
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

RETRY = "Retry transient failures with exponential backoff and random jitter between attempts."
RETRY_TOO = "Retry transient failures using exponential backoff, with random jitter between tries."
PASTA = "Fresh pasta is made from flour and eggs, rolled thin and cut into ribbons."
PASTA_TOO = "Fresh pasta is made of flour and eggs, rolled out thin and cut into long ribbons."
TLS = "Renew TLS certificates automatically with ACME well before they expire."

OUT, IN = cpb.RELATION_DIRECTION_OUTGOING, cpb.RELATION_DIRECTION_INCOMING
BOTH = cpb.RELATION_DIRECTION_BOTH
Edge = tuple[str, str, bool]


def _node(
    key: str, body: str, version: int = 1, relations: list[cpb.Relation] | None = None
) -> cpb.Node:
    node = cpb.Node(id=key, content_type="fix_pattern", body=body, version=version)
    if relations is not None:
        node.relations.CopyFrom(cpb.Relations(items=relations))
    return node


class Stack:
    """The search service's stub and the database of one test."""

    def __init__(self, channel: Any, database_url: str) -> None:
        self.search = search_pb2_grpc.SearchStub(channel)
        self.admin = search_pb2_grpc.AdminStub(channel)
        self.database_url = database_url

    async def upsert(self, *nodes: cpb.Node) -> None:
        await self.search.Upsert(pb.UpsertRequest(nodes=list(nodes)), timeout=120)

    async def similar(self) -> dict[tuple[str, str], tuple[bool, float, str]]:
        """Every stored `similar` relation: (source, target) -> (discovered, strength, text)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT source_id, target_id, discovered, strength, description"
                " FROM semantic.relations WHERE type = 'similar'"
            )
        finally:
            await conn.close()
        return {
            (r["source_id"], r["target_id"]): (r["discovered"], r["strength"], r["description"])
            for r in rows
        }

    async def discovered(self) -> set[tuple[str, str]]:
        return {key for key, (found, _, _) in (await self.similar()).items() if found}

    async def settled(self, *ids: str) -> bool:
        """Every node ``ids`` examined for its current content in the active space, with
        no recheck outstanding."""
        conn = await asyncpg.connect(self.database_url)
        try:
            done = await conn.fetchval(
                "SELECT count(*) FROM semantic.nodes n JOIN semantic.relation_discovery d"
                " ON d.tenant = n.tenant AND d.node_id = n.id"
                " JOIN semantic.space_aliases a ON a.name = 'active' AND a.space_id = d.space_id"
                " WHERE n.id = ANY($1::text[]) AND d.content_hash = n.content_hash"
                " AND d.checked >= d.recheck",
                list(ids),
            )
        finally:
            await conn.close()
        return bool(done == len(ids))

    async def relations_of(self, key: str) -> set[tuple[str, int, bool]]:
        got = await self.search.Get(pb.GetRequest(ids=[key], include_relations=True))
        return {
            (r.node_id, r.direction, r.discovered)
            for r in got.nodes[0].relations.items
            if r.type == "similar"
        }


@asynccontextmanager
async def _stack(
    database_url: str,
    nats_url: str,
    embedder_address: str,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    """The search service, and the indexer with its heal loop: a discovery step every
    0.2 s (on the completeness check's rhythm)."""
    async with running_search(
        search_env(database_url, embedder_address, model_dir), monkeypatch
    ) as channel:
        env = {
            **indexer_env(database_url, nats_url, embedder_address, model_dir),
            "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "3600",
            "SEMANTIC_INDEXER_COMPLETENESS_CHECK_S": "0.2",
            "SEMANTIC_RELATIONS_DISCOVER": "true",
            "SEMANTIC_RELATIONS_SIMILAR_THRESHOLD": "0.8",
        }
        async with running_indexer(env, monkeypatch):
            yield Stack(channel, database_url)


@pytest.fixture
async def stack(
    *,
    nc: NatsClient,
    database_url: str,
    nats_server: EmbeddedNats,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Stack]:
    del nc  # the indexer's streams start empty
    async with _stack(
        database_url, nats_server.url, embedder_address, fp32_model_dir, monkeypatch
    ) as running:
        yield running


async def test_near_duplicates_get_a_discovered_edge_each_way_and_unrelated_texts_none(
    stack: Stack,
) -> None:
    await stack.upsert(_node("retry", RETRY), _node("retry-too", RETRY_TOO), _node("pasta", PASTA))
    await wait_for(lambda: stack.settled("retry", "retry-too", "pasta"), what="discovery")
    similar = await stack.similar()
    assert set(similar) == {("retry", "retry-too"), ("retry-too", "retry")}
    found, strength, text = similar[("retry", "retry-too")]
    assert found
    assert 0.8 <= strength <= 1.0
    assert similar[("retry-too", "retry")][1] == strength  # one similarity, both ways
    assert text == f"discovered: cosine {strength:.2f}"

    # Get shows them, marked; the unrelated node has none.
    assert await stack.relations_of("retry") == {("retry-too", OUT, True), ("retry-too", IN, True)}
    assert await stack.relations_of("pasta") == set()

    # Related follows them only when asked, and reaches the other node once either way.
    async def walk(**kwargs: Any) -> list[str]:
        reply = await stack.search.Related(pb.RelatedRequest(id="retry", **kwargs))
        return [n.node.id for n in reply.nodes]

    assert await walk() == []
    assert await walk(include_discovered=False, direction=BOTH) == []
    assert await walk(include_discovered=True) == ["retry-too"]
    assert await walk(include_discovered=True, direction=BOTH, depth=2) == ["retry-too"]
    assert await walk(include_discovered=True, types=["similar"], min_strength=strength) == [
        "retry-too"
    ]
    if strength < 1.0:
        assert await walk(include_discovered=True, min_strength=strength + 0.0001) == []

    # Search and Nearest hits carry them too.
    near = await stack.search.Nearest(
        pb.NearestRequest(id="retry", top_k=2, include_relations=True)
    )
    hit = next(h.node for h in near.hits if h.node.id == "retry-too")
    assert {(r.node_id, r.discovered) for r in hit.relations.items} == {("retry", True)}

    # The indexer's metrics: edges written, nothing left due.
    added = REGISTRY.get_sample_value(
        "semantic_indexer_discovered_relations_total", {"change": "added"}
    )
    assert added is not None
    assert added >= 2

    async def nothing_due() -> bool:
        return bool(REGISTRY.get_sample_value("semantic_indexer_discovery_pending") == 0)

    await wait_for(nothing_due, what="the pending gauge at 0")


async def test_a_client_similar_relation_is_never_overwritten_nor_doubled(stack: Stack) -> None:
    await stack.upsert(_node("retry", RETRY), _node("retry-too", RETRY_TOO), _node("pasta", PASTA))
    await wait_for(lambda: stack.settled("retry", "retry-too", "pasta"), what="discovery")
    assert await stack.discovered() == {("retry", "retry-too"), ("retry-too", "retry")}

    # A client's `similar` relation of the same key takes the discovered one's place, and
    # the discovered one of the other direction goes: the pair is linked once, by the client.
    pick = cpb.Relation(node_id="retry-too", type="similar", strength=0.3, description="pick")
    reply = await stack.search.Relate(
        pb.RelateRequest(edges=[pb.Edge(source_id="retry", relation=pick)])
    )
    assert (reply.created, reply.updated) == (0, 1)
    client_only = {("retry", "retry-too"): (False, 0.3, "pick")}
    assert await stack.similar() == client_only

    # Refreshes (both nodes asked to recheck, then new content of both) leave it as it is.
    await wait_for(lambda: stack.settled("retry", "retry-too"), what="the rechecks")
    assert await stack.similar() == client_only
    await stack.upsert(
        _node("retry", RETRY + " Give up after five.", version=2),
        _node("retry-too", RETRY_TOO + " Give up after five tries.", version=2),
    )
    await wait_for(lambda: stack.settled("retry", "retry-too"), what="discovery of new content")
    assert await stack.similar() == client_only

    # Written with the node, in the other direction: still one relation per pair.
    await stack.upsert(
        _node(
            "retry-too",
            RETRY_TOO,
            version=3,
            relations=[cpb.Relation(node_id="retry", type="similar")],
        )
    )
    await wait_for(lambda: stack.settled("retry", "retry-too"), what="discovery")
    assert await stack.similar() == {
        ("retry", "retry-too"): (False, 0.3, "pick"),
        ("retry-too", "retry"): (False, 1.0, ""),
    }

    # Once the client's relations are gone, discovery links the pair again.
    removed = await stack.search.Unrelate(
        pb.UnrelateRequest(
            edges=[
                pb.EdgeKey(source_id="retry", target_id="retry-too", type="similar"),
                pb.EdgeKey(source_id="retry-too", target_id="retry", type="similar"),
            ]
        )
    )
    assert removed.removed == 2

    async def rediscovered() -> bool:
        return await stack.discovered() == {("retry", "retry-too"), ("retry-too", "retry")}

    await wait_for(rediscovered, what="the pair discovered again")


async def test_changed_content_drops_the_stale_edge_on_the_next_pass(stack: Stack) -> None:
    await stack.upsert(_node("a", RETRY), _node("b", RETRY_TOO), _node("c", PASTA), _node("d", TLS))
    await wait_for(lambda: stack.settled("a", "b", "c", "d"), what="discovery")
    assert await stack.discovered() == {("a", "b"), ("b", "a")}

    await stack.upsert(_node("b", PASTA_TOO, version=2))  # b now reads like c, not like a

    async def moved() -> bool:
        return await stack.discovered() == {("b", "c"), ("c", "b")}

    await wait_for(moved, what="the edge to follow the content")
    await wait_for(lambda: stack.settled("a", "b", "c", "d"), what="discovery")
    assert await stack.discovered() == {("b", "c"), ("c", "b")}
    assert await stack.relations_of("a") == set()


async def test_a_space_switch_recomputes_every_node(stack: Stack) -> None:
    await stack.upsert(_node("a", RETRY), _node("b", RETRY_TOO), _node("c", PASTA))
    await wait_for(lambda: stack.settled("a", "b", "c"), what="discovery")
    before = await stack.similar()
    first = (await stack.admin.ListSpaces(pb.ListSpacesRequest())).active_space_id
    model = next(
        s.model_id
        for s in (await stack.admin.ListSpaces(pb.ListSpacesRequest())).spaces
        if s.id == first
    )
    started = await stack.admin.Reindex(pb.ReindexRequest(model_id=model, force_new=True))
    assert started.created

    async def switched() -> bool:
        listed = await stack.admin.ListSpaces(pb.ListSpacesRequest())
        return listed.active_space_id == started.space.id

    await wait_for(switched, timeout_s=120, what="the switch to the new space")
    await wait_for(lambda: stack.settled("a", "b", "c"), what="discovery in the new space")
    _same_edges(await stack.similar(), before)  # the same model: the same edges, recomputed

    await stack.admin.Rollback(pb.RollbackRequest())
    await wait_for(lambda: stack.settled("a", "b", "c"), what="discovery after the rollback")
    _same_edges(await stack.similar(), before)


def _same_edges(
    got: dict[Any, tuple[bool, float, str]], want: dict[Any, tuple[bool, float, str]]
) -> None:
    assert set(got) == set(want)
    for key, (discovered, strength, _) in want.items():
        assert got[key][0] == discovered
        assert got[key][1] == pytest.approx(strength, abs=1e-3)


async def test_a_deleted_node_leaves_no_edge_and_its_place_is_taken(stack: Stack) -> None:
    await stack.upsert(_node("a", RETRY), _node("b", RETRY_TOO), _node("c", PASTA))
    await wait_for(lambda: stack.settled("a", "b", "c"), what="discovery")
    assert await stack.discovered() == {("a", "b"), ("b", "a")}
    await stack.search.Delete(pb.DeleteRequest(ids=["b"]))
    assert await stack.similar() == {}  # in the delete's transaction
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch("SELECT node_id FROM semantic.relation_discovery")
    finally:
        await conn.close()
    assert {r["node_id"] for r in rows} == {"a", "c"}
    await wait_for(lambda: stack.settled("a", "c"), what="a examined again")
    assert await stack.similar() == {}
    await stack.upsert(_node("b2", RETRY + " Always."))

    async def replaced() -> bool:
        return await stack.discovered() == {("a", "b2"), ("b2", "a")}

    await wait_for(replaced, what="the new near-duplicate linked")


async def test_semantic_heal_discovers_and_its_dry_run_counts(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(
        search_env(database_url, embedder_address, fp32_model_dir), monkeypatch
    ) as channel:
        stack = Stack(channel, database_url)
        await stack.upsert(_node("a", RETRY), _node("b", RETRY_TOO), _node("c", PASTA))
        capsys.readouterr()
        # The command runs its own event loop: call it from a thread, as a shell would.
        assert await asyncio.to_thread(main, ["heal", "--dry-run", "--json"]) == 0
        dry = json.loads(capsys.readouterr().out)
        assert dry["discovery"]["pending"] == 3
        assert await stack.similar() == {}
        assert await asyncio.to_thread(main, ["heal", "--json"]) == 0
        done = json.loads(capsys.readouterr().out)["discovery"]
        assert (done["examined"], done["added"], done["removed"], done["pending"]) == (3, 2, 0, 0)
        assert await stack.discovered() == {("a", "b"), ("b", "a")}
        assert await asyncio.to_thread(main, ["heal", "--no-discover", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["discovery"] is None
        monkeypatch.setenv("SEMANTIC_RELATIONS_DISCOVER", "false")
        assert await asyncio.to_thread(main, ["heal", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["discovery"] is None
