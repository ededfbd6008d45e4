"""Recommend and Track protobuf conversion: defaults filled in, each bad value an
InvalidArgument naming its field, and the response carrying every part of a hit's score."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from semantic.common.errors import InvalidArgument
from semantic.core.domain import DEFAULT_VECTOR, NodeRecord
from semantic.core.recommend.events import Action
from semantic.core.recommend.settings import RecommendSettings
from semantic.core.recommend.values import (
    DEFAULT_TOP_K,
    Part,
    RecommendHit,
    RecommendQuery,
    RecommendResult,
    RelatedVia,
    Similar,
)
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire.recommend import (
    recommend_query_from_proto,
    recommend_to_proto,
    user_event_from_proto,
)

pytestmark = pytest.mark.unit
SETTINGS = RecommendSettings()
CONFIG = SETTINGS.recommend_config()
TRACK = SETTINGS.track_config()
NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _query(**fields: object) -> RecommendQuery:
    return recommend_query_from_proto(
        pb.RecommendRequest(**fields),  # type: ignore[arg-type]
        "t",
        "u",
        convert.Limits(),
        CONFIG,
    )


def _field(**fields: object) -> str:
    with pytest.raises(InvalidArgument) as caught:
        _query(**fields)
    return caught.value.field


def test_an_empty_request_gets_the_defaults() -> None:
    query = _query()
    assert query.top_k == DEFAULT_TOP_K
    assert query.vector_name == DEFAULT_VECTOR
    assert query.strategy == "average_vector"
    assert query.mmr_lambda is None
    assert query.weights == {}


def test_bad_values_name_their_field() -> None:
    assert _field(top_k=CONFIG.max_top_k + 1) == "top_k"
    assert _field(diversity=pb.Diversity(mmr_lambda=1.5)) == "diversity.mmr_lambda"
    assert _field(diversity=pb.Diversity(max_share_per_content_type=0.0)) == (
        "diversity.max_share_per_content_type"
    )
    assert _field(strategy=99) == "strategy"
    assert _field(weights=pb.RecommendWeights(recency=-1.0)) == "weights.recency"
    assert _field(positive=[pb.RecommendExample()]) == "positive[0]"
    assert _field(negative=[pb.RecommendExample(vector=cpb.Vector())]) == "negative[0].vector"


def test_examples_and_weights_convert() -> None:
    query = _query(
        positive=[pb.RecommendExample(id="a"), pb.RecommendExample(slug="s")],
        negative=[pb.RecommendExample(vector=cpb.Vector(values=[1.0, 0.0]))],
        strategy=pb.RECOMMEND_STRATEGY_BEST_SCORE,
        weights=pb.RecommendWeights(similarity=2.0),
    )
    positive, negative = query.positive, query.negative
    assert [(e.node_id, e.slug) for e in positive] == [("a", ""), ("", "s")]
    assert negative[0].vector is not None
    assert negative[0].vector.tolist() == [1.0, 0.0]
    assert query.strategy == "best_score"
    assert query.weights == {"similarity": 2.0}


def test_a_user_event_converts_and_defaults_its_time_to_now() -> None:
    event = epb.UserEvent(
        event_id="e1", user_id="u", slug="page-1", action=epb.USER_ACTION_LIKE, weight=2.5
    )
    record = user_event_from_proto(event, "event", "t", NOW, TRACK)
    assert (record.tenant, record.node_id, record.slug) == ("t", "", "page-1")
    assert record.action is Action.LIKE
    assert record.occurred_at == NOW
    assert record.weight == 2.5


def test_a_user_event_too_far_in_the_future_names_its_time() -> None:
    event = epb.UserEvent(event_id="e1", user_id="u", node_id="n", action=epb.USER_ACTION_VIEW)
    event.occurred_at.FromDatetime(NOW + timedelta(seconds=TRACK.max_future_s + 60))
    with pytest.raises(InvalidArgument) as caught:
        user_event_from_proto(event, "events[3]", "t", NOW, TRACK)
    assert caught.value.field == "events[3].occurred_at"


def test_the_response_carries_every_part_and_the_similar_items() -> None:
    hit = RecommendHit(
        node=NodeRecord("t", "n1", "page", title="One"),
        source="archetype_popular",
        similarity=Part(0.5, 1.0),
        engagement=Part(0.2, 0.5),
        recency=Part(1.0, 0.1),
        archetype_prior=Part(0.0, 0.2),
        counts={
            "impressions": 3,
            "views": 2,
            "clicks": 1,
            "likes": 0,
            "conversions": 0,
            "dismissals": 0,
        },
        similar_to=[Similar("n0", "zero", "Zero", 0.9, action=int(Action.CLICK), occurred_at=NOW)],
        mmr_score=0.4,
    )

    class _Space:
        id = 7
        dim = 2

    response = recommend_to_proto(
        RecommendResult([hit], "rid", "derived_1", 4, _Space()), include_body=False
    )
    (out,) = response.hits
    assert out.score == pytest.approx(hit.score)
    assert out.explanation.source == pb.RECOMMEND_SOURCE_ARCHETYPE_POPULAR
    assert out.explanation.engagement.contribution == pytest.approx(0.1)
    assert out.explanation.mmr_score == pytest.approx(0.4)
    assert out.explanation.engagement_counts.impressions == 3
    assert out.explanation.similar_to[0].occurred_at.ToDatetime(UTC) == NOW
    assert (response.space_id, response.archetype, response.journey_events) == ("7", "derived_1", 4)


def test_every_part_is_present_even_when_zero() -> None:
    """Parts, counters and the node are written in place: each is present in the message
    (as a constructed submessage would be) even when every value in it is 0."""
    zero = Part(0.0, 0.0)
    hit = RecommendHit(
        node=NodeRecord("t", "n1", "page"),
        source="journey",
        similarity=zero,
        engagement=zero,
        recency=zero,
        archetype_prior=zero,
        counts={},
        similar_to=[Similar("", "", "", 0.0)],
        related_via=[RelatedVia("n1", "n0", "prerequisite", 0.5)],
    )

    class _Space:
        id = 1
        dim = 2

    result = RecommendResult([hit], "rid", "", 0, _Space(), conflicts=[("n2", "n3")])
    response = recommend_to_proto(result, include_body=True)
    (out,) = response.hits
    assert out.HasField("node")
    assert out.HasField("explanation")
    for part in ("similarity", "engagement", "recency", "archetype_prior", "relations"):
        assert out.explanation.HasField(part), part
    assert out.explanation.HasField("engagement_counts")
    assert not out.explanation.HasField("mmr_score")
    assert not out.explanation.similar_to[0].HasField("occurred_at")
    assert [(v.from_id, v.type, v.strength) for v in out.explanation.related_via] == [
        ("n0", "prerequisite", 0.5)
    ]
    assert [(c.node_id, c.conflicts_with) for c in response.excluded_conflicts] == [("n2", "n3")]
