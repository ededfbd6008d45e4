"""gRPC servicer of semantic.v1.Admin: spaces, heal, reindex, a health report, the dead
letters (:mod:`semantic.search.pipeline`), the recommendation debugger, the consistency
check and the vector map (Explore).

A Reindex creates the space and fills it in a background task of this process; if the
process stops first, the indexer's heal loop (or the next Reindex call) resumes it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from semantic.common import validation
from semantic.common.auth import enforce_tenant, require_every_tenant
from semantic.common.embedder_client import EmbedderClient
from semantic.common.errors import DependencyUnavailable, FailedPrecondition, InvalidArgument
from semantic.core.backup import Backups
from semantic.core.consistency import ConsistencyChecker
from semantic.core.explore import Explorer
from semantic.core.local_sync import LocalIndexFollower
from semantic.core.maintenance import Maintenance
from semantic.core.spaces import ActiveSpaces, Space
from semantic.search.pipeline import PipelineAdmin
from semantic.search.recommend.service import Recommendations
from semantic.search.servicer import space_id_from, space_to_proto
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc
from semantic.wire import admin as wire

log = structlog.get_logger(__name__)

MAX_MODEL_DIR_CHARS = 4096
"""Longest model directory path a Reindex may name (it is stored with the space)."""

OK, DEGRADED, DOWN = (
    pb.COMPONENT_STATUS_OK,
    pb.COMPONENT_STATUS_DEGRADED,
    pb.COMPONENT_STATUS_DOWN,
)


class AdminServicer(search_pb2_grpc.AdminServicer):
    """Space switching and rollback, and a health report of the dependencies."""

    def __init__(self, pipeline: PipelineAdmin) -> None:
        self._deps: tuple[EmbedderClient, Maintenance] | None = None
        self._recommend: Recommendations | None = None
        self._pipeline = pipeline
        self._views: tuple[ConsistencyChecker, Explorer] | None = None
        self._builds: dict[int, asyncio.Task[Any]] = {}
        self._local: LocalIndexFollower | None = None
        self._backups: Callable[[], Backups] | None = None

    def attach(
        self,
        embedder: EmbedderClient,
        maintenance: Maintenance,
        recommendations: Recommendations | None = None,
        *,
        consistency: ConsistencyChecker,
        explorer: Explorer,
        local_index: LocalIndexFollower | None = None,
        backups: Callable[[], Backups] | None = None,
    ) -> None:
        """Start answering (calls before this get UNAVAILABLE; the dead-letter RPCs answer
        from the start, as NATS allows). ``local_index``: the degraded-mode index, reported
        by HealthReport. ``backups``: gives the snapshot service of the configured location
        (raising FailedPrecondition when none is usable); None: no location configured."""
        self._local = local_index
        self._backups = backups
        self._deps = (embedder, maintenance)
        self._recommend = recommendations
        self._views = (consistency, explorer)

    @property
    def _maintenance(self) -> Maintenance:
        if self._deps is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._deps[1]

    @property
    def _checks(self) -> tuple[ConsistencyChecker, Explorer]:
        if self._views is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._views

    @property
    def _spaces(self) -> ActiveSpaces:
        return self._maintenance.spaces

    @property
    def _embedder(self) -> EmbedderClient:
        if self._deps is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._deps[0]

    async def ListSpaces(
        self, request: pb.ListSpacesRequest, context: Any
    ) -> pb.ListSpacesResponse:
        found = await self._spaces.registry.list_all()
        counts = await self._spaces.registry.vector_counts(found)
        active = next((s for s in found if s.state == "active"), None)
        return pb.ListSpacesResponse(
            spaces=[_space_message(s, counts[s.id]) for s in found],
            active_space_id=str(active.id) if active else "",
        )

    async def ActivateSpace(
        self, request: pb.ActivateSpaceRequest, context: Any
    ) -> pb.ActivateSpaceResponse:
        space_id = space_id_from(request.space_id)
        if space_id is None:
            raise InvalidArgument("space_id", "must name the space to activate")
        previous, current = await self._spaces.activate(space_id, allow_building=request.force)
        before = await self._spaces.space(previous) if previous is not None else None
        counts = await self._spaces.registry.vector_counts(
            [current, *([before] if before is not None else [])]
        )
        response = pb.ActivateSpaceResponse(current=_space_message(current, counts[current.id]))
        if before is not None:
            response.previous.CopyFrom(_space_message(before, counts[before.id]))
        return response

    async def Rollback(self, request: pb.RollbackRequest, context: Any) -> pb.RollbackResponse:
        left, current = await self._spaces.rollback()
        before = await self._spaces.space(left)
        counts = await self._spaces.registry.vector_counts([before, current])
        return pb.RollbackResponse(
            previous=_space_message(before, counts[before.id]),
            current=_space_message(current, counts[current.id]),
        )

    async def HealthReport(
        self, request: pb.HealthReportRequest, context: Any
    ) -> pb.HealthReportResponse:
        components = [
            await _probe("postgresql", self._ping_database),
            await _probe("embedder", self._ping_embedder),
        ]
        response = pb.HealthReportResponse(components=components)
        try:
            active = await self._spaces.registry.active()
            response.active_space.CopyFrom(_space_message(active))
        except Exception as exc:  # reported, not raised: this is a health report
            components.append(pb.ComponentHealth(name="active_space", status=DOWN, detail=str(exc)))
            response.components.append(components[-1])
        await self._pipeline.report(response)
        worst = max((c.status for c in response.components), default=OK)
        response.status = worst
        if self._local is not None:
            _report_local_index(response, self._local)
        response.checked_at.FromDatetime(datetime.now(UTC))
        return response

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: Any
    ) -> pb.ListDeadLettersResponse:
        return await self._pipeline.list(request)

    async def ReplayDeadLetters(
        self, request: pb.ReplayDeadLettersRequest, context: Any
    ) -> pb.ReplayDeadLettersResponse:
        return await self._pipeline.replay(request)

    async def DiscardDeadLetters(
        self, request: pb.DiscardDeadLettersRequest, context: Any
    ) -> pb.DiscardDeadLettersResponse:
        return await self._pipeline.discard(request)

    async def ExplainRecommendation(
        self, request: pb.ExplainRecommendationRequest, context: Any
    ) -> pb.ExplainRecommendationResponse:
        if self._recommend is None:
            raise DependencyUnavailable("search", "still starting up")
        return await self._recommend.explain(request)

    async def Heal(self, request: pb.HealRequest, context: Any) -> pb.HealResponse:
        if request.content_type:
            validation.name(request.content_type, "content_type")
        space_id = space_id_from(request.space_id)
        space = await self._spaces.space(space_id)
        report = await self._maintenance.heal(
            space,
            mode="missing" if request.only_missing else "heal",
            content_type=request.content_type or None,
            limit=request.limit,
            dry_run=request.dry_run,
        )
        return pb.HealResponse(
            scanned=report.scanned,
            missing=report.missing,
            stale=report.stale,
            reembedded=report.reembedded,
            failed=report.failed,
            duration_seconds=report.duration_s,
            orphans=report.orphans,
        )

    async def CheckConsistency(
        self, request: pb.CheckConsistencyRequest, context: Any
    ) -> pb.CheckConsistencyResponse:
        space_id, sample_limit = wire.consistency_request(request)
        report = await self._checks[0].check(space_id, sample_limit)
        return wire.consistency_to_proto(report)

    async def Explore(self, request: pb.ExploreRequest, context: Any) -> pb.ExploreResponse:
        # Admin, yet held to one tenant: a token with a tenant claim maps only its own.
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        space_id, query = wire.explore_request(request, tenant)
        return wire.explore_to_proto(await self._checks[1].explore(space_id, query))

    def _snapshots(self) -> Backups:
        if self._deps is None:
            raise DependencyUnavailable("search", "still starting up")
        if self._backups is None:
            raise FailedPrecondition(
                "no snapshot location: set SEMANTIC_SNAPSHOT_LOCATION (a folder or an fsspec URL)"
            )
        return self._backups()

    async def Snapshot(self, request: pb.SnapshotRequest, context: Any) -> pb.SnapshotResponse:
        require_every_tenant()  # the installation's operators' tool, whatever the tenants
        tenants = [validation.tenant(t, f"tenants[{i}]") for i, t in enumerate(request.tenants)]
        name, scope = wire.snapshot_request(request, tenants or None)
        backups = self._snapshots()
        return wire.snapshot_to_proto(await backups.snapshot(scope, name))

    async def ListSnapshots(
        self, request: pb.ListSnapshotsRequest, context: Any
    ) -> pb.ListSnapshotsResponse:
        require_every_tenant()  # the names and sizes of every tenant's snapshots
        backups = self._snapshots()
        return pb.ListSnapshotsResponse(
            location=backups.location,
            snapshots=[wire.stored_to_proto(s) for s in await backups.stored()],
        )

    async def Reindex(self, request: pb.ReindexRequest, context: Any) -> pb.ReindexResponse:
        which = request.WhichOneof("model")
        if which is None:
            raise InvalidArgument("model", "set model_id or model_dir")
        if which == "model_dir":
            if not request.model_dir.strip():
                raise InvalidArgument("model_dir", "must not be empty")
            validation.text(request.model_dir, "model_dir", MAX_MODEL_DIR_CHARS)
            # The caller's token (admin, no tenant claim) is what the embedder checks.
            model = await self._embedder.load_model(
                request.model_dir, authorization=_authorization(context)
            )
        else:
            served = {m.model_id: m for m in await self._embedder.models()}
            if request.model_id not in served:
                raise InvalidArgument(
                    "model_id",
                    f"the embedder does not serve {request.model_id!r}; "
                    f"served: {', '.join(sorted(served))}",
                )
            model = served[request.model_id]
        build: dict[str, Any] = {"manual_activation": request.manual_activation}
        if which == "model_dir":
            build["model_dir"] = request.model_dir
        space, created = await self._spaces.registry.reindex(
            model_id=model.model_id,
            model_sha256=model.sha256,
            dim=model.dim,
            build=build,
            force_new=request.force_new,
        )
        if space.state == "building":
            self._start_build(space)
        counts = await self._spaces.registry.vector_counts([space])
        return pb.ReindexResponse(space=_space_message(space, counts[space.id]), created=created)

    def _start_build(self, space: Space) -> None:
        """Fill the space in the background; the task is kept so it is not collected."""
        if space.id in self._builds:
            return
        task = asyncio.create_task(self._maintenance.build_space(space), name=f"build-{space.id}")
        self._builds[space.id] = task

        def done(finished: asyncio.Task[Any]) -> None:
            self._builds.pop(space.id, None)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("space_build_failed", space=space.id, error=str(finished.exception()))

        task.add_done_callback(done)

    async def close(self) -> None:
        """Stop background builds (another process resumes them)."""
        for task in list(self._builds.values()):
            task.cancel()
        await asyncio.gather(*self._builds.values(), return_exceptions=True)

    async def _ping_database(self) -> str:
        return await self._spaces.registry.vector_extension()

    async def _ping_embedder(self) -> str:
        model = await self._embedder.default_model()
        return f"{model.model_id} ({model.dim}-d)"


def _authorization(context: Any) -> str | None:
    """The caller's ``authorization`` metadata, to pass on to the embedder."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            return value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return None


def _space_message(space: Space, counts: tuple[int, int] | None = None) -> pb.EmbeddingSpace:
    """A space with its build progress (``build`` of the registry row) and counts."""
    message = space_to_proto(space, counts[0] if counts else None)
    if counts:
        message.nodes = counts[1]
    build = space.build
    if build:
        message.build.nodes_total = int(build.get("nodes_total", 0))
        message.build.nodes_done = int(build.get("nodes_done", 0))
        message.build.nodes_failed = int(build.get("nodes_failed", 0))
        message.build.error = str(build.get("error", ""))
        for name in ("started_at", "finished_at"):
            if build.get(name):
                getattr(message.build, name).FromDatetime(datetime.fromisoformat(build[name]))
    return message


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


_DATABASE_COMPONENTS = ("postgresql", "active_space")


def _report_local_index(response: pb.HealthReportResponse, local: LocalIndexFollower) -> None:
    """The ``local_index`` component; while PostgreSQL is down and the index serves, the
    report is ``degraded`` and its status DEGRADED rather than DOWN (reads still work)."""
    response.components.append(
        pb.ComponentHealth(
            name="local_index", status=OK if local.ready else DEGRADED, detail=local.describe()
        )
    )
    database_down = any(
        c.name in _DATABASE_COMPONENTS and c.status == DOWN for c in response.components
    )
    response.degraded = database_down and local.ready
    if response.degraded:
        others = [c.status for c in response.components if c.name not in _DATABASE_COMPONENTS]
        response.status = max([*others, DEGRADED])
