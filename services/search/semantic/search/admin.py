"""gRPC servicer of semantic.v1.Admin: spaces and a health report (heal and reindex
arrive with the indexer)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import grpc

from semantic.common.embedder_client import EmbedderClient
from semantic.common.errors import DependencyUnavailable, InvalidArgument
from semantic.search import spaces
from semantic.search.db import connection
from semantic.search.servicer import space_id_from, space_to_proto
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

OK, DEGRADED, DOWN = (
    pb.COMPONENT_STATUS_OK,
    pb.COMPONENT_STATUS_DEGRADED,
    pb.COMPONENT_STATUS_DOWN,
)


class AdminServicer(search_pb2_grpc.AdminServicer):
    """Space switching and rollback, and a health report of the dependencies."""

    def __init__(self) -> None:
        self._deps: tuple[asyncpg.Pool, EmbedderClient] | None = None

    def attach(self, pool: asyncpg.Pool, embedder: EmbedderClient) -> None:
        """Start answering (calls before this get UNAVAILABLE)."""
        self._deps = (pool, embedder)

    @property
    def _pool(self) -> asyncpg.Pool:
        if self._deps is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._deps[0]

    @property
    def _embedder(self) -> EmbedderClient:
        if self._deps is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._deps[1]

    async def ListSpaces(
        self, request: pb.ListSpacesRequest, context: Any
    ) -> pb.ListSpacesResponse:
        async with connection(self._pool) as conn:
            found = await spaces.list_spaces(conn)
        active = next((s for s in found if s.state == "active"), None)
        return pb.ListSpacesResponse(
            spaces=[space_to_proto(s) for s in found],
            active_space_id=str(active.id) if active else "",
        )

    async def ActivateSpace(
        self, request: pb.ActivateSpaceRequest, context: Any
    ) -> pb.ActivateSpaceResponse:
        space_id = space_id_from(request.space_id)
        if space_id is None:
            raise InvalidArgument("space_id", "must name the space to activate")
        async with connection(self._pool) as conn:
            previous, current = await spaces.activate(conn, space_id)
            before = await spaces.get_space(conn, previous) if previous is not None else None
        response = pb.ActivateSpaceResponse(current=space_to_proto(current))
        if before is not None:
            response.previous.CopyFrom(space_to_proto(before))
        return response

    async def Rollback(self, request: pb.RollbackRequest, context: Any) -> pb.RollbackResponse:
        async with connection(self._pool) as conn:
            left, current = await spaces.rollback(conn)
            before = await spaces.get_space(conn, left)
        return pb.RollbackResponse(previous=space_to_proto(before), current=space_to_proto(current))

    async def HealthReport(
        self, request: pb.HealthReportRequest, context: Any
    ) -> pb.HealthReportResponse:
        components = [
            await _probe("postgresql", self._ping_database),
            await _probe("embedder", self._ping_embedder),
        ]
        response = pb.HealthReportResponse(components=components)
        try:
            async with connection(self._pool) as conn:
                response.active_space.CopyFrom(space_to_proto(await spaces.active_space(conn)))
        except Exception as exc:  # reported, not raised: this is a health report
            components.append(pb.ComponentHealth(name="active_space", status=DOWN, detail=str(exc)))
            response.components.append(components[-1])
        worst = max((c.status for c in response.components), default=OK)
        response.status = worst
        response.checked_at.FromDatetime(datetime.now(UTC))
        return response

    async def Heal(self, request: pb.HealRequest, context: Any) -> pb.HealResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Heal arrives with the indexer")
        raise AssertionError("unreachable")

    async def Reindex(self, request: pb.ReindexRequest, context: Any) -> pb.ReindexResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Reindex arrives with the indexer")
        raise AssertionError("unreachable")

    async def _ping_database(self) -> str:
        async with connection(self._pool) as conn:
            version = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
        return f"pgvector {version}"

    async def _ping_embedder(self) -> str:
        model = await self._embedder.default_model()
        return f"{model.model_id} ({model.dim}-d)"


async def _probe(name: str, check: Callable[[], Awaitable[str]]) -> pb.ComponentHealth:
    started = time.perf_counter()
    try:
        detail = await check()
        status = OK
    except Exception as exc:  # a failed probe is a DOWN component, never an error
        detail, status = f"{type(exc).__name__}: {exc}", DOWN
    return pb.ComponentHealth(
        name=name, status=status, detail=detail, latency_ms=(time.perf_counter() - started) * 1000
    )
