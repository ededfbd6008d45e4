"""Backups of the search service: the snapshot service of SEMANTIC_SNAPSHOT_LOCATION for
the Admin ``Snapshot`` RPC, the schedule (SEMANTIC_SNAPSHOT_INTERVAL_S), and
``python -m semantic.search.backup``, the one-shot entry the Kubernetes CronJob runs.

The one-shot takes a scheduled snapshot of the whole installation (named
``scheduled-<UTC time>``) and applies the retention, whether or not the interval has
passed; it exits 0 when stored, 1 on failure (the reason logged), 2 when misconfigured.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta

import structlog

from semantic.common.errors import SemanticError
from semantic.common.log import configure_logging
from semantic.core.backup import Backups, BackupScheduler, ScheduleLock, SnapshotScope
from semantic.core.settings import SnapshotSettings, WritePathSettings
from semantic.store.files.snapshots import FsspecSnapshots
from semantic.store.postgres.db import create_pool, default_session_settings
from semantic.store.postgres.snapshot import PostgresScheduleLock, PostgresSnapshotSource

log = structlog.get_logger(__name__)


class BackupSettings(WritePathSettings, SnapshotSettings):
    """DATABASE_URL and the SEMANTIC_SNAPSHOT_* settings."""


def backups_factory(
    settings: SnapshotSettings, dsn: str, lock: ScheduleLock
) -> Callable[[], Backups] | None:
    """None when no location is configured; else a function giving the snapshot service
    (built on first use and kept; FailedPrecondition each time the location is unusable,
    e.g. ``s3://`` without s3fs installed)."""
    if not settings.snapshot_location:
        return None
    built: list[Backups] = []

    def backups() -> Backups:
        if not built:
            storage = FsspecSnapshots(settings.snapshot_location, settings.snapshot_storage_options)
            built.append(
                Backups(
                    PostgresSnapshotSource(dsn),
                    storage,
                    lock,
                    retention=settings.snapshot_retention,
                    staging_dir=settings.staging_dir(),
                )
            )
        return built[0]

    return backups


def schedule(
    settings: SnapshotSettings, backups: Callable[[], Backups] | None
) -> BackupScheduler | None:
    """The started schedule, or None (no interval, no location, or an unusable one: logged)."""
    if backups is None or settings.snapshot_interval_s <= 0:
        return None
    try:
        service = backups()
    except SemanticError as exc:
        log.error("snapshot_schedule_off", reason=str(exc))
        return None
    scheduler = BackupScheduler(service, timedelta(seconds=settings.snapshot_interval_s))
    scheduler.start()
    log.info(
        "snapshot_schedule_on",
        location=settings.snapshot_location,
        interval_s=settings.snapshot_interval_s,
        retention=settings.snapshot_retention,
    )
    return scheduler


async def run_once(settings: BackupSettings) -> int:
    """One scheduled snapshot and the retention; the exit code."""
    if settings.database_url is None or not settings.snapshot_location:
        log.error("backup_misconfigured", reason="set DATABASE_URL and SEMANTIC_SNAPSHOT_LOCATION")
        return 2
    try:
        pool = await create_pool(
            settings.dsn(), min_size=1, max_size=1, session_settings=default_session_settings()
        )
    except (SemanticError, OSError) as exc:
        log.error("backup_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    try:
        factory = backups_factory(settings, settings.dsn(), PostgresScheduleLock(pool))
        assert factory is not None  # a location is set
        result = await factory().snapshot(SnapshotScope(spaces="all"), scheduled=True)
    except (SemanticError, OSError) as exc:
        log.error("backup_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        await pool.close()
    log.info(
        "backup_stored",
        url=result.stored.url,
        bytes=result.stored.bytes,
        vectors=result.vectors,
        seconds=round(result.seconds, 3),
        pruned=result.pruned,
    )
    return 0


def main() -> None:
    """Entry point of ``python -m semantic.search.backup``."""
    settings = BackupSettings()
    configure_logging(settings.log_level, settings.log_format)
    sys.exit(asyncio.run(run_once(settings)))


if __name__ == "__main__":
    main()
