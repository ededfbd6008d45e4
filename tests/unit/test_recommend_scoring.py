"""Recommendation scoring parts: smoothing stays in [0, 1] and needs evidence to move,
recency halves every half-life, and candidates come back best first with their parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic.core.domain import NodeRecord
from semantic.core.recommend import smoothing
from semantic.core.recommend.recency import recency
from semantic.core.recommend.scoring import Scoring, score_candidates
from semantic.core.recommend.similarity import average_vector, best_score, unit
from semantic.core.recommend.values import CandidateDetails, RecommendConfig

pytestmark = pytest.mark.unit
NOW = datetime(2026, 6, 1, tzinfo=UTC)
CONFIG = RecommendConfig(
    similarity_weight=1.0,
    engagement_weight=0.3,
    recency_weight=0.1,
    archetype_weight=0.2,
    prior_strength=20.0,
    default_rate=0.05,
    recency_half_life_days=30.0,
    candidates=100,
    popular_candidates=50,
    max_top_k=100,
    max_examples=64,
    max_share_per_content_type=1.0,
)
counts_values = st.integers(min_value=0, max_value=10**6)


def _counts(
    impressions: int = 0, clicks: int = 0, likes: int = 0, conversions: int = 0
) -> dict[str, int]:
    return {
        "impressions": impressions,
        "views": 0,
        "clicks": clicks,
        "likes": likes,
        "conversions": conversions,
        "dismissals": 0,
    }


@given(
    st.tuples(counts_values, counts_values, counts_values, counts_values),
    st.floats(0, 1000),
    st.floats(0, 1),
)
def test_smoothed_engagement_is_always_within_zero_and_one(
    counts: tuple[int, int, int, int], strength: float, rate: float
) -> None:
    value = smoothing.engagement(_counts(*counts), strength, rate)
    assert 0.0 <= value <= 1.0


@given(st.floats(0.1, 1000), st.floats(0, 1))
def test_a_node_without_evidence_gets_the_tenant_rate(strength: float, rate: float) -> None:
    assert smoothing.engagement(_counts(), strength, rate) == pytest.approx(rate)


def test_one_click_in_one_view_does_not_beat_three_hundred_in_a_thousand() -> None:
    lucky = smoothing.engagement(_counts(impressions=1, clicks=1), 20.0, 0.05)
    proven = smoothing.engagement(_counts(impressions=1000, clicks=300), 20.0, 0.05)
    assert lucky < proven


def test_the_tenant_rate_needs_a_hundred_impressions_and_never_exceeds_one() -> None:
    assert smoothing.tenant_rate(50.0, 99.0, 0.05) == 0.05
    assert smoothing.tenant_rate(50.0, 100.0, 0.05) == pytest.approx(0.5)
    assert smoothing.tenant_rate(500.0, 100.0, 0.05) == 1.0


@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False))
def test_the_archetype_prior_is_clamped_to_zero_and_one(score: float, best: float) -> None:
    assert 0.0 <= smoothing.archetype_prior(score, best) <= 1.0


@given(st.floats(0, 3650), st.floats(0, 3650), st.floats(0.5, 365))
def test_recency_never_grows_with_age(younger: float, older: float, half_life: float) -> None:
    younger, older = min(younger, older), max(younger, older)
    fresh = recency(NOW - timedelta(days=younger), NOW, half_life)
    stale = recency(NOW - timedelta(days=older), NOW, half_life)
    assert 0.0 <= stale <= fresh <= 1.0


def test_recency_halves_every_half_life_and_is_one_for_now_or_the_future() -> None:
    assert recency(NOW - timedelta(days=30), NOW, 30.0) == pytest.approx(0.5)
    assert recency(NOW - timedelta(days=60), NOW, 30.0) == pytest.approx(0.25)
    assert recency(NOW, NOW, 30.0) == 1.0
    assert recency(NOW + timedelta(days=3), NOW, 30.0) == 1.0
    assert recency(None, NOW, 30.0) == 1.0


def test_average_vector_pushes_away_from_negatives_and_is_unit_length() -> None:
    p, n = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    both = average_vector([p], [n])
    assert float(np.linalg.norm(both)) == pytest.approx(1.0)
    assert both[0] > 0 > both[1]
    assert np.allclose(average_vector([], [n]), -n)
    assert np.allclose(average_vector([p], []), p)


def test_best_score_is_minus_the_negative_when_that_one_is_closer() -> None:
    v = unit(np.array([1.0, 0.1], np.float32))
    near, far = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    assert best_score(v, [near], [far]) == pytest.approx(float(v @ near))
    assert best_score(v, [far], [near]) == pytest.approx(-float(v @ near))


def _detail(
    node_id: str, vector: list[float], clicks: int = 0, updated_days: float = 0
) -> CandidateDetails:
    return CandidateDetails(
        node=NodeRecord("t", node_id, "page", updated_at=NOW - timedelta(days=updated_days)),
        counts=_counts(impressions=clicks * 2, clicks=clicks),
        archetype_score=0.0,
        vector=unit(np.array(vector, np.float32)),
    )


def test_candidates_are_scored_best_first_with_parts_summing_to_the_score() -> None:
    query = unit(np.array([1.0, 0.0], np.float32))
    details = {
        "close": _detail("close", [1.0, 0.05]),
        "far": _detail("far", [0.0, 1.0]),
        "popular_far": _detail("popular_far", [0.1, 1.0], clicks=500),
    }
    weights = CONFIG.weights({})
    scoring = Scoring(weights, [query], [], [], False, 0.0, 0.05, NOW)
    sources = {
        "far": "journey",
        "close": "journey",
        "popular_far": "global_popular",
        "gone": "journey",
    }
    scored = score_candidates(sources, details, scoring, CONFIG)  # type: ignore[arg-type]
    assert [s.node_id for s in scored] == ["close", "popular_far", "far"]
    for s in scored:
        assert s.hit(weights).score == pytest.approx(s.score)
    assert scored[1].source == "global_popular"


def test_request_weights_override_only_the_parts_they_name() -> None:
    assert CONFIG.weights({"recency": 2.0}) == {
        "similarity": 1.0,
        "engagement": 0.3,
        "recency": 2.0,
        "archetype_prior": 0.2,
        "relations": 0.0,
    }
