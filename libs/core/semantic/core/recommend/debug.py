"""The recommendation debugger: what a Recommend call did, for an operator.

:class:`RecommendTrace` is handed to :meth:`Recommender.recommend` only when a debug is
asked; the recommender then records what it computes anyway (the user's row and
exclusions, the examples, where the archetype came from, every scored candidate and the
order diversity walked them in). A plain Recommend passes none and records nothing.

:func:`explain` then reads what the recommendation itself never needs (the user's logged
events and per-node flags, titles, which nodes have vectors) and builds a
:class:`RecommendDebug`: the journey with each event's decayed weight, the archetype and
its origin, the candidates with their score parts and whether each was kept, the
exclusions with their reasons, and the stored embeddings used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from semantic.core.recommend.events import Action, TrackConfig, journey_weight
from semantic.core.recommend.journey import StoredUser, decay
from semantic.core.recommend.ports import RecommendReads, UserNode
from semantic.core.recommend.scoring import Scored
from semantic.core.recommend.values import Part, RecommendQuery, RecommendResult, Source

JOURNEY_EVENTS = 100
"""Latest logged events a debug shows."""
DEFAULT_CANDIDATES = 50
"""Candidates a debug lists when it asks for none."""
MAX_CANDIDATES = 500
"""Most candidates a debug lists."""

Origin = Literal["", "given", "stored", "derived"]
Exclusion = Literal["seen", "converted", "dismissed", "filter", "diversity_cap", "example"]
Drop = Literal["", "below_top_k", "diversity_cap", "deleted"]


@dataclass
class RecommendTrace:
    """What the recommender records while it recommends (debug only)."""

    request: RecommendQuery = field(default_factory=lambda: RecommendQuery(tenant=""))
    user: StoredUser | None = None
    journey_stored: bool = False
    excluded: list[str] = field(default_factory=list)  # the user's, before scoring
    positive_ids: list[str] = field(default_factory=list)
    negative_ids: list[str] = field(default_factory=list)
    raw_examples: int = 0
    query: Literal["journey", "examples", "none"] = "none"
    archetype_given: str = ""
    archetype_stored: str = ""
    weights: dict[str, float] = field(default_factory=dict)
    scored: list[Scored] = field(default_factory=list)
    cap: int = 0  # most hits of one content type
    walked: list[str] = field(default_factory=list)  # node ids in the order diversity took

    def start(
        self,
        query: RecommendQuery,
        *,
        user: StoredUser | None,
        archetype: str,
        journey_stored: bool,
        excluded: Sequence[str],
        examples: tuple[Sequence[tuple[str, Any]], Sequence[tuple[str, Any]]],
        weights: Mapping[str, float],
    ) -> None:
        """Record the request's and the user's side (before scoring): ``examples`` are
        (node id or '' for a raw vector, vector) of the positive and negative ones."""
        positives, negatives = examples
        self.request = query
        self.user = user
        self.journey_stored = journey_stored
        self.excluded = list(excluded)
        self.positive_ids = [node_id for node_id, _ in positives if node_id]
        self.negative_ids = [node_id for node_id, _ in negatives if node_id]
        self.raw_examples = sum(1 for node_id, _ in (*positives, *negatives) if not node_id)
        self.archetype_given = query.archetype
        self.archetype_stored = "" if query.archetype else archetype
        self.weights = dict(weights)


@dataclass(frozen=True)
class JourneyEntry:
    """One logged event with the weight it pulls the journey with now."""

    node_id: str
    slug: str
    title: str
    action: Action
    occurred_at: datetime
    weight: float
    decay: float
    has_vector: bool

    @property
    def contribution(self) -> float:
        """weight x decay."""
        return self.weight * self.decay


@dataclass(frozen=True)
class CandidateEntry:
    """One scored candidate and what became of it."""

    node_id: str
    content_type: str
    title: str
    source: Source
    parts: dict[str, Part]
    kept: bool
    rank: int  # 1-based among the hits, 0 when not kept
    dropped: Drop

    @property
    def score(self) -> float:
        """Sum of the parts' contributions (in scoring's order)."""
        return sum(self.parts[name].contribution for name in PART_ORDER)


PART_ORDER = ("similarity", "engagement", "recency", "archetype_prior", "relations")


@dataclass(frozen=True)
class EmbeddingsUsed:
    """The stored embeddings behind the query vector."""

    space_id: int
    vector_name: str
    query: str
    journey_stored: bool
    journey_node_ids: list[str]
    example_node_ids: list[str]
    raw_example_vectors: int


@dataclass(frozen=True)
class RecommendDebug:
    """A recommendation with everything behind it."""

    result: RecommendResult
    journey: list[JourneyEntry]
    journey_weight: float
    archetype: str
    origin: Origin
    candidates: list[CandidateEntry]
    candidates_total: int
    exclusions: list[tuple[str, Exclusion]]
    embeddings: EmbeddingsUsed


async def explain(
    reads: RecommendReads,
    track: TrackConfig,
    result: RecommendResult,
    trace: RecommendTrace,
    max_candidates: int,
) -> RecommendDebug:
    """The debug of ``result`` (made with ``trace``), listing at most ``max_candidates``
    candidates besides the hits."""
    query = trace.request
    dropped = _drops(trace, result, trace.cap, query.top_k)
    async with reads.session() as session:
        flags = (
            await session.user_nodes(query.tenant, query.user_id, trace.excluded)
            if trace.excluded
            else []
        )
        events = (
            await session.logged_events(query.tenant, query.user_id, JOURNEY_EVENTS)
            if query.user_id
            else []
        )
        journey_ids = list(dict.fromkeys(e.node_id for e in events))
        journey_nodes = await session.complete(
            result.space, query.tenant, track.vector_name, journey_ids
        )
        listed = _listed(trace, result, max_candidates)
        hit_nodes = {h.node.id: h.node for h in result.hits}
        missing = [s.node_id for s in listed if s.node_id not in hit_nodes]
        titles = {k: n.title for k, n in hit_nodes.items()}
        if missing:
            completed = await session.complete(
                result.space, query.tenant, query.vector_name, missing
            )
            titles.update({k: node.title for k, (node, _) in completed.items()})
    now = datetime.now(UTC)
    journey = []
    for event in events:
        node, vector = journey_nodes.get(event.node_id, (None, None))
        hours = max(0.0, (now - event.occurred_at).total_seconds() / 3600)
        journey.append(
            JourneyEntry(
                node_id=event.node_id,
                slug=(node.slug or "") if node else "",
                title=node.title if node else "",
                action=event.action,
                occurred_at=event.occurred_at,
                weight=journey_weight(track, event.action, event.weight),
                decay=decay(hours, track.half_life_hours),
                has_vector=vector is not None,
            )
        )
    ranks = {h.node.id: i for i, h in enumerate(result.hits, start=1)}
    candidates = [
        CandidateEntry(
            node_id=s.node_id,
            content_type=s.node.content_type,
            title=titles.get(s.node_id, ""),
            source=s.source,
            parts=_parts(s, result, ranks, trace.weights),
            kept=s.node_id in ranks,
            rank=ranks.get(s.node_id, 0),
            dropped="" if s.node_id in ranks else dropped.get(s.node_id, "below_top_k"),
        )
        for s in listed
    ]
    return RecommendDebug(
        result=result,
        journey=journey,
        journey_weight=trace.user.journey_weight if trace.user and trace.journey_stored else 0.0,
        archetype=result.archetype,
        origin=_origin(trace, result.archetype),
        candidates=candidates,
        candidates_total=len(trace.scored),
        exclusions=_exclusions(query, trace, flags, dropped),
        embeddings=EmbeddingsUsed(
            space_id=result.space.id,
            vector_name=query.vector_name,
            query=trace.query,
            journey_stored=trace.journey_stored,
            journey_node_ids=list(
                dict.fromkeys(e.node_id for e in journey if e.weight and e.has_vector)
            )
            if trace.query == "journey"
            else [],
            example_node_ids=[*trace.positive_ids, *trace.negative_ids],
            raw_example_vectors=trace.raw_examples,
        ),
    )


def _drops(trace: RecommendTrace, result: RecommendResult, cap: int, top_k: int) -> dict[str, Drop]:
    """Why each candidate diversity walked past was not kept: its type was full, or
    top_k was reached; a candidate chosen but not among the hits was deleted meanwhile."""
    types = {s.node_id: s.node.content_type for s in trace.scored}
    hits = {h.node.id for h in result.hits}
    out: dict[str, Drop] = {}
    per_type: dict[str, int] = {}
    chosen = 0
    for node_id in trace.walked:
        kind = types.get(node_id, "")
        if chosen >= top_k:
            out[node_id] = "below_top_k"
        elif per_type.get(kind, 0) >= cap:
            out[node_id] = "diversity_cap"
        else:
            per_type[kind] = per_type.get(kind, 0) + 1
            chosen += 1
            if node_id not in hits:
                out[node_id] = "deleted"
    return out


def _listed(trace: RecommendTrace, result: RecommendResult, limit: int) -> list[Scored]:
    """The best ``limit`` scored candidates, plus every hit beyond them, in score order."""
    hits = {h.node.id for h in result.hits}
    listed = [s for i, s in enumerate(trace.scored) if i < limit or s.node_id in hits]
    return listed


def _parts(
    scored: Scored, result: RecommendResult, ranks: dict[str, int], weights: dict[str, float]
) -> dict[str, Part]:
    """The parts of a candidate: the hit's own when it was kept (the same values)."""
    rank = ranks.get(scored.node_id)
    if rank is not None:
        hit = result.hits[rank - 1]
        return {
            "similarity": hit.similarity,
            "engagement": hit.engagement,
            "recency": hit.recency,
            "archetype_prior": hit.archetype_prior,
            "relations": hit.relations,
        }
    values = {
        "similarity": scored.similarity,
        "engagement": scored.engagement,
        "recency": scored.recency,
        "archetype_prior": scored.prior,
        "relations": scored.relation,
    }
    return {name: Part(values[name], weights[name]) for name in PART_ORDER}


def _origin(trace: RecommendTrace, archetype: str) -> Origin:
    if not archetype:
        return ""
    if trace.archetype_given:
        return "given"
    if trace.archetype_stored:
        return "stored"
    return "derived"


def _exclusions(
    query: RecommendQuery,
    trace: RecommendTrace,
    flags: Sequence[UserNode],
    dropped: dict[str, Drop],
) -> list[tuple[str, Exclusion]]:
    by_node = {f.node_id: f for f in flags}
    out: list[tuple[str, Exclusion]] = []
    for node_id in trace.excluded:
        flag = by_node.get(node_id)
        if flag is None or flag.dismissed:
            out.append((node_id, "dismissed"))
        elif flag.converted and not query.include_converted:
            out.append((node_id, "converted"))
        else:
            out.append((node_id, "seen"))
    out.extend((node_id, "filter") for node_id in query.filter.exclude_ids)
    out.extend((node_id, "example") for node_id in (*trace.positive_ids, *trace.negative_ids))
    out.extend(
        (node_id, "diversity_cap") for node_id, why in dropped.items() if why == "diversity_cap"
    )
    return out
