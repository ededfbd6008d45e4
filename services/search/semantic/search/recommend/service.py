"""Recommend and Track as the gRPC servicer calls them: protobuf converted by
:mod:`semantic.wire.recommend`, tenant and user enforced, then the core's tracker and
recommender (:mod:`semantic.core.recommend`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg

from semantic.common import validation
from semantic.common.auth import enforce_tenant, enforce_user
from semantic.core.recommend.events import TrackResult, UserEventRecord
from semantic.core.recommend.recommender import Recommender
from semantic.core.recommend.tracker import Tracker
from semantic.search import convert, spaces
from semantic.search.db import connection
from semantic.v1 import search_pb2 as pb
from semantic.wire.recommend import (
    recommend_query_from_proto,
    recommend_to_proto,
    user_event_from_proto,
)


class Recommendations:
    """The recommendation side of the Search service."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        limits: convert.Limits,
        tracker: Tracker,
        recommender: Recommender,
        *,
        max_track_events: int,
    ) -> None:
        self._pool = pool
        self._limits = limits
        self.tracker = tracker
        self.recommender = recommender
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
        """Record validated events in the active space."""
        return await self.tracker.track(await self.space(None), records)

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
