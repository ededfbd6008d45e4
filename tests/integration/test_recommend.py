"""Recommendations through the gRPC Search service: tracking moves the journey at once,
exclusions, smoothed engagement, cold start, examples, diversity, explanations, errors
and per-user authorisation. Real PostgreSQL, real embedder."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import grpc
import pytest
from indexer_kit import running_search
from recommend_kit import TOPICS, topic_nodes

from semantic.common.auth import mint_token
from semantic.tools.cli.main import main
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

SECRET = "recommend-secret-0123456789-abcdefghijkl"


def _event(
    user: str, node: str, action: int, *, archetype: str = "", weight: float | None = None
) -> epb.UserEvent:
    event = epb.UserEvent(
        event_id=str(uuid.uuid4()), user_id=user, node_id=node, action=action, archetype=archetype
    )
    if weight is not None:
        event.weight = weight
    return event


@pytest.fixture
async def stubs(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[search_pb2_grpc.SearchStub, str]]:
    env = {
        "DATABASE_URL": database_url,
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_EMBEDDER_ADDRESS": embedder_address,
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": "semantic",
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
    }
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        await search.Upsert(pb.UpsertRequest(nodes=topic_nodes()), metadata=_auth("svc", "service"))
        yield search, "svc"


def _auth(subject: str, *roles: str) -> tuple[tuple[str, str], ...]:
    token = mint_token(SECRET, subject=subject, roles=roles, audience="semantic")
    return (("authorization", f"Bearer {token}"),)


SERVICE = _auth("svc", "service")


async def _track(search: search_pb2_grpc.SearchStub, *events: epb.UserEvent) -> pb.TrackResponse:
    reply: pb.TrackResponse = await search.Track(
        pb.TrackRequest(events=list(events)), metadata=SERVICE
    )
    return reply


async def _recommend(search: search_pb2_grpc.SearchStub, **fields: object) -> pb.RecommendResponse:
    reply: pb.RecommendResponse = await search.Recommend(
        pb.RecommendRequest(**fields),
        metadata=SERVICE,  # type: ignore[arg-type]
    )
    return reply


async def test_the_journey_drives_recommendations_and_each_event_counts_at_once(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    tracked = await _track(
        search,
        _event("u1", "bread0", epb.USER_ACTION_VIEW),
        _event("u1", "bread1", epb.USER_ACTION_LIKE),
    )
    assert (tracked.accepted, tracked.duplicates) == (2, 0)
    reply = await _recommend(search, user_id="u1", top_k=4, exclude_seen=True)
    assert reply.journey_events == 2
    ids = [h.node.id for h in reply.hits]
    assert [h.score for h in reply.hits] == sorted((h.score for h in reply.hits), reverse=True)
    assert {ids[0], ids[1]} == {"bread2", "bread3"}  # the unseen bread nodes come first
    top = reply.hits[0]
    assert top.explanation.source == pb.RECOMMEND_SOURCE_JOURNEY
    parts = top.explanation
    total = sum(
        p.contribution
        for p in (parts.similarity, parts.engagement, parts.recency, parts.archetype_prior)
    )
    assert top.score == pytest.approx(total)
    assert parts.similarity.value > 0.3
    assert {s.node_id for s in parts.similar_to} <= {"bread0", "bread1"}
    assert parts.similar_to[0].title in TOPICS["bread"]

    # Dismissing the top hit removes it from the very next call; so does converting.
    await _track(search, _event("u1", ids[0], epb.USER_ACTION_DISMISS))
    await _track(search, _event("u1", ids[1], epb.USER_ACTION_CONVERT))
    again = await _recommend(search, user_id="u1", top_k=12)
    again_ids = [h.node.id for h in again.hits]
    assert ids[0] not in again_ids
    assert ids[1] not in again_ids
    with_converted = await _recommend(search, user_id="u1", top_k=12, include_converted=True)
    assert ids[1] in [h.node.id for h in with_converted.hits]
    assert ids[0] not in [h.node.id for h in with_converted.hits]


async def test_a_new_interest_moves_the_journey(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    await _track(search, _event("u2", "garden0", epb.USER_ACTION_VIEW))
    first = await _recommend(search, user_id="u2", top_k=3, exclude_seen=True)
    assert first.hits[0].node.id.startswith("garden")
    await _track(
        search,
        *(_event("u2", f"tls{i}", epb.USER_ACTION_CLICK) for i in range(2)),
        _event("u2", "tls2", epb.USER_ACTION_CONVERT),
    )
    second = await _recommend(search, user_id="u2", top_k=1, exclude_seen=True)
    assert second.hits[0].node.id == "tls3"


async def test_engagement_is_smoothed_with_a_prior(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    # garden1: 1 view and 1 click; garden2: 1,000 views and 300 clicks.
    await _track(
        search,
        _event("a", "garden1", epb.USER_ACTION_VIEW),
        _event("a", "garden1", epb.USER_ACTION_CLICK),
    )
    for batch in range(2):
        events = [_event(f"v{batch}-{i}", "garden2", epb.USER_ACTION_VIEW) for i in range(500)] + [
            _event(f"c{batch}-{i}", "garden2", epb.USER_ACTION_CLICK) for i in range(150)
        ]
        await _track(search, *events)
    # Everything else is shown without being clicked: the tenant's mean rate is ~10%.
    for batch in range(2):
        shown = [
            _event(f"s{batch}-{i}", f"bread{i % 4}", epb.USER_ACTION_IMPRESSION)
            for i in range(1000)
        ]
        await _track(search, *shown)
    reply = await _recommend(search, top_k=12, weights=pb.RecommendWeights(similarity=0))
    by_id = {h.node.id: h for h in reply.hits}
    few, many = by_id["garden1"].explanation, by_id["garden2"].explanation
    assert many.engagement.value > few.engagement.value
    assert many.engagement_counts.clicks == 300
    assert many.engagement_counts.impressions == 1000
    assert reply.hits[0].node.id == "garden2"


async def test_cold_start_gets_the_archetype_or_global_popular_nodes(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    nobody = await _recommend(search, user_id="new-user", top_k=5)
    assert nobody.journey_events == 0  # no history, no popularity yet: still an answer
    # Nothing is popular yet: the newest nodes fill the answer up to top_k.
    assert len({h.node.id for h in nobody.hits}) == 5
    await _track(search, _event("one", "tls0", epb.USER_ACTION_CLICK))
    one_engaged = await _recommend(search, user_id="new-user", top_k=5)
    assert len({h.node.id for h in one_engaged.hits}) == 5
    assert "tls0" in {h.node.id for h in one_engaged.hits}
    await _track(
        search,
        *(_event(f"b{i}", "bread3", epb.USER_ACTION_LIKE, archetype="baker") for i in range(3)),
        *(_event(f"g{i}", "tls1", epb.USER_ACTION_LIKE) for i in range(5)),
    )
    popular = await _recommend(search, user_id="another-new-user", top_k=2)
    assert popular.hits[0].node.id == "tls1"
    assert popular.hits[0].explanation.source == pb.RECOMMEND_SOURCE_GLOBAL_POPULAR
    baker = await _recommend(search, user_id="another-new-user", archetype="baker", top_k=2)
    assert baker.archetype == "baker"
    assert baker.hits[0].node.id == "bread3"
    assert baker.hits[0].explanation.archetype_prior.value == pytest.approx(1.0)
    assert baker.hits[0].explanation.source == pb.RECOMMEND_SOURCE_ARCHETYPE_POPULAR


async def test_examples_average_vector_and_best_score(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    average = await _recommend(
        search,
        positive=[pb.RecommendExample(id="tls0"), pb.RecommendExample(slug="tls-1")],
        negative=[pb.RecommendExample(id="bread0")],
        top_k=2,
    )
    assert all(h.node.id in {"tls2", "tls3"} for h in average.hits)
    assert average.hits[0].explanation.source == pb.RECOMMEND_SOURCE_EXAMPLES
    best = await _recommend(
        search,
        positive=[pb.RecommendExample(id="garden0"), pb.RecommendExample(id="bread0")],
        strategy=pb.RECOMMEND_STRATEGY_BEST_SCORE,
        top_k=4,
    )
    found = {h.node.id[:-1] for h in best.hits}
    assert found == {"garden", "bread"}  # near either example, not a blend of both
    assert "garden0" not in {h.node.id for h in best.hits}  # examples are excluded
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await _recommend(search, positive=[pb.RecommendExample(id="nope")])
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert "positive[0]" in (missing.value.details() or "")


async def test_diversity_caps_a_content_type_and_mmr_reranks(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    capped = await _recommend(
        search,
        positive=[pb.RecommendExample(id="bread0")],
        top_k=4,
        diversity=pb.Diversity(max_share_per_content_type=0.25),
    )
    types = [h.node.content_type for h in capped.hits]
    assert len(types) == len(set(types))  # at most one per type (0.25 x 4)
    mmr = await _recommend(
        search,
        positive=[pb.RecommendExample(id="bread0")],
        top_k=4,
        diversity=pb.Diversity(mmr_lambda=0.3),
    )
    assert all(h.explanation.HasField("mmr_score") for h in mmr.hits)
    assert len({h.node.id[:-1] for h in mmr.hits}) >= 2  # not four breads in a row


async def test_track_duplicates_unknown_nodes_and_invalid_events(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    event = _event("u3", "bread0", epb.USER_ACTION_VIEW)
    unknown = _event("u3", "no-such-node", epb.USER_ACTION_VIEW)
    first = await _track(search, event, unknown)
    assert (first.accepted, first.duplicates, list(first.unknown_node_events)) == (1, 0, [1])
    again = await _track(search, event)
    assert (again.accepted, again.duplicates) == (0, 1)
    bad_action = _event("u3", "bread0", epb.USER_ACTION_UNSPECIFIED)
    future = _event("u3", "bread0", epb.USER_ACTION_VIEW)
    future.occurred_at.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    heavy = _event("u3", "bread0", epb.USER_ACTION_VIEW, weight=1e6)
    for wrong, field in ((bad_action, "action"), (future, "occurred_at"), (heavy, "weight")):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _track(search, event, wrong)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"events[1].{field}" in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await _recommend(search, user_id="u3", top_k=1000)
    assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "top_k" in (too_many.value.details() or "")


async def test_a_user_token_reads_only_its_own_recommendations(
    stubs: tuple[search_pb2_grpc.SearchStub, str],
) -> None:
    search, _ = stubs
    mine = await search.Recommend(
        pb.RecommendRequest(user_id="alice", top_k=2), metadata=_auth("alice", "reader")
    )
    assert mine.journey_events == 0
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await search.Recommend(
            pb.RecommendRequest(user_id="bob", top_k=2), metadata=_auth("alice", "reader")
        )
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as reader_tracks:
        await search.Track(
            pb.TrackRequest(events=[_event("alice", "bread0", epb.USER_ACTION_VIEW)]),
            metadata=_auth("alice", "reader"),
        )
    assert reader_tracks.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_archetypes_are_derived_by_clustering_journeys(
    stubs: tuple[search_pb2_grpc.SearchStub, str], database_url: str
) -> None:
    search, _ = stubs
    for topic in ("bread", "tls"):
        for user in range(4):
            await _track(
                search,
                *(
                    _event(f"{topic}-fan{user}", f"{topic}{i}", epb.USER_ACTION_VIEW)
                    for i in range(3)
                ),
            )
    # The command line the indexer's heal loop also runs (DATABASE_URL is set by the fixture).
    assert await asyncio.to_thread(main, ["archetypes", "--k", "2"]) == 0
    conn = await asyncpg.connect(database_url)
    try:
        labels = {
            r["user_id"]: (r["archetype"], r["archetype_source"])
            for r in await conn.fetch(
                "SELECT user_id, archetype, archetype_source FROM semantic.users"
            )
        }
    finally:
        await conn.close()
    bread = {labels[f"bread-fan{u}"] for u in range(4)}
    tls = {labels[f"tls-fan{u}"] for u in range(4)}
    assert len(bread) == 1
    assert len(tls) == 1
    assert bread != tls
    [(bread_label, source)] = bread
    assert source == "derived"
    assert bread_label.startswith("derived_")
    # A newcomer with one bread view is placed by the nearest centroid.
    await _track(search, _event("newcomer", "bread0", epb.USER_ACTION_VIEW))
    reply = await _recommend(search, user_id="newcomer", top_k=3, exclude_seen=True)
    assert reply.archetype == bread_label
    assert reply.hits[0].node.id.startswith("bread")
    assert reply.hits[0].explanation.archetype_prior.value > 0
