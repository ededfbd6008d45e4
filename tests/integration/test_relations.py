"""Relations between nodes, against a real search service and PostgreSQL: written with
Upsert (replaced when given, kept when not, stale writes change none), with Relate /
Unrelate and on ContentEvents through the indexer; removed with their nodes; unique per
(source, target, type); followed by Related by type, direction, depth and strength with the
path that reached each node; carried by Get, Search and Nearest hits on request; every bad
input is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from indexer_kit import (
    content_event,
    publish,
    running_indexer,
    running_search,
    search_env,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

PATTERNS = {
    "auth": "Validate tokens at the gateway before any handler runs.",
    "cache": "Cache idempotent reads with explicit invalidation on writes.",
    "retry": "Retry transient failures with exponential backoff and jitter.",
    "breaker": "Open a circuit breaker when a dependency keeps failing.",
    "timeout": "Give every outgoing call a deadline shorter than the caller's.",
    "lonely": "A pattern nothing relates to.",
}


def _rel(node_id: str, kind: str, strength: float | None = None, text: str = "") -> cpb.Relation:
    relation = cpb.Relation(node_id=node_id, type=kind, description=text)
    if strength is not None:
        relation.strength = strength
    return relation


def _node(key: str, version: int = 1, relations: list[cpb.Relation] | None = None) -> cpb.Node:
    node = cpb.Node(
        id=key, content_type="fix_pattern", title=key, body=PATTERNS[key], version=version
    )
    if relations is not None:
        node.relations.CopyFrom(cpb.Relations(items=relations))
    return node


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


def _edges(node: cpb.Node) -> set[tuple[str, str, float, int]]:
    return {(r.node_id, r.type, round(r.strength, 3), r.direction) for r in node.relations.items}


OUT, IN = cpb.RELATION_DIRECTION_OUTGOING, cpb.RELATION_DIRECTION_INCOMING


async def test_relations_written_with_nodes_follow_the_version_rules(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(
            pb.UpsertRequest(
                nodes=[
                    _node("retry", relations=[_rel("timeout", "prerequisite", 0.9, "deadlines")]),
                    _node("breaker", relations=[_rel("retry", "enhances", 0.6)]),
                    _node("timeout"),
                ]
            ),
            timeout=120,
        )

        async def edges(key: str) -> set[tuple[str, str, float, int]]:
            got = await stub.Get(pb.GetRequest(ids=[key], include_relations=True))
            return _edges(got.nodes[0])

        assert await edges("retry") == {
            ("timeout", "prerequisite", 0.9, OUT),
            ("breaker", "enhances", 0.6, IN),
        }
        assert await edges("timeout") == {("retry", "prerequisite", 0.9, IN)}
        plain = await stub.Get(pb.GetRequest(ids=["retry"]))
        assert not plain.nodes[0].HasField("relations")  # only on request

        # Unset relations keep the stored ones; a stale write changes none; a newer version
        # replaces them; the same version with other relations is stale.
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("retry", version=2)]), timeout=60)
        assert ("timeout", "prerequisite", 0.9, OUT) in await edges("retry")
        stale = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("retry", version=1, relations=[])]), timeout=60
        )
        assert stale.results[0].outcome == pb.UPSERT_OUTCOME_STALE
        assert ("timeout", "prerequisite", 0.9, OUT) in await edges("retry")
        same_version = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("retry", 2, [_rel("timeout", "follows")])]), timeout=60
        )
        assert same_version.results[0].outcome == pb.UPSERT_OUTCOME_STALE
        newer = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("retry", 3, [_rel("timeout", "follows")])]), timeout=60
        )
        assert newer.results[0].outcome == pb.UPSERT_OUTCOME_METADATA_UPDATED
        assert await edges("retry") == {
            ("timeout", "follows", 1.0, OUT),
            ("breaker", "enhances", 0.6, IN),
        }
        again = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("retry", 3, [_rel("timeout", "follows")])]), timeout=60
        )
        assert again.results[0].outcome == pb.UPSERT_OUTCOME_UNCHANGED

        # Deleting a node removes every relation from and to it.
        await stub.Delete(pb.DeleteRequest(ids=["breaker"]))
        assert await edges("retry") == {("timeout", "follows", 1.0, OUT)}


async def _graph(stub: search_pb2_grpc.SearchStub) -> None:
    await stub.Upsert(pb.UpsertRequest(nodes=[_node(k) for k in PATTERNS]), timeout=120)
    edges = [
        ("auth", "cache", "follows", 0.9),
        ("cache", "retry", "follows", 0.8),
        ("retry", "breaker", "follows", 0.5),
        ("auth", "timeout", "prerequisite", 0.3),
        ("timeout", "retry", "enhances", 1.0),
        ("breaker", "auth", "conflicts", 0.7),
        ("auth", "ghost", "follows", 1.0),  # the other end does not exist (yet)
    ]
    reply = await stub.Relate(
        pb.RelateRequest(
            edges=[
                pb.Edge(source_id=a, relation=_rel(b, kind, strength))
                for a, b, kind, strength in edges
            ]
        )
    )
    assert (reply.created, reply.updated) == (len(edges), 0)


async def test_related_walks_by_type_direction_depth_and_strength(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _graph(stub)

        async def walk(**kwargs: Any) -> dict[str, tuple[int, float, list[str]]]:
            reply = await stub.Related(pb.RelatedRequest(id="auth", **kwargs))
            assert reply.source_id == "auth"
            return {
                n.node.id: (n.depth, round(n.strength, 4), [s.to_id for s in n.path])
                for n in reply.nodes
            }

        assert await walk() == {"cache": (1, 0.9, ["cache"]), "timeout": (1, 0.3, ["timeout"])}
        two = await walk(depth=2)
        # retry is two steps away both ways: through cache (0.9 x 0.8) beats timeout (0.3 x 1).
        assert two["retry"] == (2, 0.72, ["cache", "retry"])
        assert "ghost" not in two  # a relation to a node that does not exist is not followed
        three = await walk(depth=3)
        assert three["breaker"] == (3, 0.36, ["cache", "retry", "breaker"])
        assert list(three) == ["cache", "timeout", "retry", "breaker"]  # nearest, strongest
        assert await walk(depth=3, types=["follows"]) == {
            "cache": (1, 0.9, ["cache"]),
            "retry": (2, 0.72, ["cache", "retry"]),
            "breaker": (3, 0.36, ["cache", "retry", "breaker"]),
        }
        assert set(await walk(depth=3, min_strength=0.75)) == {"cache", "retry"}
        incoming = await walk(direction=cpb.RELATION_DIRECTION_INCOMING)
        assert incoming == {"breaker": (1, 0.7, ["breaker"])}
        both = await stub.Related(
            pb.RelatedRequest(id="retry", direction=cpb.RELATION_DIRECTION_BOTH)
        )
        directions = {s.to_id: s.direction for n in both.nodes for s in n.path}
        assert directions == {"breaker": OUT, "cache": IN, "timeout": IN}
        assert len(await walk(depth=3, limit=2)) == 2

        # The missing end arrives: the relation is followed from then on.
        await stub.Upsert(
            pb.UpsertRequest(
                nodes=[cpb.Node(id="ghost", content_type="fix_pattern", title="ghost", body="x")]
            ),
            timeout=60,
        )
        assert "ghost" in await walk()
        removed = await stub.Unrelate(
            pb.UnrelateRequest(
                edges=[
                    pb.EdgeKey(source_id="auth", target_id="ghost"),
                    pb.EdgeKey(source_id="auth", target_id="cache", type="enhances"),
                ]
            )
        )
        assert removed.removed == 1
        assert "ghost" not in await walk()
        updated = await stub.Relate(
            pb.RelateRequest(
                edges=[pb.Edge(source_id="auth", relation=_rel("cache", "follows", 0.2))]
            )
        )
        assert (updated.created, updated.updated) == (0, 1)  # unique per (source, target, type)
        assert (await walk())["cache"] == (1, 0.2, ["cache"])
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.Related(pb.RelatedRequest(id="nobody"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_hits_carry_their_relations_on_request(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _graph(stub)
        found = await stub.Search(
            pb.SearchRequest(text="retry with backoff", top_k=3, include_relations=True)
        )
        retry = next(h.node for h in found.hits if h.node.id == "retry")
        assert _edges(retry) == {
            ("breaker", "follows", 0.5, OUT),
            ("cache", "follows", 0.8, IN),
            ("timeout", "enhances", 1.0, IN),
        }
        assert all(h.node.HasField("relations") for h in found.hits)
        near = await stub.Nearest(pb.NearestRequest(id="breaker", top_k=5, include_relations=True))
        assert all(h.node.HasField("relations") for h in near.hits)
        bare = await stub.Nearest(pb.NearestRequest(id="breaker", top_k=5))
        assert not any(h.node.HasField("relations") for h in bare.hits)


BAD: list[tuple[Any, str]] = [
    (pb.RelateRequest(), "edges"),
    (
        pb.RelateRequest(edges=[pb.Edge(source_id="a", relation=_rel("a", "follows"))]),
        "edges[0].relation.node_id",
    ),
    (
        pb.RelateRequest(edges=[pb.Edge(source_id="a", relation=_rel("b", "Follows"))]),
        "edges[0].relation.type",
    ),
    (
        pb.RelateRequest(edges=[pb.Edge(source_id="a", relation=_rel("b", "follows", 1.5))]),
        "edges[0].relation.strength",
    ),
    (
        pb.RelateRequest(
            edges=[pb.Edge(source_id="a", relation=_rel("b", "follows", float("nan")))]
        ),
        "edges[0].relation.strength",
    ),
    (
        pb.RelateRequest(edges=[pb.Edge(source_id="a\x00", relation=_rel("b", "follows"))]),
        "edges[0].source_id",
    ),
    (
        pb.RelateRequest(
            edges=[pb.Edge(source_id="a", relation=_rel("b", "follows", text="x" * 1001))]
        ),
        "edges[0].relation.description",
    ),
    (
        pb.RelateRequest(
            edges=[
                pb.Edge(source_id="a", relation=_rel("b", "f")),
                pb.Edge(source_id="a", relation=_rel("b", "f")),
            ]
        ),
        "edges[1]",
    ),
    (pb.UnrelateRequest(edges=[pb.EdgeKey(source_id="a", target_id="")]), "edges[0].target_id"),
    (pb.RelatedRequest(id="a", depth=4), "depth"),
    (pb.RelatedRequest(id="a", min_strength=-0.1), "min_strength"),
    (pb.RelatedRequest(id="a", limit=100_000), "limit"),
    (pb.RelatedRequest(id="a", types=["Bad"]), "types[0]"),
    (pb.RelatedRequest(), "id"),
    (
        pb.UpsertRequest(
            nodes=[
                _node("auth", relations=[_rel("cache", "follows"), _rel("cache", "follows", 0.5)])
            ]
        ),
        "nodes[0].relations.items[1]",
    ),
    (
        pb.UpsertRequest(nodes=[_node("auth", relations=[_rel("auth", "follows")])]),
        "nodes[0].relations.items[0].node_id",
    ),
]


async def test_bad_relation_input_is_invalid_argument_naming_the_field(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        for request, field in BAD:
            method = {
                "RelateRequest": stub.Relate,
                "UnrelateRequest": stub.Unrelate,
                "RelatedRequest": stub.Related,
                "UpsertRequest": stub.Upsert,
            }[type(request).__name__]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request, timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert (refused.value.details() or "").startswith(field), refused.value.details()


async def test_relations_on_content_events_through_the_indexer(
    *,
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    nats_server: Any,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from indexer_kit import indexer_env

    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        async with running_indexer(
            indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir),
            monkeypatch,
        ):
            await wait_for_streams(nats_server.url)
            for key, version, relations in (
                ("retry", 1, [_rel("timeout", "prerequisite", 0.9)]),
                ("timeout", 1, []),
            ):
                event = content_event(key, version, title=key, body=PATTERNS[key])
                event.node.relations.CopyFrom(cpb.Relations(items=relations))
                await publish(nc, event)

            async def arrived() -> bool:
                if not await _exists(stub, "timeout"):
                    return False
                reply = await stub.Related(
                    pb.RelatedRequest(id="timeout", direction=cpb.RELATION_DIRECTION_INCOMING)
                )
                return [n.node.id for n in reply.nodes] == ["retry"]

            await wait_for(arrived, timeout_s=120, what="the events' relations")


async def _exists(stub: search_pb2_grpc.SearchStub, key: str) -> bool:
    return bool((await stub.Get(pb.GetRequest(ids=[key]))).nodes)


async def test_relate_and_delete_of_its_targets_never_deadlock(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relate from one node to many over relations discovery found, while the targets are
    deleted: every call succeeds (no deadlock between the relation rows and discovery's
    rows, which PostgreSQL would break with an error, INTERNAL)."""
    targets = [key for key in PATTERNS if key != "auth"]
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        conn = await asyncpg.connect(env["DATABASE_URL"])
        failures: list[str] = []

        async def call(name: str, reply: Any) -> None:
            try:
                await reply
            except grpc.aio.AioRpcError as exc:
                failures.append(f"{name}: {exc.code()} {exc.details()}")

        try:
            for round_ in range(6):
                tenant = f"race{round_}"
                nodes = [_node(k) for k in PATTERNS]
                for node in nodes:
                    node.tenant = tenant
                await stub.Upsert(pb.UpsertRequest(nodes=nodes))
                await _as_discovered(conn, tenant, "auth", targets)
                edges = [pb.Edge(source_id="auth", relation=_rel(t, "similar")) for t in targets]
                await asyncio.gather(
                    call("Relate", stub.Relate(pb.RelateRequest(tenant=tenant, edges=edges))),
                    *(
                        call("Delete", stub.Delete(pb.DeleteRequest(tenant=tenant, ids=[t])))
                        for t in targets
                    ),
                )
        finally:
            await conn.close()
        assert failures == []


async def _as_discovered(conn: Any, tenant: str, hub: str, others: list[str]) -> None:
    """What discovery leaves after examining these nodes: their rows, and discovered
    `similar` relations between the hub and each other node, both ways."""
    await conn.execute(
        "INSERT INTO semantic.relation_discovery (tenant, node_id, space_id, content_hash)"
        " SELECT $1, k.id, 1, 'examined' FROM unnest($2::text[]) AS k(id)",
        tenant,
        [hub, *others],
    )
    await conn.execute(
        "INSERT INTO semantic.relations (tenant, source_id, target_id, type, discovered)"
        " SELECT $1, k.source_id, k.target_id, 'similar', true"
        " FROM unnest($2::text[], $3::text[]) AS k(source_id, target_id)",
        tenant,
        [hub] * len(others) + others,
        others + [hub] * len(others),
    )
