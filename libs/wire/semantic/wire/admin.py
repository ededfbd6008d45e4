"""Admin CheckConsistency, Explore and Snapshot messages <-> core values: requests validated (a bad
value is InvalidArgument naming its field), reports and maps out."""

from __future__ import annotations

from collections.abc import Sequence

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.backup import SnapshotResult, SnapshotScope, StoredSnapshot, checked_name
from semantic.core.consistency import (
    MAX_SAMPLE_LIMIT,
    ConsistencyReport,
    Remedy,
    migration_file,
)
from semantic.core.domain import DEFAULT_VECTOR
from semantic.core.explore import (
    DEFAULT_SAMPLE,
    MAX_CONTENT_TYPES,
    MAX_SAMPLE,
    ExploreQuery,
    ExploreResult,
)
from semantic.v1 import search_pb2 as pb

_REMEDIES = {
    Remedy.NONE: pb.CONSISTENCY_REMEDY_NONE,
    Remedy.HEAL: pb.CONSISTENCY_REMEDY_HEAL,
    Remedy.REINDEX: pb.CONSISTENCY_REMEDY_REINDEX,
    Remedy.ROLLBACK: pb.CONSISTENCY_REMEDY_ROLLBACK,
    Remedy.MIGRATE: pb.CONSISTENCY_REMEDY_MIGRATE,
}


def consistency_request(request: pb.CheckConsistencyRequest) -> tuple[int | None, int]:
    """(space id or None for the active space, sample limit 0..100; 0 means the default)."""
    space_id = validation.space_id(request.space_id)
    limit = validation.integer(request.sample_limit, "sample_limit", maximum=MAX_SAMPLE_LIMIT)
    return space_id, limit


def consistency_to_proto(report: ConsistencyReport) -> pb.CheckConsistencyResponse:
    """The report as a CheckConsistencyResponse."""
    response = pb.CheckConsistencyResponse(
        ok=report.ok,
        schema_version=report.schema_version,
        space_id=str(report.space.id) if report.space is not None else "",
        checks=[
            pb.ConsistencyCheck(
                name=c.name,
                ok=c.ok,
                summary=c.summary,
                count=c.count,
                examples=list(c.examples),
                remedy=_REMEDIES[c.remedy],
            )
            for c in report.checks
        ],
    )
    response.checked_at.FromDatetime(report.checked_at)
    for m in report.migrations:
        status = response.migrations.add(
            name=migration_file(m),
            recorded_sha256=m.recorded_sha256 or "",
            shipped_sha256=m.shipped_sha256 or "",
            matches=m.matches,
        )
        if m.applied_at is not None:
            status.applied_at.FromDatetime(m.applied_at)
    return response


def explore_request(request: pb.ExploreRequest, tenant: str) -> tuple[int | None, ExploreQuery]:
    """(space id or None for the active space, the query); ``tenant`` is the request's
    tenant, validated and held to the caller's token by the servicer."""
    validation.count(len(request.content_types), "content_types", MAX_CONTENT_TYPES)
    content_types = tuple(
        validation.name(value, f"content_types[{i}]")
        for i, value in enumerate(request.content_types)
    )
    vector_name = (
        validation.name(request.vector_name, "vector_name")
        if request.vector_name
        else DEFAULT_VECTOR
    )
    sample = validation.integer(request.sample, "sample", maximum=MAX_SAMPLE) or DEFAULT_SAMPLE
    space_id = validation.space_id(request.space_id)
    query = ExploreQuery(
        tenant=tenant,
        content_types=tuple(dict.fromkeys(content_types)),
        vector_name=vector_name,
        sample=sample,
        seed=request.seed,
    )
    return space_id, query


def explore_to_proto(result: ExploreResult) -> pb.ExploreResponse:
    """The map as an ExploreResponse."""
    return pb.ExploreResponse(
        points=[
            pb.ExplorePoint(
                node_id=p.node_id,
                slug=p.slug or "",
                title=p.title,
                content_type=p.content_type,
                x=p.x,
                y=p.y,
                chunk_index=p.chunk,
            )
            for p in result.points
        ],
        method=result.method,
        explained_variance=list(result.explained_variance),
        total_vectors=result.total_vectors,
        space_id=str(result.space.id),
    )


MAX_SNAPSHOT_FILTERS = 100
"""Tenants, and content types, a Snapshot may name."""


def snapshot_request(
    request: pb.SnapshotRequest, tenants: Sequence[str] | None
) -> tuple[str | None, SnapshotScope]:
    """(the chosen name or None for a fresh one, the scope). ``tenants``: the tenants the
    caller may snapshot after its token's claim (None: every tenant)."""
    name = checked_name(request.name) if request.name else None
    for field, values in (("tenants", request.tenants), ("content_types", request.content_types)):
        if len(values) > MAX_SNAPSHOT_FILTERS:
            raise InvalidArgument(field, f"at most {MAX_SNAPSHOT_FILTERS} entries")
    for index, content_type in enumerate(request.content_types):
        validation.name(content_type, f"content_types[{index}]")
    space = request.space or "active"
    if space in ("active", "all"):
        spaces: int | str = space
    else:
        chosen = validation.space_id(space, "space")
        if chosen is None:  # pragma: no cover - "" was mapped to "active" above
            raise InvalidArgument("space", "must be 'active', 'all' or a space id")
        spaces = chosen
    scope = SnapshotScope(
        tenants=sorted(set(tenants)) if tenants is not None else None,
        content_types=sorted(set(request.content_types)) or None,
        spaces=spaces,  # type: ignore[arg-type]
    )
    return name, scope


def stored_to_proto(stored: StoredSnapshot) -> pb.StoredSnapshot:
    """A stored snapshot as protobuf."""
    message = pb.StoredSnapshot(
        name=stored.name, url=stored.url, bytes=stored.bytes, scheduled=stored.scheduled
    )
    if stored.created_at is not None:
        message.created_at.FromDatetime(stored.created_at)
    return message


def snapshot_to_proto(result: SnapshotResult) -> pb.SnapshotResponse:
    """A snapshot written as a SnapshotResponse."""
    return pb.SnapshotResponse(
        snapshot=stored_to_proto(result.stored),
        files=[
            pb.SnapshotFile(file=name, rows=entry.rows)
            for name, entry in sorted(result.manifest.files.items())
        ],
        vectors=result.vectors,
        seconds=result.seconds,
        schema_version=result.manifest.schema_version,
    )
