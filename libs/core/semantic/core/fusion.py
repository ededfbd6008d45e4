"""Ranked lists into hits: reciprocal rank fusion of dense and keyword results, score cut, pages.

Pure functions over lists that are already in rank order (best first). Reciprocal rank fusion
gives a node ``dense_weight / (rrf_k + dense_rank) + keyword_weight / (rrf_k + keyword_rank)``,
a side that did not return the node contributing nothing; ranks are 1-based. Ties are broken by
the better of the node's two ranks, then by node id, so the order is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from semantic.common.errors import InvalidArgument
from semantic.core.domain import DenseHit, Hit


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
) -> list[Hit]:
    """Reciprocal rank fusion of both lists; every hit says its rank and score on each side."""
    check_fusion(rrf_k, dense_weight, keyword_weight)
    merged: dict[str, Hit] = {}
    for hit in from_dense(dense):
        assert hit.dense_rank is not None
        hit.fused_score = dense_weight / (rrf_k + hit.dense_rank)
        merged[hit.node_id] = hit
    for hit in from_keyword(keyword):
        assert hit.keyword_rank is not None
        part = keyword_weight / (rrf_k + hit.keyword_rank)
        known = merged.get(hit.node_id)
        if known is None:
            hit.fused_score = part
            merged[hit.node_id] = hit
        else:
            known.keyword_rank = hit.keyword_rank
            known.keyword_score = hit.keyword_score
            known.fused_score = (known.fused_score or 0.0) + part
    for hit in merged.values():
        hit.score = hit.fused_score or 0.0
    return sorted(merged.values(), key=_fused_order)


def check_fusion(rrf_k: int, dense_weight: float, keyword_weight: float) -> None:
    """Raise ``InvalidArgument`` for fusion parameters that cannot rank anything."""
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, int) or rrf_k < 0:
        raise InvalidArgument("hybrid.rrf_k", "must be a whole number >= 0")
    for name, weight in (("dense_weight", dense_weight), ("keyword_weight", keyword_weight)):
        if not math.isfinite(weight) or weight < 0:
            raise InvalidArgument(f"hybrid.{name}", "must be a finite number >= 0")
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
