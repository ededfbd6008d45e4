"""Recommend and Track as the gRPC servicer calls them: protobuf converted by
:mod:`semantic.wire.recommend`, tenant and user enforced, then the core's tracker and
recommender (:mod:`semantic.core.recommend`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from semantic.common import validation
from semantic.common.auth import enforce_tenant, enforce_user
from semantic.common.errors import InvalidArgument
from semantic.core.recommend.events import TrackResult, UserEventRecord
from semantic.core.recommend.recommender import Recommender
from semantic.core.recommend.tracker import Tracker
from semantic.core.recommend.values import RecommendQuery
from semantic.core.spaces import ActiveSpaces, Space
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire.recommend import (
    recommend_query_from_proto,
    recommend_to_proto,
    user_event_from_proto,
)
from semantic.wire.recommend_debug import debug_to_proto, max_candidates


class Recommendations:
    """The recommendation side of the Search service."""

    def __init__(
        self,
        spaces: ActiveSpaces,
        limits: convert.Limits,
        tracker: Tracker,
        recommender: Recommender,
        *,
        max_track_events: int,
    ) -> None:
        self._spaces = spaces
        self._limits = limits
        self.tracker = tracker
        self.recommender = recommender
        self._max_track = max_track_events

    async def space(self, space_id: int | None) -> Space:
        """The requested or the active space (the service's one resolver)."""
        return await self._spaces.space(space_id)

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
        """Record validated events in the active space."""
        return await self.tracker.track(await self.space(None), records)

    async def recommend(
        self, request: pb.RecommendRequest, space_id: int | None = None
    ) -> pb.RecommendResponse:
        """Validate, recommend, convert (``space_id``: None for the active space)."""
        query = self._query(request)
        space = await self.space(space_id)
        result = await self.recommender.recommend(space, query)
        return recommend_to_proto(result, include_body=request.include_body)

    async def explain(
        self, request: pb.ExplainRecommendationRequest
    ) -> pb.ExplainRecommendationResponse:
        """The recommendation debugger: the same validation and recommendation as
        :meth:`recommend`, with everything behind it (``request.request`` is the
        RecommendRequest; field names in errors are prefixed ``request.``)."""
        limit = max_candidates(request)
        try:
            query = self._query(request.request)
            space_id = validation.space_id(request.request.space_id)
        except InvalidArgument as exc:
            raise InvalidArgument(f"request.{exc.field}", exc.problem) from exc
        space = await self.space(space_id)
        debug = await self.recommender.explain(space, query, max_candidates=limit)
        return debug_to_proto(debug, include_body=request.request.include_body)

    def _query(self, request: pb.RecommendRequest) -> RecommendQuery:
        """The validated query, with the caller's tenant and user enforced."""
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        user_id = enforce_user(validation.user_id(request.user_id, "user_id"))
        return recommend_query_from_proto(
            request, tenant, user_id, self._limits, self.recommender.config
        )
