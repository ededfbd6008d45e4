"""Vector maintenance: heal, backfill and filling a new space (reindex).

All three walk the stored nodes (the source of truth) in key order, pick the nodes that
need vectors in a space, and re-embed them in batches through the write path
(``ContentWriter.rewrite_vectors``): one transaction per batch, skipping a node whose
content moved meanwhile (the next pass sees it again).

    heal      nodes without vectors in the space, or whose vectors were made from an
              older content hash (the space fixes the model); vector rows whose node
              no longer exists are removed (every mode, unless limited to a content type)
    missing   only nodes without vectors (``--only-missing``)
    all       every node (backfill)

A space build (reindex) runs heal passes over the new space until one finds nothing to
do, then switches the ``active`` alias in one transaction (or leaves the space READY for
a manual switch). One build per space runs at a time across every process, under a
lock of the store (``MaintenanceStore.exclusive``); a build interrupted by a restart is
resumed by the next process that looks for BUILDING spaces.

A heal loop (the indexer's) runs a pass on its interval and at once when asked through a
:class:`HealTrigger`: by the database guardian after a recovery, and by a
:class:`CompletenessCheck` that walks the nodes one small key-ordered window at a time
and finds nodes without vectors (an emptied vector table, nodes restored without theirs).
One loop pass per space runs at a time across every process (:meth:`Maintenance.heal_exclusive`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from semantic.common.errors import DependencyUnavailable, FailedPrecondition, Overloaded
from semantic.core.domain import NodeRecord
from semantic.core.ports import MaintenanceStore
from semantic.core.spaces import DEFAULT_ACTIVE_SPACE_TTL_S, ActiveSpaces, Space
from semantic.core.writer import ContentWriter

log = structlog.get_logger(__name__)

HealMode = Literal["heal", "missing", "all"]
Key = tuple[str, str]


@dataclass
class HealReport:
    """Counts of one maintenance run."""

    scanned: int = 0
    missing: int = 0
    stale: int = 0
    reembedded: int = 0
    failed: int = 0
    orphans: int = 0
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
            "orphans": self.orphans,
            "duration_s": round(self.duration_s, 3),
        }


Progress = Callable[[HealReport, int], None]
"""Called after each batch with the running report and the total nodes to scan."""


class Maintenance:
    """Heal, backfill and space builds over one database and one writer."""

    def __init__(
        self,
        store: MaintenanceStore,
        spaces: ActiveSpaces,
        writer: ContentWriter,
        *,
        batch_size: int,
    ) -> None:
        self._store = store
        self._spaces = spaces
        self._writer = writer
        self._batch_size = batch_size

    @property
    def spaces(self) -> ActiveSpaces:
        """The active-space resolver maintenance reads and switches spaces through."""
        return self._spaces

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
        total = await self._store.count_nodes(content_type)
        after = ("", "")
        page = max(self._batch_size * 4, 256)
        while True:
            rows = await self._store.heal_page(space, after, content_type, page)
            if not rows:
                break
            after = (rows[-1].node.tenant, rows[-1].node.id)
            due: list[NodeRecord] = []
            for row in rows:
                report.scanned += 1
                node = row.node
                if not self._writer.embeddable(node):
                    continue
                report.missing += row.missing
                report.stale += row.stale and not row.missing
                if mode == "all" or row.missing or (mode == "heal" and row.stale):
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
        if content_type is None:  # orphaned rows have no node, hence no content type
            report.orphans = await self._store.remove_orphans(space, dry_run=dry_run)
        report.duration_s = time.perf_counter() - started
        log.info("heal_pass", space=space.id, mode=mode, dry_run=dry_run, **report.as_dict())
        return report

    async def heal_exclusive(self, space: Space) -> HealReport | None:
        """A heal pass unless another process runs one over ``space`` now (then None)."""
        async with self._store.exclusive("heal", space.id) as held:
            if not held:
                log.info("heal_pass_skipped", space=space.id, reason="running elsewhere")
                return None
            return await self.heal(space, mode="heal")

    async def missing_window(
        self, space: Space, after: Key, limit: int
    ) -> tuple[list[NodeRecord], set[Key], Key | None]:
        """One window of at most ``limit`` nodes after ``after`` in key order: the nodes of
        it without any vector in ``space`` that this writer would embed, every key of the
        window, and its last key (None when no node follows ``after``)."""
        found, keys, last = await self._store.missing_window(space, after, limit)
        return [node for node in found if self._writer.embeddable(node)], keys, last

    async def _rewrite(self, space: Space, batch: list[NodeRecord], report: HealReport) -> None:
        """Re-embed one batch. An unavailable embedder or database, or a model mismatch,
        stops the run (raised); anything else only fails this batch (counted, logged)."""
        try:
            written = await self._writer.rewrite_vectors(space, batch)
        except (DependencyUnavailable, FailedPrecondition, Overloaded, OSError):
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
        async with self._store.exclusive("build", space.id) as held:
            if not held:
                return None
            return await self._build_locked(space, max_passes)

    async def _build_locked(self, space: Space, max_passes: int) -> Space:
        space = await self._spaces.space(space.id)
        if space.state != "building":
            return space
        build = dict(space.build)
        build.setdefault("started_at", _now())
        first_total: int | None = None
        done = later = 0  # embedded in every pass; of them, found by the passes after the first

        def progress(report: HealReport, total: int) -> None:
            nonlocal first_total
            first_total = total if first_total is None else first_total
            extra = later + (report.reembedded if passes else 0)
            build.update(nodes_total=first_total + extra, nodes_done=done + report.reembedded)
            build["nodes_failed"] = report.failed

        passes = 0
        for passes in range(max_passes):
            report = await self.heal(space, mode="heal", progress=progress)
            done += report.reembedded
            later += report.reembedded if passes else 0
            build.update(nodes_done=done, passes=passes + 1)
            await self._spaces.registry.save_build(space.id, build)
            if report.reembedded == 0 and report.failed == 0:
                break
        build["finished_at"] = _now()
        await self._spaces.registry.save_build(space.id, build)
        if build.get("manual_activation"):
            space = await self._spaces.registry.mark_ready(space.id)
        else:
            _, space = await self._spaces.activate(space.id, allow_building=True)
            await self._catch_up(space, max_passes)
        log.info("space_built", space=space.id, state=space.state, nodes=done)
        return space

    async def _catch_up(self, space: Space, max_passes: int) -> None:
        """After a switch: what was written to the old space while the last pass ran, and
        until every writer's resolver saw the switch (its TTL), is stale in the new one.
        Once those TTLs have passed, heal passes over the new active space until one finds
        nothing to do, instead of leaving it to the next interval's pass."""
        await asyncio.sleep(2 * DEFAULT_ACTIVE_SPACE_TTL_S)
        for _ in range(max_passes):
            report = await self.heal(space, mode="heal")
            if report.reembedded == 0 and report.failed == 0:
                return

    async def resume_builds(self) -> list[Space]:
        """Build every BUILDING space this process can lock (one after the other)."""
        pending = [s for s in await self._spaces.registry.list_all() if s.state == "building"]
        built = []
        for space in sorted(pending, key=lambda s: s.id):
            result = await self.build_space(space)
            if result is not None:
                built.append(result)
        return built


class HealTrigger:
    """Asks the heal loop for a pass now instead of at its next interval."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._reasons: list[str] = []

    def request(self, reason: str) -> None:
        """Ask for a pass (reasons are collected until the loop takes them)."""
        if reason not in self._reasons:
            self._reasons.append(reason)
            log.info("heal_requested", reason=reason)
        self._event.set()

    async def wait(self, stop: asyncio.Event, timeout_s: float) -> list[str] | None:
        """The reasons asked for, [] after ``timeout_s`` without a request, None on stop."""
        if not self._event.is_set() and not stop.is_set():
            waiters = {
                asyncio.ensure_future(self._event.wait()),
                asyncio.ensure_future(stop.wait()),
            }
            try:
                await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
        if stop.is_set():
            return None
        reasons, self._reasons = self._reasons, []
        self._event.clear()
        return reasons


class CompletenessCheck:
    """Walks the active space's nodes one key-ordered window per call, looking for nodes
    without vectors that a heal pass would fill (cheap: one index probe per node).

    A window with such nodes is looked at again on the next call, so what a heal fixed is
    seen whole at once; a node a completed heal pass could not fill is not reported again
    until its content changes or it is seen whole (no heal pass after heal pass).
    """

    def __init__(self, maintenance: Maintenance, *, window: int = 1000) -> None:
        self._maintenance = maintenance
        self._window = window
        self._space_id: int | None = None
        self._after: Key = ("", "")
        self._suspects: dict[Key, str] = {}  # key -> content hash a completed pass left
        self._pending: dict[Key, str] = {}

    async def find(self, space: Space) -> int:
        """Check the next window; the number of nodes without vectors not yet reported."""
        if space.id != self._space_id:
            self._space_id, self._after = space.id, ("", "")
            self._suspects.clear()
        nodes, keys, last = await self._maintenance.missing_window(space, self._after, self._window)
        missing = {(n.tenant, n.id): n.content_hash for n in nodes}
        for key in keys - missing.keys():
            self._suspects.pop(key, None)
        self._pending = {k: h for k, h in missing.items() if self._suspects.get(k) != h}
        if not self._pending:
            self._after = last or ("", "")  # the next window, or from the start again
        elif len(self._pending) < len(missing):
            log.debug("heal_unfillable_nodes", nodes=len(missing) - len(self._pending))
        return len(self._pending)

    def healed(self) -> None:
        """A heal pass completed after :meth:`find`: what it reported is not reported again
        unless seen whole (then forgotten) or changed."""
        if len(self._suspects) > 100_000:
            self._suspects.clear()
        self._suspects.update(self._pending)
        self._pending = {}


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stop`` is set; True when stopped."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True
