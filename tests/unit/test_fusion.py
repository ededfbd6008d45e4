"""Reciprocal rank fusion and the score/page helpers."""

from __future__ import annotations

import pytest

from semantic.common.errors import InvalidArgument
from semantic.core.domain import ChunkMatch, DenseHit, Hit
from semantic.core.fusion import above, from_dense, from_keyword, fuse, page

RRF_K = 60  # where the k does not change what a test checks


def _dense(*ids: str) -> list[DenseHit]:
    return [
        DenseHit(
            node_id,
            0.9 - i / 10,
            ChunkMatch("content", i, 0, 10, 0.9 - i / 10),
            {"content": 0.9 - i / 10},
        )
        for i, node_id in enumerate(ids)
    ]


def _keyword(*ids: str) -> list[tuple[str, float]]:
    return [(node_id, 10.0 - i) for i, node_id in enumerate(ids)]


def test_a_node_on_both_sides_sums_its_reciprocal_ranks() -> None:
    hits = fuse(_dense("a", "b", "c"), _keyword("c", "d"), rrf_k=60)
    by_id = {h.node_id: h for h in hits}
    assert by_id["c"].fused_score == pytest.approx(1 / 63 + 1 / 61)
    assert by_id["a"].fused_score == pytest.approx(1 / 61)
    assert [h.node_id for h in hits] == ["c", "a", "b", "d"]  # b and d tie: id decides
    assert all(h.score == h.fused_score for h in hits)


def test_every_hit_says_why_it_ranked() -> None:
    hits = {h.node_id: h for h in fuse(_dense("a", "b"), _keyword("b", "x"), rrf_k=RRF_K)}
    b = hits["b"]
    assert (b.dense_rank, b.keyword_rank) == (2, 1)
    assert b.dense_score == pytest.approx(0.8)
    assert b.keyword_score == 10.0
    assert b.chunk is not None
    assert b.chunk.chunk_index == 1
    assert b.target_scores == {"content": pytest.approx(0.8)}
    x = hits["x"]
    assert (x.dense_rank, x.dense_score, x.keyword_rank, x.chunk) == (None, None, 2, None)


def test_weights_shift_the_balance_between_the_sides() -> None:
    dense_heavy = fuse(
        _dense("a"), _keyword("b"), rrf_k=RRF_K, dense_weight=2.0, keyword_weight=1.0
    )
    keyword_only = fuse(
        _dense("a"), _keyword("b"), rrf_k=RRF_K, dense_weight=0.0, keyword_weight=1.0
    )
    assert [h.node_id for h in dense_heavy] == ["a", "b"]
    assert [h.node_id for h in keyword_only] == ["b", "a"]
    assert keyword_only[1].fused_score == 0.0


def test_ties_are_broken_by_best_rank_then_id() -> None:
    # a: dense 1 + keyword 2 ; b: dense 2 + keyword 1 -> equal fused scores
    hits = fuse(_dense("b2", "a1"), _keyword("a1", "b2"), rrf_k=0)
    assert hits[0].fused_score == pytest.approx(1.5)
    assert hits[1].fused_score == pytest.approx(1.5)
    assert [h.node_id for h in hits] == ["a1", "b2"]


def test_a_node_listed_twice_keeps_its_first_rank() -> None:
    hits = from_keyword([("a", 3.0), ("b", 2.0), ("a", 1.0)])
    assert [(h.node_id, h.keyword_rank, h.score) for h in hits] == [("a", 1, 3.0), ("b", 2, 2.0)]


def test_single_sides_become_ranked_hits() -> None:
    dense = from_dense(_dense("a", "b"))
    assert [(h.node_id, h.dense_rank) for h in dense] == [("a", 1), ("b", 2)]
    assert [h.score for h in dense] == pytest.approx([0.9, 0.8])
    assert dense[0].keyword_rank is None
    assert dense[0].fused_score is None
    assert fuse([], [], rrf_k=RRF_K) == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rrf_k": -1}, "hybrid.rrf_k"),
        ({"dense_weight": -0.5}, "hybrid.dense_weight"),
        ({"keyword_weight": float("nan")}, "hybrid.keyword_weight"),
        ({"dense_weight": 0.0, "keyword_weight": 0.0}, "hybrid"),
    ],
)
def test_fusion_parameters_are_checked(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        fuse(_dense("a"), _keyword("a"), **{"rrf_k": RRF_K, **kwargs})  # type: ignore[arg-type]
    assert caught.value.field == field


def test_min_score_and_pages() -> None:
    hits = [Hit(node_id=str(i), score=1.0 - i / 10) for i in range(10)]
    assert [h.node_id for h in above(hits, 0.75)] == ["0", "1", "2"]
    assert above(hits, None) == hits
    assert [h.node_id for h in page(hits, 3, 2)] == ["3", "4"]
    assert page(hits, 9, 5) == hits[9:]
    assert page(hits, 20, 5) == []
    with pytest.raises(InvalidArgument):
        page(hits, -1, 5)
