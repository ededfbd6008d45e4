"""The follower of the local vector index: built from PostgreSQL, kept current by its change log.

    start        load the saved index (if any: it serves degraded reads at once, even when
                 PostgreSQL is away at start)
    every sync_s read the active space; another space than the index's (another id, or the
                 same id created anew: an emptied or replaced database), no index, or one
                 older than the change log's retention -> rebuild from one snapshot, the
                 degraded mode unavailable ("rebuilding") until it is done;
                 same space -> apply the nodes changed since the cursor, unless the
                 change log cannot say what changed (a TRUNCATE, a restored database):
                 rebuild then too
    every save_s save the index when it changed (and at close)

A failed sync (PostgreSQL away) is retried at the next tick; the index keeps serving what it
has. Metrics: ``semantic_local_index_lag_seconds`` (seconds since the last successful sync),
``semantic_local_index_changes_behind`` (change-log rows the last sync found pending: the
changes written since the sync before), ``semantic_local_index_nodes``,
``semantic_local_index_ready``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import structlog
from prometheus_client import Counter, Gauge

from semantic.common.errors import DependencyUnavailable
from semantic.core.degraded import ChangeFeed, LocalCandidates, LocalIndex, NodeChange
from semantic.core.domain import Filter
from semantic.core.spaces import Space

log = structlog.get_logger(__name__)

RETENTION_S = 24 * 3600.0
"""Change-log rows older than this are pruned; an index last synced before is rebuilt."""
PRUNE_EVERY_S = 600.0
SNAPSHOT_BATCH = 1000
CHANGES_BATCH = 500
"""Changed nodes applied per step of a sync (the loop serves other work between steps)."""

_LAST_SYNC: list[float] = [0.0]
LAG = Gauge(
    "semantic_local_index_lag_seconds",
    "Seconds since the local vector index last synced with PostgreSQL (-1: never)",
)
LAG.set_function(lambda: time.time() - _LAST_SYNC[0] if _LAST_SYNC[0] else -1.0)
BEHIND = Gauge(
    "semantic_local_index_changes_behind",
    "Change-log rows the local index's last sync found pending (written since the sync before)",
)
NODES = Gauge("semantic_local_index_nodes", "Nodes in the local vector index")
READY = Gauge("semantic_local_index_ready", "1 while the local index can serve degraded reads")
REBUILDS = Counter("semantic_local_index_rebuilds_total", "Full rebuilds of the local index")
DEGRADED_READS = Counter(
    "semantic_degraded_reads_total", "Reads answered from the local index", ["method"]
)


def same_space(indexed: Space, active: Space) -> bool:
    """Whether the index's space is the active one: same id, model and creation time (a
    database emptied or replaced re-creates its space under the same id, later)."""
    return (indexed.id, indexed.model_sha256, indexed.created_at) == (
        active.id,
        active.model_sha256,
        active.created_at,
    )


class LocalIndexFollower:
    """Keeps one :class:`LocalIndex` current (module doc); the SearchService's DegradedReads."""

    def __init__(
        self,
        feed: ChangeFeed,
        index: LocalIndex,
        *,
        sync_s: float,
        save_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._feed = feed
        self._index = index
        self._sync_s = sync_s
        self._save_s = save_s
        self._clock = clock
        self._ready = False
        self._state = "not built yet"
        self._dirty = False
        self._saved_at = 0.0
        self._pruned_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._origin: int | None = None
        """The change log's identity when the index was last made current (None: not since
        this process started): what a local-first search checks the log against."""

    # --- state ----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the index can serve degraded reads."""
        return self._ready

    @property
    def index(self) -> LocalIndex:
        """The index followed."""
        return self._index

    def describe(self) -> str:
        """One line for the health report: state, space, nodes, lag, and whether the
        changes are saved to disk yet (a large save takes CPU for a few seconds)."""
        space = self._index.space
        synced = self._index.synced_at
        lag = f"{self._clock() - synced:.1f} s ago" if synced else "never"
        where = f"space {space.id}" if space is not None else "no space"
        saved = "changes not saved yet" if self._dirty else "saved"
        return f"{self._state}; {where}; {self._index.nodes} nodes; synced {lag}; {saved}"

    def reader(self, cause: BaseException) -> LocalIndex:
        """The index when ready; DependencyUnavailable saying why not otherwise."""
        if not self._ready:
            raise DependencyUnavailable(
                "postgresql",
                f"{cause}; degraded reads are unavailable: the local index is {self._state}",
            )
        return self._index

    def candidates(
        self,
        space: Space,
        tenant: str,
        vector: np.ndarray[Any, Any],
        *,
        name: str,
        flt: Filter,
        limit: int,
    ) -> LocalCandidates | None:
        """A local-first search's candidates (``DegradedReads.candidates``): None unless the
        index is ready, of ``space``, and made current by a sync of this process."""
        index = self._index
        indexed = index.space
        origin = self._origin
        if not self._ready or origin is None or indexed is None or not same_space(indexed, space):
            return None
        found = index.candidates(tenant, vector, name, flt, limit)
        if found is None:
            return None
        near, complete = found
        return LocalCandidates(tuple(near), complete, index.cursor, origin)

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Load the saved index and start following PostgreSQL."""
        if self._index.load():
            self._set_ready(True, "loaded from disk")
            _LAST_SYNC[0] = self._index.synced_at
            log.info("local_index_loaded", nodes=self._index.nodes)
        self._task = asyncio.create_task(self._loop(), name="local-index-sync")

    async def close(self) -> None:
        """Stop following and save."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._dirty and self._ready:
            await self._save()

    async def wait_synced(self) -> None:
        """Return after the next successful sync."""
        self._synced.clear()
        await self._synced.wait()

    # --- syncing --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync()
            except DependencyUnavailable as exc:
                log.debug("local_index_sync_skipped", reason=str(exc))
            except Exception as exc:  # never fatal: the next tick tries again
                log.warning("local_index_sync_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self._sync_s)

    async def sync(self) -> None:
        """One sync: rebuild for a new space (or a stale index), else apply the changes."""
        space = await self._feed.active_space()
        current = self._index.space
        now = self._clock()
        stale = current is not None and now - self._index.synced_at > RETENTION_S
        if current is None or not same_space(current, space) or stale:
            self._origin = None
            await self._rebuild(space)
        else:

            async def apply(changes: Sequence[NodeChange]) -> None:
                # On the loop (the index may be serving reads), a page at a time: a burst
                # of writes never holds the loop for long.
                self._index.apply(changes)

            batch = await self._feed.changes(space, self._index.cursor, apply, batch=CHANGES_BATCH)
            if batch.reset:
                self._origin = None
                log.warning("local_index_reset", space=space.id, reason=batch.reset)
                await self._rebuild(space)
                return await self._after_sync(now)
            self._index.mark_synced(batch.cursor, self._clock())
            self._origin = self._feed.origin
            BEHIND.set(batch.log_rows)
            self._dirty = self._dirty or batch.changed > 0
            self._set_ready(True, "current")
        await self._after_sync(now)

    async def _after_sync(self, now: float) -> None:
        _LAST_SYNC[0] = self._index.synced_at
        NODES.set(self._index.nodes)
        self._synced.set()
        if now - self._pruned_at > PRUNE_EVERY_S:
            self._pruned_at = now
            pruned = await self._feed.prune(RETENTION_S)
            if pruned:
                log.info("change_log_pruned", rows=pruned)
        if self._dirty and now - self._saved_at >= self._save_s:
            await self._save()

    async def _rebuild(self, space: Space) -> None:
        previous = self._index.space
        self._set_ready(False, f"rebuilding for space {space.id}")
        log.info(
            "local_index_rebuild",
            space=space.id,
            previous=previous.id if previous is not None else None,
        )
        started = self._clock()
        self._index.reset(space)

        async def apply(changes: Sequence[NodeChange]) -> None:
            # In a worker thread: the index is not ready (nothing reads it meanwhile), and
            # building a large one must not hold up the service's event loop.
            await asyncio.to_thread(self._index.apply, changes)

        cursor = await self._feed.snapshot(space, apply, batch=SNAPSHOT_BATCH)
        self._index.mark_synced(cursor, self._clock())
        self._origin = self._feed.origin
        REBUILDS.inc()
        BEHIND.set(0)
        self._dirty = True
        await self._save()
        self._set_ready(True, "current")
        log.info(
            "local_index_built",
            space=space.id,
            nodes=self._index.nodes,
            duration_s=round(self._clock() - started, 3),
        )

    async def _save(self) -> None:
        """Save the index in a worker thread (reads may go on; only this task changes it)."""
        try:
            await asyncio.to_thread(self._index.save)
        except OSError as exc:  # a full or read-only disk: keep serving from memory
            log.warning("local_index_save_failed", error=str(exc))
            return
        self._dirty = False
        self._saved_at = self._clock()

    def _set_ready(self, ready: bool, state: str) -> None:
        self._ready = ready
        self._state = state
        READY.set(1 if ready else 0)
