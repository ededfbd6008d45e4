"""Backups: snapshots written to a configured location, on request or on a schedule.

A backup is a portable snapshot (:mod:`semantic.core.snapshot`, the format of
``semantic export``) packed as one ``.tar`` and stored under a location (a local folder or
any fsspec URL). Three ports do the work: a :class:`SnapshotSource` writes the snapshot's
files into a local staging folder, a :class:`SnapshotStorage` stores, lists and deletes the
packed snapshots, and a :class:`ScheduleLock` lets one process of the installation run the
schedule at a time. The decisions (names, when a scheduled snapshot is due, which ones the
retention removes) are plain functions here.

Names: ``scheduled-YYYYMMDDTHHMMSSZ`` for the schedule's snapshots, which the retention
prunes (the newest ``retention`` are kept); ``snapshot-YYYYMMDDTHHMMSSZ-xxxxxx`` or a name
the caller chooses for the others, which are never pruned.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

import structlog
from prometheus_client import Counter, Gauge

from semantic.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from semantic.core.snapshot import Manifest

log = structlog.get_logger(__name__)

SNAPSHOTS = Counter(
    "semantic_snapshots_total",
    "Snapshots attempted, by trigger and outcome",
    ["trigger", "outcome"],
)
LAST_SNAPSHOT = Gauge(
    "semantic_snapshot_last_success_timestamp_seconds",
    "Unix time of this process's last snapshot stored (0: none yet)",
)

SCHEDULED = "scheduled-"
"""Prefix of the schedule's snapshots (the only ones the retention removes)."""
SUFFIX = ".tar"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
"""A snapshot name a caller may choose (stored as NAME.tar)."""
STAMP = "%Y%m%dT%H%M%SZ"

SpaceChoice = int | Literal["active", "all"]


@dataclass(frozen=True)
class SnapshotScope:
    """What a snapshot holds: tenants and content types (None: all) and the vectors of
    the active space, of every space, or of one space id."""

    tenants: Sequence[str] | None = None
    content_types: Sequence[str] | None = None
    spaces: SpaceChoice = "active"


@dataclass(frozen=True)
class StoredSnapshot:
    """A packed snapshot at the location."""

    name: str
    url: str
    bytes: int
    created_at: datetime | None

    @property
    def scheduled(self) -> bool:
        """Written by the schedule (and so removed by the retention in time)."""
        return self.name.startswith(SCHEDULED)


@dataclass(frozen=True)
class SnapshotResult:
    """A snapshot written: where, what it holds, how long it took, what the retention
    removed afterwards."""

    stored: StoredSnapshot
    manifest: Manifest
    seconds: float
    pruned: list[str] = field(default_factory=list)

    @property
    def vectors(self) -> int:
        """Vector rows of every space in the snapshot."""
        return sum(s.vectors for s in self.manifest.spaces)


class SnapshotSource(Protocol):
    """Writes a snapshot's files (Parquet) into a folder and returns its manifest."""

    async def write(self, folder: Path, scope: SnapshotScope) -> Manifest:
        """Fill the empty ``folder`` from one consistent point in time."""
        ...


class SnapshotStorage(Protocol):
    """Packed snapshots at a location."""

    @property
    def location(self) -> str:
        """The location's URL (or folder), as configured."""
        ...

    async def put(self, name: str, folder: Path, manifest: Manifest) -> StoredSnapshot:
        """Store ``folder`` (manifest.json included) as ``name``.tar, atomically: a
        reader never sees part of it. AlreadyExists when ``name`` is taken."""
        ...

    async def stored(self) -> list[StoredSnapshot]:
        """Every snapshot at the location (``*.tar``), any order."""
        ...

    async def delete(self, name: str) -> None:
        """Remove ``name``.tar (nothing when it is gone already)."""
        ...


class ScheduleLock(Protocol):
    """One holder across the installation's processes."""

    def hold(self) -> AbstractAsyncContextManager[bool]:
        """Enter with True when this process holds the lock, False when another does."""
        ...


def snapshot_name(now: datetime, *, scheduled: bool) -> str:
    """The default name of a snapshot taken at ``now`` (UTC)."""
    stamp = now.astimezone(UTC).strftime(STAMP)
    return f"{SCHEDULED}{stamp}" if scheduled else f"snapshot-{stamp}-{secrets.token_hex(3)}"


def checked_name(name: str) -> str:
    """A caller's snapshot name, or InvalidArgument naming the field ``name``."""
    if not NAME.fullmatch(name):
        raise InvalidArgument(
            "name", "must match [A-Za-z0-9][A-Za-z0-9._-]{0,99} (letters, digits, . _ -)"
        )
    if name.startswith(SCHEDULED):
        raise InvalidArgument("name", f"{SCHEDULED!r} is reserved for scheduled snapshots")
    return name


def scheduled_at(name: str) -> datetime | None:
    """When a scheduled snapshot was taken, read from its name (None: not one)."""
    if not name.startswith(SCHEDULED):
        return None
    try:
        return datetime.strptime(name[len(SCHEDULED) :], STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


FUTURE_SKEW = timedelta(minutes=5)
"""A scheduled name dated further ahead than this was written by a process whose clock is
wrong: it neither counts as the newest (the schedule would stop until that date) nor makes
the retention remove the snapshots really taken (it is left for an operator)."""


def _dated(stored: Sequence[StoredSnapshot], now: datetime) -> list[tuple[datetime, str]]:
    """The scheduled snapshots not dated in the future, newest first."""
    dated = (
        (t, s.name)
        for s in stored
        if (t := scheduled_at(s.name)) is not None and t <= now + FUTURE_SKEW
    )
    return sorted(dated, reverse=True)


def due(stored: Sequence[StoredSnapshot], now: datetime, interval: timedelta) -> bool:
    """A scheduled snapshot is due when the newest one is ``interval`` old (or none is
    there). The location is the record, so every process, and a restarted one, agrees."""
    taken = _dated(stored, now)
    return not taken or now - taken[0][0] >= interval


def to_prune(
    stored: Sequence[StoredSnapshot], retention: int, now: datetime, keep: str = ""
) -> list[str]:
    """The scheduled snapshots beyond the newest ``retention`` (oldest first); never ``keep``
    (the one just written) nor one dated in the future (:data:`FUTURE_SKEW`)."""
    dated = _dated(stored, now)
    return [name for _, name in reversed(dated[max(retention, 1) :]) if name != keep]


class Backups:
    """Takes snapshots into the storage and applies the schedule's retention."""

    def __init__(
        self,
        source: SnapshotSource,
        storage: SnapshotStorage,
        lock: ScheduleLock,
        *,
        retention: int,
        staging_dir: Path | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._source = source
        self._storage = storage
        self._lock = lock
        self._retention = retention
        self._staging = staging_dir
        self._clock = clock
        self._manual = asyncio.Lock()

    @property
    def location(self) -> str:
        """Where the snapshots go."""
        return self._storage.location

    async def stored(self) -> list[StoredSnapshot]:
        """The stored snapshots, newest first (by time taken, then name)."""
        stored = await self._storage.stored()
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(stored, key=lambda s: (s.created_at or oldest, s.name), reverse=True)

    async def snapshot(
        self, scope: SnapshotScope, name: str | None = None, *, scheduled: bool = False
    ) -> SnapshotResult:
        """Write one snapshot of ``scope`` as ``name`` (default: a fresh name); a scheduled
        one is followed by the retention. AlreadyExists when ``name`` is taken. Manual
        snapshots of one process run one at a time (each holds a long read transaction)."""
        chosen = name if name is not None else snapshot_name(self._clock(), scheduled=scheduled)
        if any(s.name == chosen for s in await self._storage.stored()):
            raise AlreadyExists("snapshot", chosen)
        trigger = "schedule" if scheduled else "request"
        async with self._manual:
            started = time.perf_counter()
            try:
                async with _staging(self._staging) as folder:
                    try:
                        manifest = await self._source.write(folder, scope)
                    except OSError as exc:  # e.g. the staging disk is full
                        raise FailedPrecondition(f"snapshot staging folder: {exc}") from exc
                    stored = await self._storage.put(chosen, folder, manifest)
            except BaseException:
                SNAPSHOTS.labels(trigger, "failed").inc()
                raise
            seconds = time.perf_counter() - started
        SNAPSHOTS.labels(trigger, "stored").inc()
        LAST_SNAPSHOT.set_to_current_time()
        pruned = await self.prune(keep=stored.name) if scheduled else []
        log.info(
            "snapshot_written",
            name=stored.name,
            url=stored.url,
            bytes=stored.bytes,
            seconds=round(seconds, 3),
            pruned=pruned,
        )
        return SnapshotResult(stored, manifest, seconds, pruned)

    async def prune(self, keep: str = "") -> list[str]:
        """Remove the scheduled snapshots beyond the retention (never ``keep``); their
        names."""
        names = to_prune(await self._storage.stored(), self._retention, self._clock(), keep)
        for name in names:
            await self._storage.delete(name)
        return names

    async def run_scheduled(self, interval: timedelta) -> SnapshotResult | None:
        """Take the scheduled snapshot of the whole installation when it is due and no
        other process is taking it; None when nothing was to do."""
        async with self._lock.hold() as held:
            if not held or not due(await self._storage.stored(), self._clock(), interval):
                return None
            return await self.snapshot(SnapshotScope(spaces="all"), scheduled=True)


class _StagingFolder:
    """A temporary folder for one snapshot's files, removed afterwards."""

    def __init__(self, parent: Path | None) -> None:
        self._parent = parent
        self._work: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> Path:
        try:
            if self._parent is not None:
                self._parent.mkdir(parents=True, exist_ok=True)
            self._work = tempfile.TemporaryDirectory(prefix="semantic-snapshot-", dir=self._parent)
        except OSError as exc:
            raise FailedPrecondition(f"snapshot staging folder {self._parent}: {exc}") from exc
        folder = Path(self._work.name) / "snapshot"
        folder.mkdir()
        return folder

    async def __aexit__(self, *exc: object) -> None:
        if self._work is not None:
            await asyncio.to_thread(self._work.cleanup)


def _staging(parent: Path | None) -> _StagingFolder:
    return _StagingFolder(parent)


class BackupScheduler:
    """Checks every ``check_s`` seconds whether a scheduled snapshot is due and takes it
    (one process of the installation at a time; failures are logged and retried at the
    next check, never fatal to the service)."""

    def __init__(
        self,
        backups: Backups,
        interval: timedelta,
        *,
        check_s: float = 60.0,
        on_result: Callable[[SnapshotResult | None, BaseException | None], None] | None = None,
    ) -> None:
        if interval <= timedelta(0):
            raise FailedPrecondition("a snapshot schedule needs a positive interval")
        self._backups = backups
        self._interval = interval
        self._check_s = min(check_s, interval.total_seconds())
        self._on_result = on_result
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run the checks in the background."""
        self._task = asyncio.create_task(self._loop(), name="snapshot-schedule")

    async def close(self) -> None:
        """Stop the checks (a snapshot being written is abandoned; its staging is removed
        and the location keeps no part of it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _loop(self) -> None:
        async for _ in _ticks(self._check_s):
            try:
                result = await self._backups.run_scheduled(self._interval)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("snapshot_schedule_failed", error=f"{type(exc).__name__}: {exc}")
                self._report(None, exc)
                continue
            self._report(result, None)

    def _report(self, result: SnapshotResult | None, error: BaseException | None) -> None:
        if self._on_result is not None:
            self._on_result(result, error)


async def _ticks(every_s: float) -> AsyncIterator[None]:
    """Now, then every ``every_s`` seconds."""
    while True:
        yield
        await asyncio.sleep(every_s)
