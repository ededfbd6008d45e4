"""Diversity: maximal marginal relevance re-ranking and a cap on one content type's share."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from semantic.core.recommend.scoring import Scored
from semantic.core.recommend.values import RecommendHit

_T = TypeVar("_T")


def mmr(
    hits: list[RecommendHit], vectors: Sequence[np.ndarray[Any, Any] | None], lam: float, count: int
) -> list[RecommendHit]:
    """Maximal marginal relevance order of ``hits`` (relevance = score scaled to [0, 1],
    redundancy = the largest cosine to a hit already chosen); sets each chosen hit's
    ``mmr_score``. ``vectors[i]`` is hit i's unit vector (None: never redundant)."""
    scores = np.array([h.score for h in hits])
    low, high = float(scores.min()), float(scores.max())
    relevance = (scores - low) / (high - low) if high > low else np.ones_like(scores)
    chosen: list[int] = []
    left = list(range(len(hits)))
    while left and len(chosen) < count:
        best, best_value = left[0], -math.inf
        for i in left:
            penalty = 0.0
            vi = vectors[i]
            if chosen and vi is not None:
                picked = [v for v in (vectors[j] for j in chosen) if v is not None]
                penalty = max((float(np.dot(vi, v)) for v in picked), default=0.0)
            value = lam * float(relevance[i]) - (1 - lam) * penalty
            if value > best_value:
                best, best_value = i, value
        chosen.append(best)
        left.remove(best)
        hits[best].mmr_score = best_value
    return [hits[i] for i in chosen]


def type_cap(share: float, top_k: int) -> int:
    """Most hits of one content type among ``top_k``: floor(share * top_k), at least 1."""
    return max(1, math.floor(share * top_k + 1e-9))


def capped(
    items: Iterable[_T], content_type: Callable[[_T], str], cap: int, top_k: int
) -> list[_T]:
    """The first ``top_k`` of ``items`` in order, skipping an item whose content type
    (``content_type(item)``) already has ``cap`` items."""
    per_type: dict[str, int] = {}
    chosen = []
    for item in items:
        kind = content_type(item)
        if per_type.get(kind, 0) >= cap:
            continue
        per_type[kind] = per_type.get(kind, 0) + 1
        chosen.append(item)
        if len(chosen) == top_k:
            break
    return chosen


def diversify(
    scored: list[Scored],
    weights: Mapping[str, float],
    *,
    top_k: int,
    share: float,
    mmr_lambda: float | None,
    walked: list[str] | None = None,
) -> list[RecommendHit]:
    """The final hits: MMR order when ``mmr_lambda`` is given, then at most ``share`` of
    ``top_k`` of one content type; hits are made only for the candidates kept.
    ``walked`` (a debug) receives the node ids in the order the cap considered them."""
    cap = type_cap(share, top_k)
    if mmr_lambda is not None and scored:
        hits = [s.hit(weights) for s in scored]
        ordered = mmr(hits, [s.detail.vector for s in scored], mmr_lambda, len(scored))
        if walked is not None:
            walked.extend(h.node.id for h in ordered)
        return capped(ordered, lambda h: h.node.content_type, cap, top_k)
    if walked is not None:
        walked.extend(s.node_id for s in scored)
    kept = capped(scored, lambda s: s.node.content_type, cap, top_k)
    return [s.hit(weights) for s in kept]
