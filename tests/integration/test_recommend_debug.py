"""The recommendation debugger (Admin.ExplainRecommendation) on the real search service,
PostgreSQL and embedder: the journey with each event's weight, exclusions with their
reasons, candidates beyond top_k with score parts that sum to the score, the embeddings
used, and the same hits as a plain Recommend."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import pytest
from indexer_kit import running_search, search_env
from recommend_kit import TOPICS, topic_nodes

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

WEIGHTS = {
    epb.USER_ACTION_VIEW: 1.0,
    epb.USER_ACTION_CONVERT: 5.0,
    epb.USER_ACTION_DISMISS: -2.0,
}  # the defaults (SEMANTIC_RECOMMEND_WEIGHT_*)

Stubs = tuple[search_pb2_grpc.SearchStub, search_pb2_grpc.AdminStub]


@pytest.fixture
async def stubs(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Stubs]:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        await search.Upsert(pb.UpsertRequest(nodes=topic_nodes(with_body=False)))
        yield search, search_pb2_grpc.AdminStub(channel)


def _event(user: str, node: str, action: int, archetype: str = "") -> epb.UserEvent:
    return epb.UserEvent(
        event_id=str(uuid.uuid4()), user_id=user, node_id=node, action=action, archetype=archetype
    )


def _score(part_holder: pb.DebugCandidate | pb.RecommendExplanation) -> float:
    parts = (
        part_holder.similarity,
        part_holder.engagement,
        part_holder.recency,
        part_holder.archetype_prior,
    )
    return sum(p.contribution for p in parts)


async def test_the_debug_explains_a_users_recommendation(stubs: Stubs) -> None:
    search, admin = stubs
    await search.Track(
        pb.TrackRequest(
            events=[
                _event("u1", "bread0", epb.USER_ACTION_VIEW, archetype="baker"),
                _event("u1", "bread1", epb.USER_ACTION_CONVERT),
                _event("u1", "tls0", epb.USER_ACTION_DISMISS),
            ]
        )
    )
    request = pb.RecommendRequest(user_id="u1", top_k=4)
    plain = await search.Recommend(request)
    debug = await admin.ExplainRecommendation(pb.ExplainRecommendationRequest(request=request))

    # The same recommendation as a plain call.
    assert [h.node.id for h in debug.response.hits] == [h.node.id for h in plain.hits]
    assert debug.response.journey_events == 3

    # The journey: each event with its weight, newest first.
    by_node = {item.node_id: item for item in debug.journey}
    assert set(by_node) == {"bread0", "bread1", "tls0"}
    for node_id, action in (
        ("bread0", epb.USER_ACTION_VIEW),
        ("bread1", epb.USER_ACTION_CONVERT),
        ("tls0", epb.USER_ACTION_DISMISS),
    ):
        item = by_node[node_id]
        assert item.action == action
        assert item.weight == WEIGHTS[action]
        assert 0 < item.decay <= 1
        assert item.contribution == pytest.approx(item.weight * item.decay)
        assert item.has_vector
        assert item.title in TOPICS[node_id.rstrip("0123456789")]
    assert by_node["bread0"].slug == "bread-0"
    times = [item.occurred_at.ToDatetime() for item in debug.journey]
    assert times == sorted(times, reverse=True)
    assert debug.journey_weight > 0

    # The archetype came with an event: stored with the user.
    assert debug.archetype == "baker"
    assert debug.archetype_origin == pb.ARCHETYPE_ORIGIN_STORED

    # Exclusions with their reasons.
    reasons = {(e.node_id, e.reason) for e in debug.exclusions}
    assert ("bread1", pb.EXCLUSION_REASON_CONVERTED) in reasons
    assert ("tls0", pb.EXCLUSION_REASON_DISMISSED) in reasons
    assert "bread0" not in {e.node_id for e in debug.exclusions}  # seen, not excluded
    candidate_ids = {c.node_id for c in debug.candidates}
    assert not candidate_ids & {"bread1", "tls0"}

    # Candidates beyond top_k, each with parts summing to its score.
    assert debug.candidates_total == len(debug.candidates) == 10  # 12 nodes, 2 excluded
    kept = [c for c in debug.candidates if c.kept]
    assert [c.node_id for c in sorted(kept, key=lambda c: c.rank)] == [
        h.node.id for h in plain.hits
    ]
    for candidate in debug.candidates:
        assert candidate.score == pytest.approx(_score(candidate))
        assert candidate.title
        if not candidate.kept:
            assert candidate.rank == 0
            assert candidate.dropped == pb.DROP_REASON_BELOW_TOP_K
    scores = [c.score for c in debug.candidates]
    assert scores == sorted(scores, reverse=True)
    for hit in debug.response.hits:
        assert hit.score == pytest.approx(_score(hit.explanation))

    # The embeddings: the space, and the journey nodes whose vectors make the journey.
    used = debug.embeddings
    assert used.space_id == plain.space_id
    assert used.vector_name == "content"
    assert used.query == "journey"
    assert used.journey_stored
    assert set(used.journey_node_ids) == {"bread0", "bread1", "tls0"}
    assert list(used.example_node_ids) == []


async def test_the_debug_shows_examples_filters_the_diversity_cap_and_a_given_archetype(
    stubs: Stubs,
) -> None:
    search, admin = stubs
    request = pb.RecommendRequest(
        top_k=3,
        archetype="gardener",
        positive=[pb.RecommendExample(id="garden0")],
        filter=cpb.Filter(exclude_ids=["garden1"]),
        diversity=pb.Diversity(max_share_per_content_type=0.34),  # one hit per type
    )
    plain = await search.Recommend(request)
    debug = await admin.ExplainRecommendation(
        pb.ExplainRecommendationRequest(request=request, max_candidates=3)
    )
    assert [h.node.id for h in debug.response.hits] == [h.node.id for h in plain.hits]
    assert debug.archetype_origin == pb.ARCHETYPE_ORIGIN_GIVEN
    assert list(debug.journey) == []
    reasons = {(e.node_id, e.reason) for e in debug.exclusions}
    assert ("garden0", pb.EXCLUSION_REASON_EXAMPLE) in reasons
    assert ("garden1", pb.EXCLUSION_REASON_FILTER) in reasons
    capped = {e.node_id for e in debug.exclusions if e.reason == pb.EXCLUSION_REASON_DIVERSITY_CAP}
    assert capped
    hit_types = [h.node.content_type for h in debug.response.hits]
    assert len(hit_types) == len(set(hit_types))  # the cap: one per content type
    # At most max_candidates listed besides the hits; the capped ones among them say so.
    assert len(debug.candidates) <= 3 + len(debug.response.hits)
    assert debug.candidates_total > len(debug.candidates)
    for candidate in debug.candidates:
        if candidate.node_id in capped:
            assert candidate.dropped == pb.DROP_REASON_DIVERSITY_CAP
    assert debug.embeddings.query == "examples"
    assert list(debug.embeddings.example_node_ids) == ["garden0"]


async def test_the_debug_explains_events_at_the_ends_of_the_time_range(
    stubs: Stubs, database_url: str
) -> None:
    """An event at the first microsecond the API accepts, and one stored as -infinity (by a
    version that let the range's first instant through): explained, not INTERNAL."""
    search, admin = stubs
    early = _event("old", "bread0", epb.USER_ACTION_VIEW)
    early.occurred_at.FromDatetime(datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    await search.Track(pb.TrackRequest(events=[early]))
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE semantic.user_events SET occurred_at = '-infinity' WHERE user_id = 'old'"
        )
    finally:
        await conn.close()
    late = _event("old", "bread1", epb.USER_ACTION_CLICK)
    late.occurred_at.FromDatetime(datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    await search.Track(pb.TrackRequest(events=[late]))
    request = pb.RecommendRequest(user_id="old", top_k=4)
    debug = await admin.ExplainRecommendation(pb.ExplainRecommendationRequest(request=request))
    assert {item.node_id for item in debug.journey} == {"bread0", "bread1"}
    assert all(item.decay < 1e-6 for item in debug.journey)
    first = _event("old", "bread2", epb.USER_ACTION_VIEW)
    first.occurred_at.FromDatetime(datetime(1, 1, 1, tzinfo=UTC))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.Track(pb.TrackRequest(events=[first]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "events[0].occurred_at" in (refused.value.details() or "")


async def test_the_debug_validates_its_request(stubs: Stubs) -> None:
    _, admin = stubs
    for bad, field in (
        (pb.ExplainRecommendationRequest(max_candidates=501), "max_candidates"),
        (
            pb.ExplainRecommendationRequest(request=pb.RecommendRequest(top_k=100_000)),
            "request.top_k",
        ),
        (
            pb.ExplainRecommendationRequest(request=pb.RecommendRequest(space_id="x")),
            "request.space_id",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await admin.ExplainRecommendation(bad)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in (caught.value.details() or "")
