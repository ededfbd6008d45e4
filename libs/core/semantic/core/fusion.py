"""Ranked lists into hits: dense and keyword results fused (by rank or by score), score cut, pages.

Pure functions over lists that are already in rank order (best first). A hybrid search fuses
its two candidate lists by one of three ``Fusion`` methods; each side's part is weighted and a
side that did not return a node gives it 0::

    RRF             part = weight / (rrf_k + rank)                       (1-based ranks)
    RELATIVE_SCORE  part = weight * (s - min) / (max - min)               over the side's candidates
    DISTRIBUTION    part = weight * clamp((s - mean + 3 std) / (6 std), 0, 1)   (sample std)

and the fused score is the sum of the two parts. The two score fusions put every normalised
score in [0, 1], so their fused score lies in [0, dense_weight + keyword_weight]. A side with
no spread (all its candidates score the same, a lone candidate included) has no scale to
normalise by: RELATIVE_SCORE gives each of them 1 (each is the side's best, as Weaviate's
relativeScoreFusion does), DISTRIBUTION 0.5 (each sits at the mean, as Qdrant's DBSF does).
Scores are finite (cosines and BM25), so no part is ever NaN. Ties are broken by the better of
the node's two ranks, then by node id, so the order is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from semantic.common.errors import InvalidArgument
from semantic.core.domain import MAX_WEIGHT, DenseHit, Fusion, Hit


def from_dense(hits: Sequence[DenseHit]) -> list[Hit]:
    """Dense results as hits: score = similarity, with rank, best chunk, per-target scores and
    the node when the dense search attached it."""
    out: list[Hit] = []
    seen: set[str] = set()
    for hit in hits:
        if hit.node_id in seen:
            continue
        seen.add(hit.node_id)
        out.append(
            Hit(
                node_id=hit.node_id,
                score=hit.score,
                dense_rank=len(out) + 1,
                dense_score=hit.score,
                chunk=hit.chunk,
                target_scores=dict(hit.target_scores),
                node=hit.node,
            )
        )
    return out


def from_keyword(rows: Sequence[tuple[str, float]]) -> list[Hit]:
    """Keyword results ``(node_id, bm25)`` as hits: score = BM25, with rank."""
    out: list[Hit] = []
    seen: set[str] = set()
    for node_id, score in rows:
        if node_id in seen:
            continue
        seen.add(node_id)
        out.append(
            Hit(node_id=node_id, score=score, keyword_rank=len(out) + 1, keyword_score=score)
        )
    return out


def fuse(
    dense: Sequence[DenseHit],
    keyword: Sequence[tuple[str, float]],
    *,
    rrf_k: int,
    dense_weight: float = 1.0,
    keyword_weight: float = 1.0,
    fusion: Fusion = Fusion.RRF,
) -> list[Hit]:
    """Both lists fused by ``fusion`` (module doc); every hit says its rank, score, normalised
    score (score fusions) and part on each side."""
    check_fusion(rrf_k, dense_weight, keyword_weight, fusion)
    dense_hits, keyword_hits = from_dense(dense), from_keyword(keyword)
    if fusion is Fusion.RRF:
        # Each side's hits are in rank order: the n-th has rank n.
        dense_parts = [dense_weight / (rrf_k + n) for n in range(1, len(dense_hits) + 1)]
        keyword_parts = [keyword_weight / (rrf_k + n) for n in range(1, len(keyword_hits) + 1)]
    else:
        normalise = NORMALISERS[fusion]
        dense_norm = normalise([hit.score for hit in dense_hits])
        keyword_norm = normalise([hit.score for hit in keyword_hits])
        for hit, value in zip(dense_hits, dense_norm, strict=True):
            hit.dense_normalized = value
        for hit, value in zip(keyword_hits, keyword_norm, strict=True):
            hit.keyword_normalized = value
        dense_parts = [dense_weight * value for value in dense_norm]
        keyword_parts = [keyword_weight * value for value in keyword_norm]
    merged: dict[str, Hit] = {}
    for hit, part in zip(dense_hits, dense_parts, strict=True):
        hit.dense_part, hit.keyword_part = part, 0.0
        merged[hit.node_id] = hit
    for hit, part in zip(keyword_hits, keyword_parts, strict=True):
        known = merged.get(hit.node_id)
        if known is None:
            hit.dense_part, hit.keyword_part = 0.0, part
            merged[hit.node_id] = hit
        else:
            known.keyword_rank = hit.keyword_rank
            known.keyword_score = hit.keyword_score
            known.keyword_normalized = hit.keyword_normalized
            known.keyword_part = part
    for hit in merged.values():
        hit.fused_score = (hit.dense_part or 0.0) + (hit.keyword_part or 0.0)
        hit.score = hit.fused_score
    return sorted(merged.values(), key=_fused_order)


def relative_scores(scores: Sequence[float]) -> list[float]:
    """Min-max normalisation: the best score 1, the worst 0, the others in proportion; with
    no spread (all equal, or one score) every score is 1."""
    if not scores:
        return []
    unit = _unit_scale(scores)
    if unit is None:
        return [1.0] * len(scores)
    return _scaled(unit, min(unit), max(unit), flat=1.0)


def distribution_scores(scores: Sequence[float]) -> list[float]:
    """Distribution-based normalisation: [mean - 3 std, mean + 3 std] (sample std) mapped onto
    [0, 1], clamped; with no spread (all equal, or one score) every score is 0.5."""
    if len(scores) < 2:
        return [0.5] * len(scores)
    unit = _unit_scale(scores)
    if unit is None:
        return [0.5] * len(scores)
    mean = math.fsum(unit) / len(unit)
    std = math.sqrt(math.fsum((value - mean) ** 2 for value in unit) / (len(unit) - 1))
    return _scaled(unit, mean - 3 * std, mean + 3 * std, flat=0.5)


NORMALISERS: dict[Fusion, Callable[[Sequence[float]], list[float]]] = {
    Fusion.RELATIVE_SCORE: relative_scores,
    Fusion.DISTRIBUTION: distribution_scores,
}
"""The normalisation of each score fusion."""


def check_fusion(
    rrf_k: int, dense_weight: float, keyword_weight: float, fusion: Fusion = Fusion.RRF
) -> None:
    """Raise ``InvalidArgument`` for fusion parameters that cannot rank anything."""
    if not isinstance(fusion, Fusion):
        raise InvalidArgument("hybrid.fusion", f"unknown fusion {fusion!r}")
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
        raise InvalidArgument("hybrid.rrf_k", "must be a whole number >= 0")
    for name, weight in (("dense_weight", dense_weight), ("keyword_weight", keyword_weight)):
        if not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
            raise InvalidArgument(
                f"hybrid.{name}", f"must be a number between 0 and {MAX_WEIGHT:g}"
            )
    if dense_weight == 0 and keyword_weight == 0:
        raise InvalidArgument("hybrid", "dense_weight and keyword_weight cannot both be 0")


def above(hits: Sequence[Hit], min_score: float | None) -> list[Hit]:
    """The hits whose score is at least ``min_score`` (all of them when it is None)."""
    if min_score is None:
        return list(hits)
    return [hit for hit in hits if hit.score >= min_score]


def page(hits: Sequence[Hit], offset: int, top_k: int) -> list[Hit]:
    """Hits ``offset .. offset + top_k - 1`` of the ranking."""
    if offset < 0:
        raise InvalidArgument("offset", "must be >= 0")
    if top_k < 0:
        raise InvalidArgument("top_k", "must be >= 0")
    return list(hits[offset : offset + top_k])


def _fused_order(hit: Hit) -> tuple[float, int, str]:
    ranks = [r for r in (hit.dense_rank, hit.keyword_rank) if r is not None]
    return (-(hit.fused_score or 0.0), min(ranks, default=0), hit.node_id)


def _unit_scale(scores: Sequence[float]) -> list[float] | None:
    """The scores divided by their largest magnitude (both normalisations are unchanged by a
    positive scale, and no sum or square can overflow then); None when there is no spread."""
    largest = max(abs(value) for value in scores)
    if not math.isfinite(largest) or min(scores) == max(scores):
        return None
    return [value / largest for value in scores]


def _scaled(values: Sequence[float], low: float, high: float, *, flat: float) -> list[float]:
    """``values`` mapped from [low, high] onto [0, 1], clamped (``flat`` each when high <= low)."""
    span = high - low
    if not span > 0:
        return [flat] * len(values)
    return [min(1.0, max(0.0, (value - low) / span)) for value in values]
