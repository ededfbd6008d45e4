"""Recommend and Track messages <-> core values: UserEvent (from Track and from NATS) and
RecommendRequest in, validated and naming the field of a bad value; RecommendResult out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.domain import DEFAULT_VECTOR, Filter
from semantic.core.recommend.archetypes import PREFIX as DERIVED_PREFIX
from semantic.core.recommend.events import Action, TrackConfig, UserEventRecord, check_time
from semantic.core.recommend.values import (
    DEFAULT_TOP_K,
    PART_NAMES,
    Example,
    RecommendConfig,
    RecommendHit,
    RecommendQuery,
    RecommendResult,
    Similar,
)
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire.feedback import contributions_to_proto, modifiers_from_proto
from semantic.wire.json_values import struct_to_dict

SOURCES = {
    "journey": pb.RECOMMEND_SOURCE_JOURNEY,
    "examples": pb.RECOMMEND_SOURCE_EXAMPLES,
    "archetype_popular": pb.RECOMMEND_SOURCE_ARCHETYPE_POPULAR,
    "global_popular": pb.RECOMMEND_SOURCE_GLOBAL_POPULAR,
    "related": pb.RECOMMEND_SOURCE_RELATED,
}
MAX_CONTEXT_BYTES = 8192
MAX_WEIGHT = 100.0


def user_event_from_proto(
    event: epb.UserEvent, field: str, tenant: str, now: datetime, config: TrackConfig
) -> UserEventRecord:
    """A validated UserEventRecord; InvalidArgument names ``field``.sub-field.

    The tenant is the caller's to check (its format, and the token's claim)."""
    validation.short_id(event.event_id, f"{field}.event_id", required=True)
    validation.user_id(event.user_id, f"{field}.user_id", required=True)
    node_id, slug = convert.node_reference(event, field)
    if int(event.action) not in {int(a) for a in Action}:
        raise InvalidArgument(
            f"{field}.action", "must be IMPRESSION, VIEW, CLICK, LIKE, CONVERT or DISMISS"
        )
    occurred = (
        convert.timestamp(event.occurred_at, f"{field}.occurred_at")
        if event.HasField("occurred_at")
        else now
    )
    check_time(occurred, now, config.max_future_s, f"{field}.occurred_at")
    weight = (
        validation.number(event.weight, f"{field}.weight", minimum=-MAX_WEIGHT, maximum=MAX_WEIGHT)
        if event.HasField("weight")
        else None
    )
    if event.archetype:
        validation.name(event.archetype, f"{field}.archetype")
        if event.archetype.startswith(DERIVED_PREFIX):
            raise InvalidArgument(
                f"{field}.archetype",
                f"labels starting with {DERIVED_PREFIX!r} are reserved for derived archetypes",
            )
    validation.short_id(event.session_id, f"{field}.session_id")
    validation.short_id(event.source, f"{field}.source")
    context = None
    if event.HasField("context"):
        if event.context.ByteSize() > MAX_CONTEXT_BYTES:
            raise InvalidArgument(f"{field}.context", f"is larger than {MAX_CONTEXT_BYTES} bytes")
        context = struct_to_dict(event.context, f"{field}.context")
    return UserEventRecord(
        event_id=event.event_id,
        user_id=event.user_id,
        tenant=tenant,
        node_id=node_id,
        slug=slug,
        action=Action(event.action),
        occurred_at=occurred,
        weight=weight,
        archetype=event.archetype,
        session_id=event.session_id,
        context=context,
        source=event.source,
    )


def recommend_query_from_proto(
    request: pb.RecommendRequest,
    tenant: str,
    user_id: str,
    limits: convert.Limits,
    config: RecommendConfig,
) -> RecommendQuery:
    """A validated RecommendQuery."""
    top_k = request.top_k or DEFAULT_TOP_K
    if top_k > config.max_top_k:
        raise InvalidArgument("top_k", f"is {top_k}, at most {config.max_top_k}")
    flt = (
        convert.filter_from_proto(request.filter, "filter", limits)
        if request.HasField("filter")
        else Filter()
    )
    validation.count(len(request.content_types), "content_types", limits.max_filter_values)
    flt = convert.with_content_types(flt, request.content_types, "content_types")
    if request.archetype:
        validation.name(request.archetype, "archetype")
    if request.vector_name:
        validation.name(request.vector_name, "vector_name")
    diversity = request.diversity
    share = (
        diversity.max_share_per_content_type
        if diversity.HasField("max_share_per_content_type")
        else None
    )
    if share is not None and not 0 < share <= 1:  # NaN fails too
        raise InvalidArgument("diversity.max_share_per_content_type", "must be in (0, 1]")
    lam = diversity.mmr_lambda if diversity.HasField("mmr_lambda") else None
    if lam is not None:
        validation.number(lam, "diversity.mmr_lambda", minimum=0, maximum=1)
    if request.strategy not in (
        pb.RECOMMEND_STRATEGY_UNSPECIFIED,
        pb.RECOMMEND_STRATEGY_AVERAGE_VECTOR,
        pb.RECOMMEND_STRATEGY_BEST_SCORE,
    ):
        raise InvalidArgument("strategy", f"unknown value {request.strategy}")
    weights = {}
    for name in PART_NAMES:
        if request.weights.HasField(name):  # type: ignore[arg-type]
            weights[name] = validation.number(
                getattr(request.weights, name), f"weights.{name}", minimum=0, maximum=MAX_WEIGHT
            )
    validation.count(len(request.positive) + len(request.negative), "positive", config.max_examples)
    return RecommendQuery(
        tenant=tenant,
        user_id=user_id,
        archetype=request.archetype,
        top_k=top_k,
        filter=flt,
        max_share=share,
        mmr_lambda=lam,
        exclude_seen=request.exclude_seen,
        include_converted=request.include_converted,
        positive=_examples(request.positive, "positive"),
        negative=_examples(request.negative, "negative"),
        strategy="best_score"
        if request.strategy == pb.RECOMMEND_STRATEGY_BEST_SCORE
        else "average_vector",
        vector_name=request.vector_name or DEFAULT_VECTOR,
        weights=weights,
        modifiers=modifiers_from_proto(request.modifiers),
        default_modifiers=not request.skip_default_modifiers,
    )


def _examples(examples: Sequence[pb.RecommendExample], field: str) -> tuple[Example, ...]:
    out = []
    for i, example in enumerate(examples):
        which = example.WhichOneof("example")
        if which is None:
            raise InvalidArgument(f"{field}[{i}]", "set id, slug or vector")
        if which == "vector":
            out.append(
                Example(vector=convert.vector_from_proto(example.vector, f"{field}[{i}].vector"))
            )
        elif which == "id":
            out.append(Example(node_id=validation.node_id(example.id, f"{field}[{i}].id")))
        else:
            out.append(Example(slug=validation.slug(example.slug, f"{field}[{i}].slug")))
    return tuple(out)


def recommend_to_proto(result: RecommendResult, *, include_body: bool) -> pb.RecommendResponse:
    """The response message, written in place: a submessage given to a constructor is
    copied, which made this conversion twice as slow."""
    response = pb.RecommendResponse(
        recommendation_id=result.recommendation_id,
        archetype=result.archetype,
        journey_events=result.journey_events,
        space_id=str(result.space.id),
    )
    for hit in result.hits:
        _fill_hit(response.hits.add(), hit, include_body)
    for node_id, other in result.conflicts:
        response.excluded_conflicts.add(node_id=node_id, conflicts_with=other)
    return response


def _fill_part(message: pb.ScorePart, part: Any) -> None:
    message.SetInParent()  # present even when every value is 0, as a constructed one
    message.value = part.value
    message.weight = part.weight
    message.contribution = part.contribution


def _fill_hit(message: pb.RecommendHit, hit: RecommendHit, include_body: bool) -> None:
    message.score = hit.score
    node = message.node
    node.SetInParent()
    convert.fill_node(node, hit.node, include_body=include_body)
    explanation = message.explanation
    explanation.SetInParent()
    explanation.source = SOURCES[hit.source]
    _fill_part(explanation.similarity, hit.similarity)
    _fill_part(explanation.engagement, hit.engagement)
    _fill_part(explanation.recency, hit.recency)
    _fill_part(explanation.archetype_prior, hit.archetype_prior)
    for item in hit.similar_to:
        _fill_similar(explanation.similar_to.add(), item)
    counts = explanation.engagement_counts
    counts.SetInParent()
    for name, value in hit.counts.items():
        setattr(counts, name, value)
    _fill_part(explanation.relations, hit.relations)
    for via in hit.related_via:
        explanation.related_via.add(from_id=via.from_id, type=via.type, strength=via.strength)
    if hit.mmr_score is not None:
        explanation.mmr_score = hit.mmr_score
    if hit.modified is not None:
        explanation.base_score = hit.base_score
        explanation.modifiers.extend(contributions_to_proto(hit.contributions))


def _fill_similar(message: pb.SimilarItem, item: Similar) -> None:
    message.node_id = item.node_id
    message.slug = item.slug
    message.title = item.title
    message.similarity = item.similarity
    message.action = item.action  # type: ignore[assignment]
    message.negative = item.negative
    convert.fill_timestamp(message, "occurred_at", item.occurred_at)
