"""Score fusions of hybrid search: relative score (min-max), distribution-based (mean ± 3 std)."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable
from random import Random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic.common.errors import InvalidArgument
from semantic.core.domain import ChunkMatch, DenseHit, Fusion, Hit
from semantic.core.fusion import distribution_scores, fuse, relative_scores

RRF_K = 60
SCORE_FUSIONS = (Fusion.RELATIVE_SCORE, Fusion.DISTRIBUTION)


def _dense(*pairs: tuple[str, float]) -> list[DenseHit]:
    return [
        DenseHit(node_id, score, ChunkMatch("content", 0, 0, 10, score), {"content": score})
        for node_id, score in pairs
    ]


def _by_id(hits: list[Hit]) -> dict[str, Hit]:
    return {hit.node_id: hit for hit in hits}


def test_relative_score_maps_each_side_onto_zero_to_one() -> None:
    assert relative_scores([11.0, 8.0, 6.0, 1.0]) == pytest.approx([1.0, 0.7, 0.5, 0.0])
    assert relative_scores([0.9, 0.6, 0.3]) == pytest.approx([1.0, 0.5, 0.0])


def test_distribution_maps_mean_plus_minus_three_sample_stds_onto_zero_to_one() -> None:
    scores = [10.0, 4.0, 3.0, 2.0, 1.0]
    mean, std = statistics.mean(scores), statistics.stdev(scores)
    expected = [(s - (mean - 3 * std)) / (6 * std) for s in scores]
    assert distribution_scores(scores) == pytest.approx(expected)
    # mean 2, sample std sqrt(2): 3 lies 1 / (6 sqrt(2)) above the middle of the range
    step = 1 / (6 * math.sqrt(2))
    assert distribution_scores([3.0, 1.0]) == pytest.approx([0.5 + step, 0.5 - step])


def test_distribution_clamps_outliers_to_the_unit_interval() -> None:
    # One far outlier among many equal scores lies beyond mean + 3 std of the sample.
    scores = [100.0] + [1.0] * 20
    normalised = distribution_scores(scores)
    assert normalised[0] == 1.0
    assert all(0.0 <= value <= 1.0 for value in normalised)


def test_a_side_without_spread_gets_one_under_relative_score_and_half_under_distribution() -> None:
    assert relative_scores([2.5, 2.5, 2.5]) == [1.0, 1.0, 1.0]
    assert relative_scores([0.4]) == [1.0]
    assert distribution_scores([2.5, 2.5, 2.5]) == [0.5, 0.5, 0.5]
    assert distribution_scores([0.4]) == [0.5]
    assert relative_scores([]) == distribution_scores([]) == []


def test_a_score_fusion_sees_how_far_ahead_a_one_sided_match_is() -> None:
    """The "money back" shape: the refund page is far the best dense match and no keyword
    match; the quiz is a middling dense match and the best of keyword matches that are close
    to one another. With the keyword side at a quarter of the weight, both score fusions put
    the refund page first; RRF still ranks the quiz first, as near the top of both lists
    beats first on one list alone (unless the keyword weight is close to 0)."""
    dense = _dense(("refund", 0.62), ("quiz", 0.35), ("coffee", 0.30), ("shipping", 0.28))
    keyword = [("quiz", 2.1), ("budget", 2.0), ("coffee", 1.9)]
    rrf = fuse(dense, keyword, rrf_k=RRF_K, keyword_weight=0.25)
    assert [h.node_id for h in rrf][:2] == ["quiz", "coffee"]
    for fusion in SCORE_FUSIONS:
        fused = fuse(dense, keyword, rrf_k=RRF_K, keyword_weight=0.25, fusion=fusion)
        assert fused[0].node_id == "refund", fusion


def test_every_hit_explains_its_normalised_scores_and_parts() -> None:
    dense = _dense(("a", 0.9), ("b", 0.5), ("c", 0.1))
    keyword = [("b", 8.0), ("x", 2.0)]
    hits = _by_id(
        fuse(
            dense,
            keyword,
            rrf_k=RRF_K,
            dense_weight=2.0,
            keyword_weight=0.5,
            fusion=Fusion.RELATIVE_SCORE,
        )
    )
    b = hits["b"]
    assert (b.dense_rank, b.dense_score, b.keyword_rank, b.keyword_score) == (2, 0.5, 1, 8.0)
    assert (b.dense_normalized, b.keyword_normalized) == pytest.approx((0.5, 1.0))
    assert (b.dense_part, b.keyword_part) == pytest.approx((1.0, 0.5))
    assert b.fused_score == b.score == pytest.approx(1.5)
    x = hits["x"]  # keyword only: no dense rank, score or normalised score, dense part 0
    assert (x.dense_rank, x.dense_normalized, x.dense_part) == (None, None, 0.0)
    assert (x.keyword_normalized, x.keyword_part, x.score) == (0.0, 0.0, 0.0)
    a = hits["a"]  # dense only
    assert (a.keyword_rank, a.keyword_normalized, a.keyword_part) == (None, None, 0.0)
    assert a.dense_part == pytest.approx(2.0)


def test_rrf_explains_its_parts_but_has_no_normalised_scores() -> None:
    hits = _by_id(fuse(_dense(("a", 0.9), ("b", 0.5)), [("b", 3.0)], rrf_k=RRF_K))
    b = hits["b"]
    assert (b.dense_part, b.keyword_part) == pytest.approx((1 / 62, 1 / 61))
    assert b.fused_score == pytest.approx(1 / 62 + 1 / 61)
    assert (b.dense_normalized, b.keyword_normalized) == (None, None)
    assert hits["a"].keyword_part == 0.0


@pytest.mark.parametrize("fusion", SCORE_FUSIONS)
def test_one_empty_side_leaves_the_other_sides_order_and_scale(fusion: Fusion) -> None:
    dense = _dense(("a", 0.8), ("b", 0.6), ("c", 0.2))
    only_dense = fuse(dense, [], rrf_k=RRF_K, fusion=fusion, keyword_weight=3.0)
    assert [h.node_id for h in only_dense] == ["a", "b", "c"]
    assert all(h.keyword_part == 0.0 and h.keyword_rank is None for h in only_dense)
    only_keyword = fuse([], [("k", 5.0), ("j", 1.0)], rrf_k=RRF_K, fusion=fusion)
    assert [h.node_id for h in only_keyword] == ["k", "j"]
    assert fuse([], [], rrf_k=RRF_K, fusion=fusion) == []


@pytest.mark.parametrize("fusion", SCORE_FUSIONS)
def test_a_weight_of_zero_silences_its_side(fusion: Fusion) -> None:
    dense = _dense(("a", 0.9), ("b", 0.1))
    keyword = [("b", 9.0), ("a", 1.0)]
    hits = fuse(dense, keyword, rrf_k=RRF_K, fusion=fusion, keyword_weight=0.0)
    assert [h.node_id for h in hits] == ["a", "b"]
    assert all(h.keyword_part == 0.0 for h in hits)
    hits = fuse(dense, keyword, rrf_k=RRF_K, fusion=fusion, dense_weight=0.0)
    assert [h.node_id for h in hits] == ["b", "a"]


def test_an_unknown_fusion_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidArgument) as caught:
        fuse([], [], rrf_k=RRF_K, fusion="linear")  # type: ignore[arg-type]
    assert caught.value.field == "hybrid.fusion"


# Properties. The sides produce cosine-like dense scores (weighted sums of similarities) and
# non-negative BM25; any finite value is allowed here, huge and subnormal ones included.
_SCORES = st.floats(allow_nan=False, allow_infinity=False)
_WEIGHTS = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


Sides = tuple[list[DenseHit], list[tuple[str, float]]]


def _ranked_scores(draw: st.DrawFn, count: int) -> list[float]:
    return sorted(draw(st.lists(_SCORES, min_size=count, max_size=count)), reverse=True)


@st.composite
def _sides(draw: st.DrawFn) -> Sides:
    """Two candidate lists in rank order over 12 node ids (overlapping or not, maybe empty)."""
    ids = [f"n{i}" for i in range(12)]
    dense_ids = draw(st.lists(st.sampled_from(ids), unique=True, max_size=12))
    keyword_ids = draw(st.lists(st.sampled_from(ids), unique=True, max_size=12))
    dense_scores = _ranked_scores(draw, len(dense_ids))
    keyword_scores = _ranked_scores(draw, len(keyword_ids))
    return (
        _dense(*zip(dense_ids, dense_scores, strict=True)),
        list(zip(keyword_ids, keyword_scores, strict=True)),
    )


@given(
    st.lists(_SCORES, max_size=50),
    st.sampled_from([relative_scores, distribution_scores]),
)
def test_normalised_scores_lie_in_the_unit_interval_and_keep_the_order(
    scores: list[float], normalise: Callable[[list[float]], list[float]]
) -> None:
    normalised = normalise(scores)
    assert len(normalised) == len(scores)
    assert all(0.0 <= value <= 1.0 for value in normalised)
    ranked = sorted(zip(scores, normalised, strict=True))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ranked))  # monotone in the score


@given(_sides(), _WEIGHTS, _WEIGHTS, st.sampled_from(SCORE_FUSIONS))
def test_fused_scores_lie_between_zero_and_the_sum_of_the_weights(
    sides: Sides, dense_weight: float, keyword_weight: float, fusion: Fusion
) -> None:
    if dense_weight == 0 and keyword_weight == 0:
        dense_weight = 1.0
    dense, keyword = sides
    hits = fuse(
        dense,
        keyword,
        rrf_k=RRF_K,
        dense_weight=dense_weight,
        keyword_weight=keyword_weight,
        fusion=fusion,
    )
    assert {h.node_id for h in hits} == {h.node_id for h in dense} | {k for k, _ in keyword}
    for hit in hits:
        assert math.isfinite(hit.score)
        assert 0.0 <= hit.score <= dense_weight + keyword_weight
        assert hit.score == (hit.dense_part or 0.0) + (hit.keyword_part or 0.0)
        assert (hit.dense_rank is None) == (hit.dense_normalized is None)
        assert (hit.keyword_rank is None) == (hit.keyword_normalized is None)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


@given(_sides(), st.sampled_from(SCORE_FUSIONS), st.randoms(use_true_random=False))
def test_a_nodes_fused_score_does_not_depend_on_the_order_of_the_lists(
    sides: Sides, fusion: Fusion, random: Random
) -> None:
    dense, keyword = sides
    shuffled_dense, shuffled_keyword = list(dense), list(keyword)
    random.shuffle(shuffled_dense)
    random.shuffle(shuffled_keyword)
    before = {h.node_id: h.score for h in fuse(dense, keyword, rrf_k=RRF_K, fusion=fusion)}
    after = {
        h.node_id: h.score
        for h in fuse(shuffled_dense, shuffled_keyword, rrf_k=RRF_K, fusion=fusion)
    }
    assert after == before


@given(_sides(), st.sampled_from(SCORE_FUSIONS))
def test_a_single_side_keeps_its_own_order(sides: Sides, fusion: Fusion) -> None:
    dense, keyword = sides
    assert [h.node_id for h in fuse(dense, [], rrf_k=RRF_K, fusion=fusion)] == [
        h.node_id for h in dense
    ]
    assert [h.node_id for h in fuse([], keyword, rrf_k=RRF_K, fusion=fusion)] == [
        k for k, _ in keyword
    ]
