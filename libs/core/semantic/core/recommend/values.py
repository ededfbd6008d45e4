"""Recommend's value types: the configuration, a query, its examples, and hits that carry
the explainable parts of their score."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

import numpy as np

from semantic.core.domain import DEFAULT_VECTOR, Filter, NodeRecord
from semantic.core.modifiers import Contribution, Modifier
from semantic.core.spaces import IndexPrecision

Source = Literal["journey", "examples", "archetype_popular", "global_popular", "related"]
Strategy = Literal["average_vector", "best_score"]
DEFAULT_TOP_K = 10
"""Hits of a request that asks for none."""
PART_NAMES = ("similarity", "engagement", "recency", "archetype_prior", "relations")
NEXT_TYPES = ("prerequisite", "follows")
"""Relation types that raise a node after one of the user's recent nodes."""
COUNT_NAMES = ("impressions", "views", "clicks", "likes", "conversions", "dismissals")


class SpaceRef(Protocol):
    """The embedding space a call reads: the core needs its id and dimension only."""

    @property
    def id(self) -> int:
        """The space's id."""
        ...

    @property
    def dim(self) -> int:
        """The dimension of its vectors."""
        ...

    @property
    def index_precision(self) -> IndexPrecision:
        """The precision of its HNSW index (the store orders by the matching expression)."""
        ...


@dataclass(frozen=True)
class RecommendConfig:
    """The scoring weights and candidate pools (built from the settings, which hold the
    defaults); the last two are not settings."""

    similarity_weight: float
    engagement_weight: float
    recency_weight: float
    archetype_weight: float
    prior_strength: float
    default_rate: float
    recency_half_life_days: float
    candidates: int
    popular_candidates: int
    max_top_k: int
    max_examples: int
    max_share_per_content_type: float
    similar_items: int = 3
    journey_items: int = 20
    relations_weight: float = 0.0

    def weights(self, asked: Mapping[str, float]) -> dict[str, float]:
        """Each part's weight: the request's where it gives one, else the default."""
        defaults = {
            "similarity": self.similarity_weight,
            "engagement": self.engagement_weight,
            "recency": self.recency_weight,
            "archetype_prior": self.archetype_weight,
            "relations": self.relations_weight,
        }
        return {name: asked.get(name, defaults[name]) for name in PART_NAMES}


@dataclass(frozen=True)
class Example:
    """A positive or negative example: a node (id or slug) or a raw vector."""

    node_id: str = ""
    slug: str = ""
    vector: np.ndarray[Any, Any] | None = None


@dataclass(frozen=True)
class RecommendQuery:
    """A validated Recommend request."""

    tenant: str
    user_id: str = ""
    archetype: str = ""
    top_k: int = DEFAULT_TOP_K
    filter: Filter = field(default_factory=Filter)
    max_share: float | None = None
    mmr_lambda: float | None = None
    exclude_seen: bool = False
    include_converted: bool = False
    positive: tuple[Example, ...] = ()
    negative: tuple[Example, ...] = ()
    strategy: Strategy = "average_vector"
    vector_name: str = DEFAULT_VECTOR
    weights: Mapping[str, float] = field(default_factory=dict)
    modifiers: tuple[Modifier, ...] = ()
    """Score modifiers of the request (when given, the defaults do not apply)."""
    default_modifiers: bool = True


@dataclass(frozen=True)
class Part:
    """One part of a score."""

    value: float
    weight: float

    @property
    def contribution(self) -> float:
        """value x weight."""
        return self.value * self.weight


@dataclass(frozen=True)
class Similar:
    """A journey item or example a recommended node resembles."""

    node_id: str
    slug: str
    title: str
    similarity: float
    action: int = 0
    occurred_at: datetime | None = None
    negative: bool = False


@dataclass(frozen=True)
class RelatedVia:
    """A relation from one of the user's recent nodes (``from_id``) to ``node_id``."""

    node_id: str
    from_id: str
    type: str
    strength: float


@dataclass(frozen=True)
class RelationSignals:
    """What relations say about one user's candidates: the nodes their recent nodes lead
    to, and the nodes in conflict with a node they converted on (node, converted node)."""

    related: tuple[RelatedVia, ...] = ()
    conflicts: tuple[tuple[str, str], ...] = ()

    def strongest(self) -> dict[str, float]:
        """Per node led to, the strongest relation's strength."""
        out: dict[str, float] = {}
        for via in self.related:
            out[via.node_id] = max(out.get(via.node_id, 0.0), via.strength)
        return out

    def via(self, node_id: str) -> list[RelatedVia]:
        """The relations leading to ``node_id``, strongest first."""
        found = [v for v in self.related if v.node_id == node_id]
        return sorted(found, key=lambda v: (-v.strength, v.from_id, v.type))


@dataclass
class RecommendHit:
    """One recommended node and why."""

    node: NodeRecord
    source: Source
    similarity: Part
    engagement: Part
    recency: Part
    archetype_prior: Part
    counts: dict[str, int]
    similar_to: list[Similar] = field(default_factory=list)
    mmr_score: float | None = None
    relations: Part = field(default_factory=lambda: Part(0.0, 0.0))
    related_via: list[RelatedVia] = field(default_factory=list)
    modified: float | None = None
    """The score after score modifiers (None: none applied)."""
    contributions: list[Contribution] = field(default_factory=list)

    @property
    def base_score(self) -> float:
        """Sum of the parts' contributions."""
        return (
            self.similarity.contribution
            + self.engagement.contribution
            + self.recency.contribution
            + self.archetype_prior.contribution
            + self.relations.contribution
        )

    @property
    def score(self) -> float:
        """The sum of the parts, or what score modifiers made of it."""
        return self.base_score if self.modified is None else self.modified


@dataclass
class RecommendResult:
    """Hits in final order and the context they came from."""

    hits: list[RecommendHit]
    recommendation_id: str
    archetype: str
    journey_events: int
    space: SpaceRef
    conflicts: list[tuple[str, str]] = field(default_factory=list)
    """Candidates left out for a conflict with a converted node: (node, converted node)."""


@dataclass(slots=True)
class CandidateDetails:
    """What scoring needs of one candidate node."""

    node: NodeRecord
    counts: dict[str, int]
    archetype_score: float
    vector: np.ndarray[Any, Any] | None  # unit length
    similarity: float | None = None  # cosine to the query vector, computed by the store
    partial: bool = False  # node holds id, type and update time only (until completed)


@dataclass(frozen=True)
class Wanted:
    """What a read of candidates' details asks for (beside the engagement counters):
    ``slim``, only the node's id, type and update time (``partial``), with the cosine of
    its vector ``vector_name`` to ``similarity_to`` when given; else the full node and its
    unit vector. ``archetype``: whose prior score to read ('' for none)."""

    vector_name: str
    archetype: str
    slim: bool
    similarity_to: np.ndarray[Any, Any] | None
