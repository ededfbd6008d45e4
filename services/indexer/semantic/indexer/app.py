"""The indexer process: settings -> logging -> health server (NOT_SERVING) -> schema,
pool, embedder, NATS (streams and consumer), database guardian -> SERVING -> consume +
heal loop -> SIGTERM -> finish or return the batch in flight -> close.

While the database guardian (``semantic.store.postgres.guardian``) recovers a lost, emptied or
replaced database, health is NOT_SERVING and the consumers fetch nothing; once it is
back, a heal pass starts at once. So does one when the completeness check finds nodes
without vectors in the active space. Relation discovery (``semantic.core.discovery``) runs
in the same loop, one bounded step after each pass and on each completeness check, back to
back while nodes are due, a heal asked for always going first."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from nats.aio.client import Client as NatsClient
from prometheus_client import Counter, Gauge

from semantic.common import runtime
from semantic.common.embedder_client import EmbedderClient
from semantic.common.health import health_reporter
from semantic.common.log import configure_logging
from semantic.common.retry import retry_async
from semantic.common.server import ServerKit, run_service
from semantic.core.discovery import RelationDiscovery
from semantic.core.feedback import FeedbackService, Prior
from semantic.core.maintenance import (
    CompletenessCheck,
    HealTrigger,
    Maintenance,
    sleep_or_stop,
)
from semantic.core.recommend.archetypes import ArchetypeRefresh
from semantic.core.recommend.tracker import Tracker
from semantic.core.spaces import ActiveSpaces, Space
from semantic.core.writer import writer_from_settings
from semantic.indexer.consumer import ConsumerConfig, ContentConsumer, dependency_down
from semantic.indexer.feedback import FeedbackEventHandler
from semantic.indexer.processor import ChangeProcessor
from semantic.indexer.settings import IndexerSettings
from semantic.indexer.streams import Topology, ensure_topology
from semantic.indexer.unreadable import UnreadableSweeper
from semantic.indexer.users import UserEventHandler
from semantic.store.nats.connection import connect as connect_nats
from semantic.store.postgres.archetype_rows import ArchetypeStore
from semantic.store.postgres.db import create_pool, default_session_settings, outage_of
from semantic.store.postgres.discovery import PostgresDiscovery
from semantic.store.postgres.feedback import PostgresFeedback
from semantic.store.postgres.guardian import DatabaseGuardian
from semantic.store.postgres.maintenance import PostgresMaintenance
from semantic.store.postgres.nodes import PostgresNodes
from semantic.store.postgres.schema import bootstrap_schema
from semantic.store.postgres.spaces import PostgresSpaces
from semantic.store.postgres.tracking_rows import TrackStore
from semantic.wire import convert

log = structlog.get_logger(__name__)

HEALED = Counter("semantic_indexer_healed_total", "Nodes re-embedded by heal", ["kind"])
HEAL_PASSES = Counter(
    "semantic_indexer_heal_passes_total",
    "Heal passes run by the heal loop, by what started them",
    ["trigger"],
)
DISCOVERED = Counter(
    "semantic_indexer_discovered_relations_total",
    "Discovered `similar` relations written or removed by relation discovery",
    ["change"],
)
DISCOVERY_NODES = Counter(
    "semantic_indexer_discovery_nodes_total", "Nodes examined by relation discovery"
)
DISCOVERY_PENDING = Gauge(
    "semantic_indexer_discovery_pending",
    "Nodes of the active space due for relation discovery (as of the last step)",
)


async def serve(settings: IndexerSettings, stop: asyncio.Event | None = None) -> None:
    """Run the indexer until SIGTERM/SIGINT (or ``stop``)."""
    if not settings.nats_url:
        raise ValueError("NATS_URL is not set")
    halt = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    closers: list[object] = []
    kit = ServerKit.from_settings(settings, name="indexer", service_names=[])

    async def start() -> None:
        await bootstrap_schema(settings.dsn(), timeout_s=settings.startup_timeout_seconds)
        pool = await create_pool(
            settings.dsn(),
            min_size=1,
            max_size=settings.indexer_pool_max,
            session_settings=default_session_settings(),
        )
        closers.append(pool)
        embedder = EmbedderClient(settings.embedder_address)
        closers.append(embedder)
        model = await embedder.default_model(wait_s=settings.startup_timeout_seconds)
        registry = PostgresSpaces(pool, index_precision=settings.vector_index_precision)
        space = await registry.ensure(
            model_id=model.model_id, model_sha256=model.sha256, dim=model.dim
        )
        active = ActiveSpaces(registry, ttl_s=settings.search_active_space_ttl_s)
        nc = await connect_nats(
            settings.nats_url or "", settings.startup_timeout_seconds, "semantic-indexer"
        )
        closers.append(_NatsCloser(nc))
        js = nc.jetstream()

        async def topology_ready() -> Topology:
            return await ensure_topology(js, settings)

        topology = await retry_async(
            topology_ready, what="jetstream", timeout_s=settings.startup_timeout_seconds
        )
        nodes = PostgresNodes(pool, text_config=settings.search_text_config)
        writer = writer_from_settings(settings, nodes, embedder, model.max_tokens)
        processor = ChangeProcessor(active, writer)
        config = ConsumerConfig(
            batch_size=settings.indexer_batch_size,
            ack_wait_s=settings.indexer_ack_wait_s,
            max_deliver=settings.indexer_max_deliver,
            retry_initial_s=settings.indexer_retry_initial_s,
            retry_max_s=settings.indexer_retry_max_s,
            max_event_bytes=settings.indexer_max_event_bytes,
            heavy_event_bytes=settings.indexer_heavy_event_bytes,
            limits=convert.Limits(max_text_chars=settings.indexer_max_text_chars),
        )
        guardian = DatabaseGuardian.from_settings(
            pool,
            settings,
            model,
            health_reporter(kit),
            "indexer",
            index_precision=settings.vector_index_precision,
        )
        trigger = HealTrigger()
        guardian.on_recovered(active.invalidate)
        guardian.on_recovered(lambda: trigger.request("database_recovered"))
        guardian.start(space)
        closers.append(guardian)  # closed before the pool
        # Several loops: one embeds while another writes, so the embedder never idles.
        consumers = [
            ContentConsumer(js, topology, processor, config, gate=guardian, repair=topology_ready)
            for _ in range(settings.indexer_concurrency)
        ]
        maintenance = Maintenance(
            PostgresMaintenance(pool),
            active,
            writer,
            batch_size=settings.indexer_heal_batch_size,
        )
        for index, consumer in enumerate(consumers):
            tasks.append(asyncio.create_task(consumer.run(halt), name=f"consumer-{index}"))
        users = UserEventHandler(
            active,
            Tracker(TrackStore(pool), settings.track_config()),
            max_bytes=settings.indexer_max_event_bytes,
        )
        user_consumer = ContentConsumer(
            js,
            topology,
            users,
            config,
            consumer=topology.user_consumer,
            gate=guardian,
            repair=topology_ready,
        )
        tasks.append(asyncio.create_task(user_consumer.run(halt), name="user-consumer"))
        feedback = FeedbackEventHandler(
            FeedbackService(
                PostgresFeedback(pool),
                Prior(settings.feedback_prior_success, settings.feedback_prior_failure),
            ),
            max_bytes=settings.indexer_max_event_bytes,
        )
        feedback_consumer = ContentConsumer(
            js,
            topology,
            feedback,
            config,
            consumer=topology.feedback_consumer,
            gate=guardian,
            repair=topology_ready,
        )
        tasks.append(asyncio.create_task(feedback_consumer.run(halt), name="feedback-consumer"))
        for name in (topology.consumer, topology.user_consumer, topology.feedback_consumer):
            sweeper = UnreadableSweeper(
                js,
                topology.stream,
                topology.dlq_stream,
                name,
                interval_s=min(5.0, settings.indexer_ack_wait_s),
            )
            tasks.append(asyncio.create_task(sweeper.run(halt), name=f"unreadable-{name}"))
        tasks.append(
            asyncio.create_task(
                _lag_loop([consumers[0], user_consumer, feedback_consumer], halt), name="lag"
            )
        )
        archetypes = ArchetypeRefresh(ArchetypeStore(pool), settings.track_config())
        discovery = (
            RelationDiscovery(PostgresDiscovery(pool), settings.discovery_config())
            if settings.relations_discover
            else None
        )
        if settings.indexer_heal_interval_s > 0:
            tasks.append(
                asyncio.create_task(
                    _heal_loop(
                        maintenance, trigger, archetypes, settings, halt, discovery=discovery
                    ),
                    name="heal",
                )
            )
        log.info("indexer_ready", stream=topology.stream, consumer=topology.consumer)

    async def close() -> None:
        halt.set()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=settings.shutdown_grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for resource in reversed(closers):
            with contextlib.suppress(Exception):
                await resource.close()  # type: ignore[attr-defined]

    await run_service(kit, [], start_dependencies=start, close_dependencies=close, stop=stop)


class _NatsCloser:
    def __init__(self, nc: NatsClient) -> None:
        self._nc = nc

    async def close(self) -> None:
        await self._nc.drain()


async def _lag_loop(consumers: list[ContentConsumer], stop: asyncio.Event) -> None:
    while not stop.is_set():
        for consumer in consumers:
            with contextlib.suppress(Exception):
                await consumer.report_lag()
        if await sleep_or_stop(stop, 5.0):
            return


async def _heal_loop(
    maintenance: Maintenance,
    trigger: HealTrigger,
    archetypes: ArchetypeRefresh,
    settings: IndexerSettings,
    stop: asyncio.Event,
    *,
    discovery: RelationDiscovery | None = None,
) -> None:
    """Resume space builds, heal the active space, derive archetypes: every interval, and
    at once when asked (a recovered database), when the active space changed (a rollback,
    a switch) or when the completeness check, run every ``indexer_completeness_check_s``
    in between, finds nodes without vectors. A discovery
    step follows each pass and each check, and the next one comes at once while nodes are
    due; a heal asked for meanwhile runs first."""
    interval_s = settings.indexer_heal_interval_s
    check_s = settings.indexer_completeness_check_s
    completeness = CompletenessCheck(maintenance)
    loop = asyncio.get_running_loop()
    next_pass = loop.time() + min(interval_s, 5.0)  # soon after start: a replaced database
    next_check = loop.time() + check_s
    more = False  # discovery has nodes due: step again at once
    seen_space: int | None = None  # the active space at the last check
    while True:
        now = loop.time()
        wake = min(next_pass, next_check) if check_s > 0 else next_pass
        reasons = await trigger.wait(stop, 0.0 if more else max(0.0, wake - now))
        if reasons is None:
            return
        try:
            now = loop.time()
            if not reasons and now >= next_pass:
                reasons = ["interval"]
            checking = check_s > 0 and now >= next_check
            if checking:
                next_check = now + check_s
            space = await maintenance.spaces.space()
            switched = seen_space is not None and space.id != seen_space
            seen_space = space.id
            if not reasons and switched:
                # A rollback or a switch made elsewhere: what was written while the space
                # was not active is stale in it (not missing, which the check would see).
                reasons = ["space_switched"]
            if not reasons and checking and await completeness.find(space):
                reasons = ["incomplete"]
            if reasons:
                next_pass = loop.time() + interval_s
                await _heal_pass(maintenance, completeness, archetypes, settings, reasons)
            elif not (checking or more):
                continue
        except Exception as exc:
            more = False
            _failed("heal_failed", exc)
            next_pass = min(next_pass, loop.time() + min(interval_s, 10.0))
            if await sleep_or_stop(stop, min(check_s or 1.0, 1.0)):
                return
            continue
        if discovery is None:
            continue
        try:
            more = await _discover(discovery, await maintenance.spaces.space())
        except Exception as exc:
            more = False
            _failed("discovery_failed", exc)
            if await sleep_or_stop(stop, min(check_s or 1.0, 1.0)):
                return


def _failed(event: str, exc: Exception) -> None:
    if outage_of(exc) == "recovering":  # the guardian logs the outage itself
        level = log.debug
    else:
        level = log.warning if dependency_down(exc) else log.error
    level(event, error=f"{type(exc).__name__}: {exc}")


async def _discover(discovery: RelationDiscovery, space: Space) -> bool:
    """One discovery step over ``space``; True when another should follow at once."""
    report = await discovery.step(space)
    if report is None:  # another replica runs discovery over this space right now
        return False
    DISCOVERY_NODES.inc(report.examined)
    for change in ("added", "updated", "removed"):
        DISCOVERED.labels(change).inc(getattr(report, change))
    if report.pending is not None:
        DISCOVERY_PENDING.set(report.pending)
    return report.more


async def _heal_pass(
    maintenance: Maintenance,
    completeness: CompletenessCheck,
    archetypes: ArchetypeRefresh,
    settings: IndexerSettings,
    reasons: list[str],
) -> None:
    log.info("heal_pass_started", reasons=reasons)
    await maintenance.resume_builds()
    space = await maintenance.spaces.space()
    report = await maintenance.heal_exclusive(space)
    if report is None:  # another replica heals this space right now
        return
    HEAL_PASSES.labels(reasons[0]).inc()
    completeness.healed()
    HEALED.labels("missing").inc(min(report.missing, report.reembedded))
    HEALED.labels("stale").inc(max(0, report.reembedded - report.missing))
    if settings.recommend_archetypes and "interval" in reasons:
        await archetypes.derive(
            space,
            k=settings.recommend_archetypes,
            min_events=settings.recommend_archetype_min_events,
        )


def main() -> None:
    """Entry point of ``python -m semantic.indexer``."""
    settings = IndexerSettings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", service="indexer", settings=settings.redacted())
    runtime.run(serve(settings), settings.event_loop)
