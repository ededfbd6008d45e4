"""Snapshot export: every table of a tenant scope read in one REPEATABLE READ, read-only
transaction (one point in time under concurrent writes) with server-side cursors, written
batch by batch to Parquet (zstd) while each file's sha256 is computed.

The tables and their Arrow schemas are listed here once (:data:`TABLES`); the import
(``snapshot_load``) reads the same files. JSON columns travel as JSON text, timestamps as
UTC microseconds, vectors as ``fixed_size_list<float32>[dim]``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import platform
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import asyncpg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pgvector.asyncpg import register_vector

from semantic.common.errors import FailedPrecondition, NotFound
from semantic.core.backup import SnapshotScope
from semantic.core.snapshot import (
    MANIFEST,
    FileEntry,
    HashingWriter,
    Manifest,
    SpaceEntry,
    vectors_file,
)
from semantic.core.spaces import ACTIVE, vector_table
from semantic.store.postgres.db import connection, translated

TS = pa.timestamp("us", tz="UTC")
VECTOR_LIST = pa.list_(pa.float32())


@dataclass(frozen=True)
class Table:
    """A table of the snapshot: its file, its Arrow schema (the columns, in order), its
    primary key, and whether a content-type filter reaches it (through its node id)."""

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    node_column: str | None = None

    @property
    def file(self) -> str:
        """The Parquet file name: the table's name."""
        return f"{self.name}.parquet"


def _schema(*fields: tuple[str, pa.DataType]) -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in fields])


S, I16, I32, I64, F64, B = pa.string(), pa.int16(), pa.int32(), pa.int64(), pa.float64(), pa.bool_()

NODES = Table(
    "nodes",
    _schema(
        ("tenant", S), ("id", S), ("slug", S), ("content_type", S), ("title", S),
        ("body", S), ("texts", S), ("tags", pa.list_(S)), ("metadata", S),
        ("content_hash", S), ("version", I64), ("doc_length", I32),
        ("created_at", TS), ("updated_at", TS),
    ),
    ("tenant", "id"),
    node_column="id",
)  # fmt: skip
TOMBSTONES = Table(
    "node_tombstones",
    _schema(("tenant", S), ("id", S), ("version", I64), ("deleted_at", TS), ("slug", S)),
    ("tenant", "id"),
)
POSTINGS = Table(
    "postings",
    _schema(("tenant", S), ("term", S), ("node_id", S), ("tf", I32)),
    ("tenant", "term", "node_id"),
    node_column="node_id",
)
USER_EVENTS = Table(
    "user_events",
    _schema(
        ("tenant", S), ("event_id", S), ("user_id", S), ("node_id", S), ("action", I16),
        ("weight", F64), ("occurred_at", TS), ("received_at", TS), ("session_id", S),
        ("archetype", S), ("source", S), ("context", S),
    ),
    ("tenant", "event_id"),
)  # fmt: skip
USERS = Table(
    "users",
    _schema(
        ("tenant", S), ("user_id", S), ("archetype", S), ("archetype_source", S),
        ("space_id", I32), ("journey_sum", VECTOR_LIST), ("journey_weight", F64),
        ("journey_at", TS), ("events", I32), ("updated_at", TS),
    ),
    ("tenant", "user_id"),
)  # fmt: skip
USER_NODES = Table(
    "user_nodes",
    _schema(
        ("tenant", S), ("user_id", S), ("node_id", S), ("seen", B), ("converted", B),
        ("dismissed", B), ("strongest", I16), ("last_at", TS),
    ),
    ("tenant", "user_id", "node_id"),
)  # fmt: skip
NODE_ENGAGEMENT = Table(
    "node_engagement",
    _schema(
        ("tenant", S), ("node_id", S), ("impressions", I64), ("views", I64), ("clicks", I64),
        ("likes", I64), ("conversions", I64), ("dismissals", I64), ("popularity", F64),
        ("last_at", TS),
    ),
    ("tenant", "node_id"),
)  # fmt: skip
ARCHETYPE_ENGAGEMENT = Table(
    "archetype_engagement",
    _schema(("tenant", S), ("archetype", S), ("node_id", S), ("score", F64)),
    ("tenant", "archetype", "node_id"),
)
ARCHETYPE_CENTROIDS = Table(
    "archetype_centroids",
    _schema(
        ("tenant", S), ("space_id", I32), ("label", S), ("centroid", VECTOR_LIST),
        ("members", I32), ("updated_at", TS),
    ),
    ("tenant", "space_id", "label"),
)  # fmt: skip
RELATIONS = Table(
    "relations",
    _schema(
        ("tenant", S), ("source_id", S), ("target_id", S), ("type", S), ("strength", F64),
        ("description", S), ("discovered", B), ("created_at", TS), ("updated_at", TS),
    ),
    ("tenant", "source_id", "target_id", "type"),
    node_column="source_id",
)  # fmt: skip
"""Relations (a snapshot file since schema 005; older snapshots have none)."""
FEEDBACK_EVENTS = Table(
    "feedback_events",
    _schema(
        ("tenant", S), ("feedback_id", S), ("node_id", S), ("success", B),
        ("minutes_saved", F64), ("note", S), ("reporter", S), ("occurred_at", TS),
        ("received_at", TS),
    ),
    ("tenant", "feedback_id"),
    node_column="node_id",
)  # fmt: skip
"""Feedback reports (since schema 008); the counters (``node_feedback``) are rebuilt from
them on import."""

RULES = Table(
    "rules",
    _schema(
        ("tenant", S), ("node_id", S), ("rule_id", S), ("pattern", S), ("kind", S),
        ("case_insensitive", B), ("scope", S), ("severity", S), ("action", S), ("message", S),
        ("active", B), ("created_at", TS), ("updated_at", TS),
    ),
    ("tenant", "node_id", "rule_id"),
    node_column="node_id",
)  # fmt: skip
"""Guardian rules (a snapshot file since schema 006; older snapshots have none)."""

TABLES: tuple[Table, ...] = (
    NODES,
    TOMBSTONES,
    POSTINGS,
    RELATIONS,
    RULES,
    USER_EVENTS,
    USERS,
    USER_NODES,
    NODE_ENGAGEMENT,
    ARCHETYPE_ENGAGEMENT,
    ARCHETYPE_CENTROIDS,
    FEEDBACK_EVENTS,
)
"""Every table a snapshot holds besides the vectors, in import order."""


def vector_schema(dim: int) -> pa.Schema:
    """The Arrow schema of a space's vector file."""
    return _schema(
        ("tenant", S), ("node_id", S), ("name", S), ("chunk", I32), ("span_start", I32),
        ("span_end", I32), ("content_hash", S), ("client_supplied", B),
        ("embedding", pa.list_(pa.float32(), int(dim))),
    )  # fmt: skip


SpaceChoice = int | Literal["active", "all"]
Progress = Callable[[str, int], Awaitable[None]]
"""Awaited after each batch written: the file's name and the batch's row count."""


async def schema_version(conn: asyncpg.Connection) -> list[str]:
    """The database's applied migrations as ``NNN_name``, in order."""
    rows = await conn.fetch("SELECT version, name FROM semantic.schema_migrations ORDER BY 1")
    return [f"{r['version']:03d}_{r['name']}" for r in rows]


async def export_snapshot(
    conn: asyncpg.Connection,
    folder: Path,
    *,
    dsn: str,
    tenants: Sequence[str] | None = None,
    content_types: Sequence[str] | None = None,
    spaces: SpaceChoice = "active",
    batch_size: int = 5_000,
    progress: Progress | None = None,
) -> Manifest:
    """Write the snapshot's Parquet files into ``folder`` (existing, empty) and return its
    manifest (not written: the caller writes it last). ``conn`` needs pgvector's codec and
    asyncpg's default jsonb codec (JSON as text)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        applied = await schema_version(conn)
        if not applied:
            raise FailedPrecondition("the database has no schema: run `semantic migrate` first")
        chosen = await _spaces(conn, spaces)
        manifest = Manifest(
            schema_version=applied[-1],
            created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            source=_source(dsn),
            tenants=sorted(set(tenants)) if tenants else None,
            content_types=sorted(set(content_types)) if content_types else None,
        )
        export = _Export(conn, folder, manifest, batch_size, progress)
        for table in TABLES:
            await export.table(table.name, table.schema, table.key, table.node_column)
        for space in chosen:
            rows = await export.vectors(space)
            manifest.spaces.append(replace_vectors(space, rows))
    return manifest


async def export_connection(dsn: str) -> asyncpg.Connection:
    """A connection of its own for an export (its transaction lasts the whole export):
    pgvector's codec and asyncpg's default jsonb codec (JSON as text)."""
    conn = await asyncpg.connect(dsn, timeout=30)
    try:
        await register_vector(conn)
    except BaseException:
        await conn.close()
        raise
    return conn


class ExportStopped(Exception):
    """An export abandoned because its caller went away (the service stops)."""


class PostgresSnapshotSource:
    """Snapshots of the database at ``dsn`` (the :class:`~semantic.core.backup.SnapshotSource`
    of backups). The export runs in a thread with an event loop and a connection of its
    own, so building the Parquet batches never holds up the service's own loop."""

    def __init__(self, dsn: str, *, batch_size: int = 2_000) -> None:
        self._dsn = dsn
        self._batch = batch_size

    async def write(self, folder: Path, scope: SnapshotScope) -> Manifest:
        """Export ``scope`` into ``folder``, manifest.json written last."""
        stop = threading.Event()
        try:
            return await asyncio.to_thread(asyncio.run, self._export(folder, scope, stop))
        except asyncio.CancelledError:
            stop.set()  # the thread gives up at its next batch
            raise

    async def _export(self, folder: Path, scope: SnapshotScope, stop: threading.Event) -> Manifest:
        async def progress(file: str, rows: int) -> None:
            if stop.is_set():
                raise ExportStopped(file)

        async with translated():  # an outage is DatabaseOutage (UNAVAILABLE), not a bug
            conn = await export_connection(self._dsn)
            try:
                manifest = await export_snapshot(
                    conn,
                    folder,
                    dsn=self._dsn,
                    tenants=scope.tenants,
                    content_types=scope.content_types,
                    spaces=scope.spaces,
                    batch_size=self._batch,
                    progress=progress,
                )
            finally:
                await conn.close()
        (folder / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
        return manifest


SCHEDULE_LOCK = 0x5E3C
"""Key of the session advisory lock held while a scheduled snapshot is considered."""


class PostgresScheduleLock:
    """The snapshot schedule's lock (the :class:`~semantic.core.backup.ScheduleLock`): a
    session advisory lock on a pooled connection, so one process of the installation runs
    the schedule at a time."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @asynccontextmanager
    async def hold(self) -> AsyncIterator[bool]:
        """True inside when this process holds the lock."""
        async with connection(self._pool) as conn:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", SCHEDULE_LOCK):
                yield False
                return
            try:
                yield True
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", SCHEDULE_LOCK)


def replace_vectors(space: SpaceEntry, rows: int) -> SpaceEntry:
    """``space`` with its exported vector row count."""
    return dataclasses.replace(space, vectors=rows)


class _Export:
    """Streams query results into Parquet files, recording each in the manifest."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        folder: Path,
        manifest: Manifest,
        batch_size: int,
        progress: Progress | None,
    ) -> None:
        self._conn = conn
        self._folder = folder
        self._manifest = manifest
        self._batch = max(1, batch_size)
        self._progress = progress

    def _where(self, alias: str, node_column: str | None) -> tuple[str, list[Any]]:
        clauses, args = [], []
        if self._manifest.tenants:
            args.append(self._manifest.tenants)
            clauses.append(f"{alias}.tenant = ANY(${len(args)}::text[])")
        if self._manifest.content_types and node_column:
            args.append(self._manifest.content_types)
            clauses.append(
                f"EXISTS (SELECT 1 FROM semantic.nodes f WHERE f.tenant = {alias}.tenant"
                f" AND f.id = {alias}.{node_column} AND f.content_type = ANY(${len(args)}::text[]))"
            )
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    async def table(
        self, name: str, schema: pa.Schema, key: tuple[str, ...], node_column: str | None
    ) -> int:
        where, args = self._where("t", node_column)
        columns = ", ".join(f"t.{c}" for c in schema.names)
        sql = f"SELECT {columns} FROM semantic.{name} t{where} ORDER BY {', '.join(key)}"
        return await self._write(f"{name}.parquet", schema, sql, args)

    async def vectors(self, space: SpaceEntry) -> int:
        schema = vector_schema(space.dim)
        where, args = self._where("t", "node_id")
        columns = ", ".join(f"t.{c}" for c in schema.names)
        sql = (
            f"SELECT {columns} FROM {vector_table(space.id)} t{where}"
            " ORDER BY tenant, node_id, name, chunk"
        )
        return await self._write(vectors_file(space.id), schema, sql, args)

    async def _write(self, file: str, schema: pa.Schema, sql: str, args: list[Any]) -> int:
        sink = HashingWriter((self._folder / file).open("wb"))
        rows = 0
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            cursor = await self._conn.cursor(sql, *args)
            while batch := await cursor.fetch(self._batch):
                writer.write_batch(_record_batch(batch, schema))
                rows += len(batch)
                if self._progress is not None:
                    await self._progress(file, len(batch))
        sink.close()
        self._manifest.files[file] = FileEntry(rows=rows, bytes=sink.size, sha256=sink.sha256)
        return rows


def _record_batch(rows: list[asyncpg.Record], schema: pa.Schema) -> pa.RecordBatch:
    arrays = []
    for index, column in enumerate(schema):
        values = [r[index] for r in rows]
        if pa.types.is_fixed_size_list(column.type):
            flat = np.concatenate([np.asarray(_array(v), dtype=np.float32) for v in values])
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), column.type.list_size))
        elif pa.types.is_list(column.type) and column.type.value_type == pa.float32():
            arrays.append(
                pa.array([None if v is None else list(v) for v in values], type=column.type)
            )
        else:
            arrays.append(pa.array(values, type=column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _array(value: Any) -> Any:
    return value.to_numpy() if hasattr(value, "to_numpy") else value


async def _spaces(conn: asyncpg.Connection, choice: SpaceChoice) -> list[SpaceEntry]:
    rows = await conn.fetch(
        "SELECT s.id, s.model_id, s.model_sha256, s.dim, s.version, s.state, s.index_precision,"
        " (a.space_id IS NOT NULL) AS active, to_regclass('semantic.vectors_' || s.id) AS tbl"
        " FROM semantic.embedding_spaces s"
        " LEFT JOIN semantic.space_aliases a ON a.name = $1 AND a.space_id = s.id"
        " ORDER BY s.id",
        ACTIVE,
    )
    spaces = [
        SpaceEntry(
            id=r["id"],
            model_id=r["model_id"],
            model_sha256=r["model_sha256"],
            dim=r["dim"],
            version=r["version"],
            state=r["state"],
            active=r["active"],
            vectors=0,
            index_precision=r["index_precision"],
        )
        for r in rows
        if r["tbl"] is not None
    ]
    if choice == "all":
        return spaces
    if choice == "active":
        return [s for s in spaces if s.active]
    picked = [s for s in spaces if s.id == int(choice)]
    if not picked:
        raise NotFound("embedding space", str(choice))
    return picked


def _source(dsn: str) -> dict[str, str]:
    parts = urlsplit(dsn)
    try:
        semantic_version = version("semantic")
    except PackageNotFoundError:  # pragma: no cover - always installed in practice
        semantic_version = "unknown"
    return {
        "host": parts.hostname or "",
        "port": str(parts.port or ""),
        "database": parts.path.lstrip("/"),
        "semantic_version": semantic_version,
        "python": platform.python_version(),
    }
