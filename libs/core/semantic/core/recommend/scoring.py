"""A candidate's score: the weighted sum of its explainable parts,

score = w_sim * similarity        cosine to the journey vector / the examples
      + w_eng * engagement        smoothed (semantic.core.recommend.smoothing)
      + w_rec * recency           semantic.core.recommend.recency
      + w_arch * archetype_prior  the archetype's engagement with the node / its best node
      + w_rel * relations         the strongest relation from a recent node of the user
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np

from semantic.core.domain import NodeRecord
from semantic.core.feedback import NodeFeedback
from semantic.core.modifiers import Contribution, Modifier, rescore
from semantic.core.recommend import smoothing
from semantic.core.recommend.recency import recency
from semantic.core.recommend.similarity import best_score
from semantic.core.recommend.values import (
    CandidateDetails,
    Part,
    RecommendConfig,
    RecommendHit,
    Source,
)


@dataclass(frozen=True)
class Scoring:
    """What every candidate is scored against."""

    weights: Mapping[str, float]
    query_vectors: Sequence[np.ndarray[Any, Any]]
    positives: Sequence[np.ndarray[Any, Any]]
    negatives: Sequence[np.ndarray[Any, Any]]
    best_of_examples: bool  # best_score strategy over the examples
    best_archetype: float
    rate: float
    now: datetime
    related: Mapping[str, float] = field(default_factory=dict)
    """Per node, the strongest relation from one of the user's recent nodes."""


class Scored(NamedTuple):
    """A candidate's score and parts, before it becomes a RecommendHit."""

    score: float
    node_id: str
    source: Source
    detail: CandidateDetails
    similarity: float
    engagement: float
    recency: float
    prior: float
    relation: float = 0.0
    modified: float | None = None
    """``score`` is the modified one; the sum of the parts was this base (None: none)."""
    contributions: tuple[Contribution, ...] = ()

    @property
    def node(self) -> NodeRecord:
        """The candidate's node (as read for scoring)."""
        return self.detail.node

    def hit(self, weights: Mapping[str, float]) -> RecommendHit:
        """The RecommendHit with these parts."""
        return RecommendHit(
            node=self.detail.node,
            source=self.source,
            similarity=Part(self.similarity, weights["similarity"]),
            engagement=Part(self.engagement, weights["engagement"]),
            recency=Part(self.recency, weights["recency"]),
            archetype_prior=Part(self.prior, weights["archetype_prior"]),
            counts=dict(self.detail.counts),
            relations=Part(self.relation, weights.get("relations", 0.0)),
            modified=self.score if self.modified is not None else None,
            contributions=list(self.contributions),
        )


def similarity(detail: CandidateDetails, scoring: Scoring) -> float:
    """The candidate's similarity: the store's cosine if it computed one, else the best
    example score or the cosine to the one query vector (0 without a vector)."""
    if detail.similarity is not None:
        return detail.similarity
    vector = detail.vector
    if vector is None:
        return 0.0
    if scoring.best_of_examples:
        return best_score(vector, scoring.positives, scoring.negatives)
    if scoring.query_vectors:
        return float(np.dot(scoring.query_vectors[0], vector))
    return 0.0


def score_candidates(
    sources: Mapping[str, Source],
    details: Mapping[str, CandidateDetails],
    scoring: Scoring,
    config: RecommendConfig,
) -> list[Scored]:
    """Every candidate's parts and score, best first (ties by node id); candidates without
    details (deleted nodes) are left out."""
    weights = scoring.weights
    w_sim, w_eng = weights["similarity"], weights["engagement"]
    w_rec, w_arch = weights["recency"], weights["archetype_prior"]
    w_rel = weights.get("relations", 0.0)
    scored = []
    for node_id, source in sources.items():
        detail = details.get(node_id)
        if detail is None:
            continue
        sim = similarity(detail, scoring)
        eng = smoothing.engagement(detail.counts, config.prior_strength, scoring.rate)
        rec = recency(detail.node.updated_at, scoring.now, config.recency_half_life_days)
        prior = smoothing.archetype_prior(detail.archetype_score, scoring.best_archetype)
        rel = scoring.related.get(node_id, 0.0)
        # The same sum, in the same order, as RecommendHit.score.
        score = sim * w_sim + eng * w_eng + rec * w_rec + prior * w_arch + rel * w_rel
        scored.append(Scored(score, detail.node.id, source, detail, sim, eng, rec, prior, rel))
    scored.sort(key=lambda s: (-s.score, s.node_id))
    return scored


def modify(
    scored: list[Scored],
    choose: Callable[[NodeRecord], Sequence[Modifier]],
    feedback: Callable[[str], NodeFeedback | None],
) -> list[Scored]:
    """The candidates re-scored by the modifiers ``choose`` gives each (``modified`` keeps
    the sum of the parts), best first (ties by node id)."""
    out = []
    for item in scored:
        chosen = choose(item.node)
        if not chosen:
            out.append(item)
            continue
        new, contributions = rescore(item.node, item.score, chosen, feedback)
        out.append(
            item._replace(score=new, modified=item.score, contributions=tuple(contributions))
        )
    out.sort(key=lambda s: (-s.score, s.node_id))
    return out
