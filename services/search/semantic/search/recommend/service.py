"""Recommend and Track as the gRPC servicer calls them: protobuf in and out, validation
naming the field, tenant and user enforcement, one tracker and one recommender."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from semantic.common import validation
from semantic.common.auth import enforce_tenant, enforce_user
from semantic.common.errors import InvalidArgument
from semantic.core.domain import Filter
from semantic.search.recommend.engine import (
    Example,
    RecommendConfig,
    Recommender,
    RecommendHit,
    RecommendQuery,
    RecommendResult,
    Similar,
)
from semantic.search.recommend.tracking import (
    Action,
    TrackConfig,
    Tracker,
    TrackResult,
    UserEventRecord,
    check_time,
)
from semantic.store.postgres import spaces
from semantic.store.postgres.db import connection
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert

_SOURCES = {
    "journey": pb.RECOMMEND_SOURCE_JOURNEY,
    "examples": pb.RECOMMEND_SOURCE_EXAMPLES,
    "archetype_popular": pb.RECOMMEND_SOURCE_ARCHETYPE_POPULAR,
    "global_popular": pb.RECOMMEND_SOURCE_GLOBAL_POPULAR,
}
MAX_CONTEXT_BYTES = 8192
MAX_WEIGHT = 100.0


class Recommendations:
    """The recommendation side of the Search service."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        limits: convert.Limits,
        config: RecommendConfig | None = None,
        track: TrackConfig | None = None,
        *,
        max_track_events: int = 1000,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self.tracker = Tracker(track)
        self.recommender = Recommender(pool, config, self.tracker.config)
        self._max_track = max_track_events
        self._spaces: dict[int | None, tuple[spaces.Space, float]] = {}

    async def space(self, space_id: int | None) -> spaces.Space:
        """The requested or active space (the active one re-read at most every second)."""
        cached = self._spaces.get(space_id)
        if cached is not None and time.monotonic() - cached[1] < 1.0:
            return cached[0]
        async with connection(self._pool) as conn:
            space = (
                await spaces.get_space(conn, space_id)
                if space_id is not None
                else await spaces.active_space(conn)
            )
        self._spaces[space_id] = (space, time.monotonic())
        return space

    async def track(self, request: pb.TrackRequest) -> pb.TrackResponse:
        """Validate and record the events of a Track call."""
        validation.count(len(request.events), "events", self._max_track, minimum=1)
        now = datetime.now(UTC)
        records = [
            user_event_from_proto(
                event,
                f"events[{i}]",
                enforce_tenant(validation.tenant(event.tenant, f"events[{i}].tenant")),
                now,
                self.tracker.config,
            )
            for i, event in enumerate(request.events)
        ]
        result = await self.track_records(records)
        return pb.TrackResponse(
            accepted=result.accepted,
            duplicates=result.duplicates,
            unknown_node_events=result.unknown,
        )

    async def track_records(self, records: Sequence[UserEventRecord]) -> TrackResult:
        """Record validated events (also the indexer's entry point for NATS user events)."""
        space = await self.space(None)
        async with connection(self._pool) as conn:
            return await self.tracker.track(conn, space, records)

    async def recommend(
        self, request: pb.RecommendRequest, space_id: int | None = None
    ) -> pb.RecommendResponse:
        """Validate, recommend, convert (``space_id``: None for the active space)."""
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        user_id = enforce_user(validation.user_id(request.user_id, "user_id"))
        query = recommend_query_from_proto(
            request, tenant, user_id, self._limits, self.recommender.config
        )
        space = await self.space(space_id)
        result = await self.recommender.recommend(space, query)
        return recommend_to_proto(result, include_body=request.include_body)


def user_event_from_proto(
    event: epb.UserEvent, field: str, tenant: str, now: datetime, config: TrackConfig
) -> UserEventRecord:
    """A validated UserEventRecord; InvalidArgument names ``field``.sub-field.

    The tenant is the caller's to check (its format, and the token's claim)."""
    validation.short_id(event.event_id, f"{field}.event_id", required=True)
    validation.user_id(event.user_id, f"{field}.user_id", required=True)
    which = event.WhichOneof("node")
    if which is None or not getattr(event, which).strip():
        raise InvalidArgument(f"{field}.node_id", "node_id or slug is required")
    if which == "node_id":
        validation.node_id(event.node_id, f"{field}.node_id")
    else:
        validation.slug(event.slug, f"{field}.slug")
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
    validation.short_id(event.session_id, f"{field}.session_id")
    validation.short_id(event.source, f"{field}.source")
    context = None
    if event.HasField("context"):
        if event.context.ByteSize() > MAX_CONTEXT_BYTES:
            raise InvalidArgument(f"{field}.context", f"is larger than {MAX_CONTEXT_BYTES} bytes")
        context = convert.struct_to_dict(event.context, f"{field}.context")
    return UserEventRecord(
        event_id=event.event_id,
        user_id=event.user_id,
        tenant=tenant,
        node_id=event.node_id if which == "node_id" else "",
        slug=event.slug if which == "slug" else "",
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
    top_k = request.top_k or 10
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
    for name in ("similarity", "engagement", "recency", "archetype_prior"):
        if request.weights.HasField(name):
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
        vector_name=request.vector_name or "content",
        weights=weights,
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
    """The response message."""
    return pb.RecommendResponse(
        hits=[_hit(h, include_body) for h in result.hits],
        recommendation_id=result.recommendation_id,
        archetype=result.archetype,
        journey_events=result.journey_events,
        space_id=str(result.space.id),
    )


def _part(part: Any) -> pb.ScorePart:
    return pb.ScorePart(value=part.value, weight=part.weight, contribution=part.contribution)


def _hit(hit: RecommendHit, include_body: bool) -> pb.RecommendHit:
    explanation = pb.RecommendExplanation(
        source=_SOURCES[hit.source],
        similarity=_part(hit.similarity),
        engagement=_part(hit.engagement),
        recency=_part(hit.recency),
        archetype_prior=_part(hit.archetype_prior),
        similar_to=[_similar(s) for s in hit.similar_to],
        engagement_counts=pb.EngagementCounts(**hit.counts),
    )
    if hit.mmr_score is not None:
        explanation.mmr_score = hit.mmr_score
    return pb.RecommendHit(
        node=convert.node_to_proto(hit.node, include_body=include_body),
        score=hit.score,
        explanation=explanation,
    )


def _similar(item: Similar) -> pb.SimilarItem:
    message = pb.SimilarItem(
        node_id=item.node_id,
        slug=item.slug,
        title=item.title,
        similarity=item.similarity,
        action=item.action,  # type: ignore[arg-type]
        negative=item.negative,
    )
    if item.occurred_at is not None:
        message.occurred_at.FromDatetime(item.occurred_at)
    return message
