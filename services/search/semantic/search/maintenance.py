"""Vector maintenance: heal, backfill and filling a new space (reindex).

All three walk the stored nodes (the source of truth) in key order, pick the nodes that
need vectors in a space, and re-embed them in batches through the write path
(``ContentWriter.rewrite_vectors``): one transaction per batch, skipping a node whose
content moved meanwhile (the next pass sees it again).

    heal      nodes without vectors in the space, or whose vectors were made from an
              older content hash (the space fixes the model)
    missing   only nodes without vectors (``--only-missing``)
    all       every node (backfill)

A space build (reindex) runs heal passes over the new space until one finds nothing to
do, then switches the ``active`` alias in one transaction (or leaves the space READY for
a manual switch). One build per space runs at a time across every process, under a
PostgreSQL advisory lock; a build interrupted by a restart is resumed by the next
process that looks for BUILDING spaces.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import structlog

from semantic.common.errors import DependencyUnavailable, FailedPrecondition, Overloaded
from semantic.search import spaces
from semantic.search.db import connection
from semantic.search.domain import NodeRecord
from semantic.search.node_store import node_from_row, node_select
from semantic.search.spaces import Space
from semantic.search.writer import ContentWriter

log = structlog.get_logger(__name__)

HealMode = Literal["heal", "missing", "all"]
_BUILD_LOCK = 0x5E3A
"""First key of the advisory lock guarding a space build (second key: the space id)."""


@dataclass
class HealReport:
    """Counts of one maintenance run."""

    scanned: int = 0
    missing: int = 0
    stale: int = 0
    reembedded: int = 0
    failed: int = 0
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready counts."""
        return {
            "scanned": self.scanned,
            "missing": self.missing,
            "stale": self.stale,
            "reembedded": self.reembedded,
            "failed": self.failed,
            "duration_s": round(self.duration_s, 3),
        }


Progress = Callable[[HealReport, int], None]
"""Called after each batch with the running report and the total nodes to scan."""


class Maintenance:
    """Heal, backfill and space builds over one database and one writer."""

    def __init__(self, pool: asyncpg.Pool, writer: ContentWriter, *, batch_size: int = 64) -> None:
        self._pool = pool
        self._writer = writer
        self._batch_size = batch_size

    async def heal(
        self,
        space: Space,
        *,
        mode: HealMode = "heal",
        content_type: str | None = None,
        limit: int = 0,
        dry_run: bool = False,
        progress: Progress | None = None,
    ) -> HealReport:
        """One pass over the nodes; re-embeds what ``mode`` selects (see module doc)."""
        started = time.perf_counter()
        report = HealReport()
        async with connection(self._pool) as conn:
            total = await conn.fetchval(
                "SELECT count(*) FROM semantic.nodes WHERE $1::text IS NULL OR content_type = $1",
                content_type,
            )
        after = ("", "")
        page = max(self._batch_size * 4, 256)
        while True:
            async with connection(self._pool) as conn:
                rows = await conn.fetch(
                    f"SELECT {node_select('n')},"
                    f" NOT EXISTS (SELECT 1 FROM {space.table} v"
                    "   WHERE v.tenant = n.tenant AND v.node_id = n.id) AS missing,"
                    f" EXISTS (SELECT 1 FROM {space.table} v"
                    "   WHERE v.tenant = n.tenant AND v.node_id = n.id"
                    "   AND NOT v.client_supplied AND v.content_hash <> n.content_hash) AS stale"
                    " FROM semantic.nodes n"
                    " WHERE (n.tenant, n.id) > ($1, $2)"
                    " AND ($3::text IS NULL OR n.content_type = $3)"
                    " ORDER BY n.tenant, n.id LIMIT $4",
                    after[0],
                    after[1],
                    content_type,
                    page,
                )
            if not rows:
                break
            after = (rows[-1]["tenant"], rows[-1]["id"])
            due: list[NodeRecord] = []
            for row in rows:
                report.scanned += 1
                node = node_from_row(row)
                if not self._writer.embeddable(node):
                    continue
                report.missing += row["missing"]
                report.stale += row["stale"] and not row["missing"]
                if mode == "all" or row["missing"] or (mode == "heal" and row["stale"]):
                    due.append(node)
            if limit:
                due = due[: max(0, limit - report.reembedded - report.failed)]
            if not dry_run:
                for start in range(0, len(due), self._batch_size):
                    await self._rewrite(space, due[start : start + self._batch_size], report)
            if progress is not None:
                progress(report, total)
            if limit and report.reembedded + report.failed >= limit:
                break
        report.duration_s = time.perf_counter() - started
        log.info("heal_pass", space=space.id, mode=mode, dry_run=dry_run, **report.as_dict())
        return report

    async def _rewrite(self, space: Space, batch: list[NodeRecord], report: HealReport) -> None:
        """Re-embed one batch. An unavailable embedder or database, or a model mismatch,
        stops the run (raised); anything else only fails this batch (counted, logged)."""
        try:
            written = await self._writer.rewrite_vectors(space, batch)
        except (DependencyUnavailable, FailedPrecondition, Overloaded):
            raise
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            raise
        except Exception as exc:
            report.failed += len(batch)
            report.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("heal_batch_failed", space=space.id, nodes=len(batch), error=str(exc))
            return
        report.reembedded += len(written)

    async def build_space(self, space: Space, *, max_passes: int = 5) -> Space | None:
        """Fill a BUILDING space, then activate it (or mark it READY when the build asked
        for manual activation). Returns None when another process holds the build."""
        async with connection(self._pool) as lock_conn:
            if not await lock_conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", _BUILD_LOCK, space.id
            ):
                return None
            try:
                return await self._build_locked(space, max_passes)
            finally:
                await lock_conn.execute("SELECT pg_advisory_unlock($1, $2)", _BUILD_LOCK, space.id)

    async def _build_locked(self, space: Space, max_passes: int) -> Space:
        async with connection(self._pool) as conn:
            space = await spaces.get_space(conn, space.id)
        if space.state != "building":
            return space
        build = dict(space.build)
        build.setdefault("started_at", _now())
        done = 0

        def progress(report: HealReport, total: int) -> None:
            build.update(nodes_total=total, nodes_done=done + report.reembedded)
            build["nodes_failed"] = report.failed

        for attempt in range(max_passes):
            report = await self.heal(space, mode="heal", progress=progress)
            done += report.reembedded
            build.update(nodes_done=done, passes=attempt + 1)
            await _save_build(self._pool, space.id, build)
            if report.reembedded == 0 and report.failed == 0:
                break
        build["finished_at"] = _now()
        await _save_build(self._pool, space.id, build)
        async with connection(self._pool) as conn:
            if build.get("manual_activation"):
                await conn.execute(
                    "UPDATE semantic.embedding_spaces SET state = 'ready' WHERE id = $1", space.id
                )
                space = await spaces.get_space(conn, space.id)
            else:
                _, space = await spaces.activate(conn, space.id, allow_building=True)
        log.info("space_built", space=space.id, state=space.state, nodes=done)
        return space

    async def resume_builds(self) -> list[Space]:
        """Build every BUILDING space this process can lock (one after the other)."""
        async with connection(self._pool) as conn:
            pending = [s for s in await spaces.list_spaces(conn) if s.state == "building"]
        built = []
        for space in sorted(pending, key=lambda s: s.id):
            result = await self.build_space(space)
            if result is not None:
                built.append(result)
        return built


async def _save_build(pool: asyncpg.Pool, space_id: int, build: dict[str, Any]) -> None:
    async with connection(pool) as conn:
        await conn.execute(
            "UPDATE semantic.embedding_spaces SET build = $2::jsonb WHERE id = $1",
            space_id,
            build,
        )


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
