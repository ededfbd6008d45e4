"""Values PostgreSQL would refuse, or that break the documented formats, never reach it:
the search service answers INVALID_ARGUMENT naming the field (never INTERNAL, nothing
written), and the indexer dead-letters the event with reason ``invalid`` and a detail
naming the field (never a crash; valid events around them are applied)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from indexer_kit import (
    content_event,
    dead_letters,
    publish,
    publish_raw,
    running_indexer,
    running_search,
    search_env,
    vector_counts,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2, search_pb2_grpc
from semantic.v1 import search_pb2 as pb

NAN = float("nan")
INF = float("inf")
YEAR_10000 = 253_402_300_800  # seconds of 10000-01-01T00:00:00Z


@pytest.fixture
async def channel(
    database_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[grpc.aio.Channel]:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as ready:
        yield ready


def _node(**fields: Any) -> cpb.Node:
    metadata = fields.pop("metadata", None)
    vectors = fields.pop("vectors", None)
    base: dict[str, Any] = {"id": "n1", "content_type": "page", "title": "T", "body": "Body"}
    node = cpb.Node(**{**base, **fields})
    if metadata is not None:
        node.metadata.update(metadata)
    if vectors is not None:
        node.vectors.extend(vectors)
    return node


def _vector(chunk: int = 0) -> cpb.NamedVector:
    return cpb.NamedVector(
        name="code", chunk_index=chunk, vector=cpb.Vector(values=[1.0] + [0.0] * 383)
    )


def _with_time(node: cpb.Node, seconds: int, nanos: int = 0) -> cpb.Node:
    node.created_at.seconds, node.created_at.nanos = seconds, nanos
    return node


def _upsert(*nodes: cpb.Node, space_id: str = "") -> pb.UpsertRequest:
    return pb.UpsertRequest(nodes=list(nodes), space_id=space_id)


def _track(**fields: Any) -> pb.TrackRequest:
    context = fields.pop("context", None)
    seconds = fields.pop("seconds", None)
    nanos = fields.pop("nanos", 0)
    base: dict[str, Any] = {
        "event_id": "e1",
        "user_id": "u1",
        "node_id": "n1",
        "action": events_pb2.USER_ACTION_VIEW,
    }
    event = events_pb2.UserEvent(**{**base, **fields})
    if context is not None:
        event.context.update(context)
    if seconds is not None:
        event.occurred_at.seconds, event.occurred_at.nanos = seconds, nanos
    return pb.TrackRequest(events=[event])


def _equals(value: Any) -> cpb.Filter:
    condition = cpb.MetadataCondition(key="price")
    condition.equals.number_value = value
    return cpb.Filter(metadata=[condition])


def _created(seconds: int, nanos: int = 0) -> cpb.Filter:
    flt = cpb.Filter()
    flt.created.start.seconds, flt.created.start.nanos = seconds, nanos
    return flt


Call = tuple[str, str, Any]
SEARCH = "Search"
ADMIN = "Admin"

CASES: list[tuple[str, Call, str]] = [
    # NUL in any string bound for PostgreSQL
    ("nul id", (SEARCH, "Upsert", _upsert(_node(id="a\x00b"))), "nodes[0].id"),
    ("nul tenant", (SEARCH, "Upsert", _upsert(_node(tenant="t\x00"))), "nodes[0].tenant"),
    ("nul title", (SEARCH, "Upsert", _upsert(_node(title="a\x00"))), "nodes[0].title"),
    ("nul body", (SEARCH, "Upsert", _upsert(_node(body="a\x00"))), "nodes[0].body"),
    ("nul tag", (SEARCH, "Upsert", _upsert(_node(tags=["a\x00"]))), "nodes[0].tags[0]"),
    ("nul slug", (SEARCH, "Upsert", _upsert(_node(slug="s\x00"))), "nodes[0].slug"),
    ("nul text", (SEARCH, "Upsert", _upsert(_node(texts={"code": "\x00"}))), "nodes[0].texts"),
    (
        "nul metadata key",
        (SEARCH, "Upsert", _upsert(_node(metadata={"a\x00": 1}))),
        "nodes[0].metadata",
    ),
    (
        "nul metadata value",
        (SEARCH, "Upsert", _upsert(_node(metadata={"a": {"b": "\x00"}}))),
        "nodes[0].metadata.a.b",
    ),
    ("nul query", (SEARCH, "Search", pb.SearchRequest(text="a\x00b")), "text"),
    ("nul search tenant", (SEARCH, "Search", pb.SearchRequest(tenant="\x00", text="a")), "tenant"),
    (
        "nul filter type",
        (SEARCH, "Search", pb.SearchRequest(text="a", filter=cpb.Filter(content_types=["\x00"]))),
        "filter.content_types[0]",
    ),
    (
        "nul filter tag",
        (SEARCH, "Search", pb.SearchRequest(text="a", filter=cpb.Filter(tags_any=["\x00"]))),
        "filter.tags_any[0]",
    ),
    ("nul get id", (SEARCH, "Get", pb.GetRequest(ids=["\x00"])), "ids[0]"),
    ("nul delete slug", (SEARCH, "Delete", pb.DeleteRequest(slugs=["\x00"])), "slugs[0]"),
    ("nul nearest slug", (SEARCH, "Nearest", pb.NearestRequest(slug="a\x00")), "slug"),
    ("nul stats tenant", (SEARCH, "Stats", pb.StatsRequest(tenant="\x00")), "tenant"),
    ("nul track user", (SEARCH, "Track", _track(user_id="u\x00")), "events[0].user_id"),
    ("nul recommend user", (SEARCH, "Recommend", pb.RecommendRequest(user_id="\x00")), "user_id"),
    (
        "nul example",
        (
            SEARCH,
            "Recommend",
            pb.RecommendRequest(positive=[pb.RecommendExample(id="\x00")]),
        ),
        "positive[0].id",
    ),
    ("nul model dir", (ADMIN, "Reindex", pb.ReindexRequest(model_dir="/m\x00")), "model_dir"),
    # integers beyond their column
    ("version 2^63", (SEARCH, "Upsert", _upsert(_node(version=2**63))), "nodes[0].version"),
    ("delete version", (SEARCH, "Delete", pb.DeleteRequest(ids=["a"], version=2**63)), "version"),
    (
        "chunk 2^31",
        (SEARCH, "Upsert", _upsert(_node(vectors=[_vector(2**31)]))),
        "nodes[0].vectors[0].chunk_index",
    ),
    ("space superscript", (SEARCH, "Upsert", _upsert(_node(), space_id="²")), "space_id"),
    (
        "space 2^31",
        (SEARCH, "Search", pb.SearchRequest(text="a", space_id="2147483648")),
        "space_id",
    ),
    ("space activate", (ADMIN, "ActivateSpace", pb.ActivateSpaceRequest(space_id="٣")), "space_id"),
    # timestamps
    (
        "created year 10000",
        (SEARCH, "Upsert", _upsert(_with_time(_node(), YEAR_10000))),
        "nodes[0].created_at",
    ),
    (
        "created nanos",
        (SEARCH, "Upsert", _upsert(_with_time(_node(), 0, -1))),
        "nodes[0].created_at.nanos",
    ),
    (
        "filter year 0",
        (SEARCH, "Search", pb.SearchRequest(text="a", filter=_created(-62_135_596_801))),
        "filter.created.start",
    ),
    (
        "occurred nanos",
        (SEARCH, "Track", _track(seconds=0, nanos=2_000_000_000)),
        "events[0].occurred_at.nanos",
    ),
    # non-finite numbers in Structs and floats
    (
        "nan metadata",
        (SEARCH, "Upsert", _upsert(_node(metadata={"price": NAN}))),
        "nodes[0].metadata.price",
    ),
    (
        "inf in a metadata list",
        (SEARCH, "Upsert", _upsert(_node(metadata={"a": [1, INF]}))),
        "nodes[0].metadata.a[1]",
    ),
    (
        "nan filter value",
        (SEARCH, "Search", pb.SearchRequest(text="a", filter=_equals(NAN))),
        "filter.metadata[0].equals",
    ),
    ("nan min_score", (SEARCH, "Search", pb.SearchRequest(text="a", min_score=NAN)), "min_score"),
    (
        "inf target weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", targets=[pb.VectorTarget(name="content", weight=INF)]),
        ),
        "targets[0].weight",
    ),
    # numbers whose products or squares overflow or underflow in the similarity arithmetic
    (
        "huge target weights",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(
                text="a",
                targets=[
                    pb.VectorTarget(name="content", weight=1e308),
                    pb.VectorTarget(name="title", weight=1e308),
                ],
            ),
        ),
        "targets[0].weight",
    ),
    (
        "subnormal target weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", targets=[pb.VectorTarget(name="content", weight=5e-324)]),
        ),
        "targets[0].weight",
    ),
    (
        "huge hybrid weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", hybrid=pb.HybridParams(keyword_weight=1e308)),
        ),
        "hybrid.keyword_weight",
    ),
    (
        "offset + top_k above the limit",
        (SEARCH, "Search", pb.SearchRequest(text="a", offset=10_000, top_k=1)),
        "offset",
    ),
    (
        "query vector too long",
        (SEARCH, "Search", pb.SearchRequest(vector=cpb.Vector(values=[3.4e38] * 384))),
        "vector",
    ),
    (
        "stored vector too short",
        (
            SEARCH,
            "Upsert",
            _upsert(
                _node(
                    vectors=[cpb.NamedVector(name="code", vector=cpb.Vector(values=[1e-45] * 384))]
                )
            ),
        ),
        "nodes[0].vectors[0].vector",
    ),
    (
        "nan hybrid weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", hybrid=pb.HybridParams(dense_weight=NAN)),
        ),
        "hybrid.dense_weight",
    ),
    (
        "too many expansion hits",
        (SEARCH, "Search", pb.SearchRequest(text="a", hybrid=pb.HybridParams(expansion_docs=11))),
        "hybrid.expansion_docs",
    ),
    (
        "negative expansion weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", hybrid=pb.HybridParams(expansion_weight=-1.0)),
        ),
        "hybrid.expansion_weight",
    ),
    (
        "nan expansion weight",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", hybrid=pb.HybridParams(expansion_weight=NAN)),
        ),
        "hybrid.expansion_weight",
    ),
    (
        "unknown fusion",
        (
            SEARCH,
            "Search",
            pb.SearchRequest(text="a", hybrid=pb.HybridParams(fusion=7)),  # type: ignore[arg-type]
        ),
        "hybrid.fusion",
    ),
    ("nan track weight", (SEARCH, "Track", _track(weight=NAN)), "events[0].weight"),
    ("inf context", (SEARCH, "Track", _track(context={"p": INF})), "events[0].context.p"),
    (
        "nan recommend weight",
        (
            SEARCH,
            "Recommend",
            pb.RecommendRequest(weights=pb.RecommendWeights(recency=NAN)),
        ),
        "weights.recency",
    ),
    # the same node, or the same vector chunk, twice in one request
    ("node twice", (SEARCH, "Upsert", _upsert(_node(), _node())), "nodes[1].id"),
    (
        "slug twice",
        (SEARCH, "Upsert", _upsert(_node(slug="s"), _node(id="n2", slug="s"))),
        "nodes[1].slug",
    ),
    (
        "chunk twice",
        (SEARCH, "Upsert", _upsert(_node(vectors=[_vector(), _vector()]))),
        "nodes[0].vectors[1]",
    ),
    ("delete id twice", (SEARCH, "Delete", pb.DeleteRequest(ids=["a", "b", "a"])), "ids[2]"),
    # documented formats and lengths
    ("tenant format", (SEARCH, "Upsert", _upsert(_node(tenant="../x y"))), "nodes[0].tenant"),
    ("huge tenant", (SEARCH, "Get", pb.GetRequest(tenant="t" * 400_000, ids=["a"])), "tenant"),
    (
        "content type",
        (SEARCH, "Upsert", _upsert(_node(content_type="Page X!"))),
        "nodes[0].content_type",
    ),
    ("long id", (SEARCH, "Upsert", _upsert(_node(id="x" * 400))), "nodes[0].id"),
    ("heal type", (ADMIN, "Heal", pb.HealRequest(content_type="Page X!")), "content_type"),
    (
        "vector name",
        (SEARCH, "Nearest", pb.NearestRequest(id="a", vector_name="No!")),
        "vector_name",
    ),
]


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_values_are_invalid_argument_naming_the_field_and_nothing_is_written(
    channel: grpc.aio.Channel, call: Call, field: str
) -> None:
    service, method, request = call
    stub: Any = (
        search_pb2_grpc.SearchStub(channel)
        if service == SEARCH
        else search_pb2_grpc.AdminStub(channel)
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(stub, method)(request, timeout=30)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert (caught.value.details() or "").startswith(f"{field}"), caught.value.details()
    search = search_pb2_grpc.SearchStub(channel)
    assert (await search.Stats(pb.StatsRequest(all_tenants=True))).nodes_total == 0
    reply = await search.Upsert(_upsert(_node(metadata={"price": 1.5})))
    assert reply.results[0].outcome == pb.UPSERT_OUTCOME_CREATED


async def test_the_largest_values_that_fit_are_stored(channel: grpc.aio.Channel) -> None:
    search = search_pb2_grpc.SearchStub(channel)
    node = _node(
        id="x" * 256,
        tenant="T" * 64,
        version=2**63 - 1,
        tags=["t" * 128],
        vectors=[_vector(1023)],
        metadata={"deep": {"a": [1e308, -1e308, ""]}},
    )
    # The last microsecond of 9999 would be PostgreSQL's "infinity" to the driver: refused.
    _with_time(node, 253_402_300_799, 999_998_999)
    reply = await search.Upsert(_upsert(node))
    assert reply.results[0].version == 2**63 - 1
    got = await search.Get(pb.GetRequest(tenant="T" * 64, ids=["x" * 256], include_vectors=True))
    assert [v.chunk_index for v in got.nodes[0].vectors if v.name == "code"] == [1023]
    assert got.nodes[0].metadata["deep"]["a"][0] == 1e308


# --- the indexer -------------------------------------------------------------------------


def _bad_content_events() -> list[tuple[str, events_pb2.ContentEvent, str]]:
    """(subject, event, field the dead letter must name)."""
    out: list[tuple[str, events_pb2.ContentEvent, str]] = []

    def add(field: str, change: Callable[[events_pb2.ContentEvent], None]) -> None:
        event = content_event(f"bad-{len(out)}", 1, title="T", body="Body")
        change(event)
        out.append(("semantic.content._.page", event, field))

    add("version", lambda e: setattr(e, "version", 2**63))
    add("node.tenant", lambda e: setattr(e.node, "tenant", "../x y"))
    add("node.content_type", lambda e: setattr(e.node, "content_type", "Page X!"))
    add("node.id", lambda e: setattr(e.node, "id", "x" * 400))
    add("node.title", lambda e: setattr(e.node, "title", "a\x00b"))
    add("node.tags[0]", lambda e: e.node.tags.append("\x00"))
    add("node.metadata.price", lambda e: e.node.metadata.update({"price": NAN}))
    add("node.metadata", lambda e: e.node.metadata.update({"\x00": 1}))
    add("occurred_at", lambda e: setattr(e.occurred_at, "seconds", YEAR_10000))
    add("node.created_at.nanos", lambda e: setattr(e.node.created_at, "nanos", -5))
    return out


async def test_bad_events_are_dead_lettered_naming_the_field(
    nc: NatsClient, env: dict[str, str], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = _bad_content_events()
    user = events_pb2.UserEvent(
        event_id=str(uuid.uuid4()),
        user_id="u1",
        node_id="good",
        action=events_pb2.USER_ACTION_VIEW,
        weight=NAN,
    )
    async with running_indexer(env, monkeypatch):
        await wait_for_streams(env["NATS_URL"])
        for subject, event, _ in bad:
            await publish_raw(nc, subject, event.SerializeToString())
        await nc.jetstream().publish("semantic.user._", user.SerializeToString())
        await publish(nc, content_event("good", 1, title="Good", body="A valid event."))

        async def all_dead() -> bool:
            return len(await dead_letters(env["NATS_URL"])) >= len(bad) + 1

        await wait_for(all_dead, what="every bad event dead-lettered")

        async def good_indexed() -> bool:
            return (await vector_counts(database_url)).get("good", 0) > 0

        await wait_for(good_indexed, what="the valid event")
    letters = await dead_letters(env["NATS_URL"])
    detail_by_id: dict[str, tuple[str, str]] = {}
    for subject, headers, payload in letters:
        if subject.startswith("semantic.dlq.user."):
            key = events_pb2.UserEvent.FromString(payload).event_id
        else:
            key = events_pb2.ContentEvent.FromString(payload).event_id
        detail_by_id[key] = (headers["Semantic-Dlq-Reason"], headers["Semantic-Dlq-Detail"])
    for _, event, field in bad:
        reason, detail = detail_by_id[event.event_id]
        assert reason == "invalid", (field, detail)
        assert detail.startswith(f"{field}:"), (field, detail)
    assert detail_by_id[user.event_id][0] == "invalid"
    assert detail_by_id[user.event_id][1].startswith("weight:")
    assert set(await vector_counts(database_url)) == {"good"}
