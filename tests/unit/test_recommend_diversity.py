"""Diversity: MMR with lambda 1 keeps the relevance order, a lower lambda spreads the
picks, and the content-type cap is never exceeded."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic.core.domain import NodeRecord
from semantic.core.recommend.diversity import capped, diversify, mmr, type_cap
from semantic.core.recommend.scoring import Scored
from semantic.core.recommend.similarity import unit
from semantic.core.recommend.values import CandidateDetails, Part, RecommendHit

pytestmark = pytest.mark.unit
WEIGHTS = {"similarity": 1.0, "engagement": 0.0, "recency": 0.0, "archetype_prior": 0.0}
TYPES = ("page", "video", "post")


def _scored(items: list[tuple[float, str, list[float]]]) -> list[Scored]:
    out = []
    for i, (score, kind, vector) in enumerate(items):
        detail = CandidateDetails(
            node=NodeRecord("t", f"n{i:03d}", kind),
            counts=dict.fromkeys(
                ("impressions", "views", "clicks", "likes", "conversions", "dismissals"), 0
            ),
            archetype_score=0.0,
            vector=unit(np.array(vector, np.float32)),
        )
        out.append(Scored(score, detail.node.id, "journey", detail, score, 0.0, 0.0, 0.0))
    out.sort(key=lambda s: (-s.score, s.node_id))
    return out


def _hit(score: float) -> RecommendHit:
    zero = Part(0.0, 0.0)
    return RecommendHit(
        NodeRecord("t", f"{score}", "page"), "journey", Part(score, 1.0), zero, zero, zero, {}
    )


items = st.lists(
    st.tuples(
        st.floats(0, 1, allow_nan=False),
        st.sampled_from(TYPES),
        st.lists(st.floats(0.01, 1), min_size=3, max_size=3),
    ),
    min_size=1,
    max_size=30,
)


@given(items)
def test_mmr_with_lambda_one_returns_the_relevance_order(
    given_items: list[tuple[float, str, list[float]]],
) -> None:
    scored = _scored(given_items)
    hits = [s.hit(WEIGHTS) for s in scored]
    ordered = mmr(list(hits), [s.detail.vector for s in scored], 1.0, len(hits))
    assert [h.score for h in ordered] == sorted((h.score for h in hits), reverse=True)
    assert [h.node.id for h in ordered] == [s.node_id for s in scored]


def test_mmr_with_a_low_lambda_picks_the_different_one_second() -> None:
    hits = [_hit(1.0), _hit(0.9), _hit(0.8)]
    vectors = [unit(np.array(v, np.float32)) for v in ([1, 0], [1, 0.01], [0, 1])]
    ordered = mmr(hits, vectors, 0.3, 3)
    assert [h.score for h in ordered] == [1.0, 0.8, 0.9]
    assert all(h.mmr_score is not None for h in ordered)


@given(items, st.floats(0.01, 1), st.integers(1, 40), st.one_of(st.none(), st.floats(0, 1)))
def test_the_content_type_cap_is_never_exceeded(
    given_items: list[tuple[float, str, list[float]]], share: float, top_k: int, lam: float | None
) -> None:
    hits = diversify(_scored(given_items), WEIGHTS, top_k=top_k, share=share, mmr_lambda=lam)
    cap = type_cap(share, top_k)
    assert len(hits) <= top_k
    for kind in TYPES:
        assert sum(h.node.content_type == kind for h in hits) <= cap
    assert len({h.node.id for h in hits}) == len(hits)


def test_the_cap_is_at_least_one_and_the_share_of_top_k_rounded_down() -> None:
    assert type_cap(0.01, 10) == 1
    assert type_cap(0.5, 10) == 5
    assert type_cap(0.3, 10) == 3  # 0.3 * 10 is 2.9999...; the epsilon keeps it 3
    assert type_cap(1.0, 7) == 7


def test_capped_skips_a_full_type_and_keeps_the_order_of_the_rest() -> None:
    kinds = ["a", "a", "b", "a", "c", "b"]
    assert capped(list(range(6)), lambda i: kinds[i], 1, 10) == [0, 2, 4]
    assert capped(list(range(6)), lambda i: kinds[i], 2, 3) == [0, 1, 2]
