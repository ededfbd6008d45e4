"""The recommendation debugger's messages: ExplainRecommendationRequest's own field
validated, a :class:`semantic.core.recommend.debug.RecommendDebug` out."""

from __future__ import annotations

from semantic.common import validation
from semantic.core.recommend.debug import (
    DEFAULT_CANDIDATES,
    MAX_CANDIDATES,
    CandidateEntry,
    JourneyEntry,
    RecommendDebug,
)
from semantic.core.recommend.values import Part
from semantic.v1 import search_pb2 as pb
from semantic.wire.recommend import SOURCES, recommend_to_proto

_ORIGINS = {
    "": pb.ARCHETYPE_ORIGIN_UNSPECIFIED,
    "given": pb.ARCHETYPE_ORIGIN_GIVEN,
    "stored": pb.ARCHETYPE_ORIGIN_STORED,
    "derived": pb.ARCHETYPE_ORIGIN_DERIVED,
}
_DROPS = {
    "": pb.DROP_REASON_UNSPECIFIED,
    "below_top_k": pb.DROP_REASON_BELOW_TOP_K,
    "diversity_cap": pb.DROP_REASON_DIVERSITY_CAP,
    "deleted": pb.DROP_REASON_DELETED,
}
_EXCLUSIONS = {
    "seen": pb.EXCLUSION_REASON_SEEN,
    "converted": pb.EXCLUSION_REASON_CONVERTED,
    "dismissed": pb.EXCLUSION_REASON_DISMISSED,
    "filter": pb.EXCLUSION_REASON_FILTER,
    "diversity_cap": pb.EXCLUSION_REASON_DIVERSITY_CAP,
    "example": pb.EXCLUSION_REASON_EXAMPLE,
}


def max_candidates(request: pb.ExplainRecommendationRequest) -> int:
    """Candidates to list: 0 means the default; at most MAX_CANDIDATES."""
    validation.integer(request.max_candidates, "max_candidates", maximum=MAX_CANDIDATES)
    return request.max_candidates or DEFAULT_CANDIDATES


def debug_to_proto(
    debug: RecommendDebug, *, include_body: bool
) -> pb.ExplainRecommendationResponse:
    """The response message."""
    used = debug.embeddings
    return pb.ExplainRecommendationResponse(
        response=recommend_to_proto(debug.result, include_body=include_body),
        journey=[_journey(item) for item in debug.journey],
        journey_weight=debug.journey_weight,
        archetype=debug.archetype,
        archetype_origin=_ORIGINS[debug.origin],
        candidates=[_candidate(c) for c in debug.candidates],
        candidates_total=debug.candidates_total,
        exclusions=[
            pb.Exclusion(node_id=node_id, reason=_EXCLUSIONS[why])
            for node_id, why in debug.exclusions
        ],
        embeddings=pb.EmbeddingUse(
            space_id=str(used.space_id),
            vector_name=used.vector_name,
            query=used.query,
            journey_stored=used.journey_stored,
            journey_node_ids=used.journey_node_ids,
            example_node_ids=used.example_node_ids,
            raw_example_vectors=used.raw_example_vectors,
        ),
    )


def _part(part: Part) -> pb.ScorePart:
    return pb.ScorePart(value=part.value, weight=part.weight, contribution=part.contribution)


def _journey(item: JourneyEntry) -> pb.JourneyItem:
    message = pb.JourneyItem(
        node_id=item.node_id,
        slug=item.slug,
        title=item.title,
        action=int(item.action),  # type: ignore[arg-type]
        weight=item.weight,
        decay=item.decay,
        contribution=item.contribution,
        has_vector=item.has_vector,
    )
    message.occurred_at.FromDatetime(item.occurred_at)
    return message


def _candidate(entry: CandidateEntry) -> pb.DebugCandidate:
    return pb.DebugCandidate(
        node_id=entry.node_id,
        content_type=entry.content_type,
        title=entry.title,
        source=SOURCES[entry.source],
        score=entry.score,
        similarity=_part(entry.parts["similarity"]),
        engagement=_part(entry.parts["engagement"]),
        recency=_part(entry.parts["recency"]),
        archetype_prior=_part(entry.parts["archetype_prior"]),
        relations=_part(entry.parts["relations"]),
        kept=entry.kept,
        rank=entry.rank,
        dropped=_DROPS[entry.dropped],
    )
