"""The search process: settings -> logging -> server (NOT_SERVING) -> schema, pool,
embedder, active space -> database guardian -> SERVING -> SIGTERM -> drain -> close.

NATS is optional: with NATS_URL set, a connection is made in the background (retrying
until NATS answers, reconnecting afterwards) for the Admin service's pipeline RPCs and
health report; NATS down or unset never holds start-up or serving up.

The database guardian (``semantic.store.postgres.guardian``) reports NOT_SERVING while the
database is lost, emptied or replaced, re-creates the schema and the space as start-up does,
and reports SERVING again. With the local vector index on (SEMANTIC_SEARCH_LOCAL_INDEX) and
ready, the service stays SERVING through the outage: dense reads answer from the index
(degraded), writes get UNAVAILABLE."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import structlog

from semantic.common import runtime
from semantic.common.auth import AuthInterceptor
from semantic.common.embedder_client import EmbedderClient
from semantic.common.health import health_reporter
from semantic.common.log import configure_logging
from semantic.common.server import ServerKit, run_service
from semantic.core.consistency import ConsistencyChecker
from semantic.core.degraded import ChangeFeed
from semantic.core.domain import HybridParams
from semantic.core.explore import Explorer
from semantic.core.feedback import FeedbackService, Prior
from semantic.core.local_sync import LocalIndexFollower
from semantic.core.maintenance import Maintenance
from semantic.core.modifiers import Rescoring
from semantic.core.recommend.recommender import Recommender
from semantic.core.recommend.tracker import Tracker
from semantic.core.relations import RelationService
from semantic.core.rule_service import RuleService
from semantic.core.service import SearchService
from semantic.core.spaces import ActiveSpaces
from semantic.core.writer import writer_from_settings
from semantic.search.admin import AdminServicer
from semantic.search.backup import backups_factory, schedule
from semantic.search.http.app import HttpServer, create_app
from semantic.search.http.console.routes import console_router, static_files
from semantic.search.http.gateway import Gateway
from semantic.search.http.security import HttpAuth
from semantic.search.pipeline import PipelineAdmin
from semantic.search.recommend.service import Recommendations
from semantic.search.servicer import SearchServicer
from semantic.search.settings import SearchSettings
from semantic.store.local.index import UsearchIndex
from semantic.store.nats.connection import BackgroundConnection
from semantic.store.nats.pipeline import JetStreamPipeline, StreamNames
from semantic.store.postgres.changes import PostgresChanges
from semantic.store.postgres.consistency import PostgresConsistency
from semantic.store.postgres.db import create_pool, session_settings
from semantic.store.postgres.explore import PostgresExplore
from semantic.store.postgres.feedback import PostgresFeedback
from semantic.store.postgres.guardian import DatabaseGuardian, Report
from semantic.store.postgres.maintenance import PostgresMaintenance
from semantic.store.postgres.nodes import PostgresNodes
from semantic.store.postgres.recommend_reads import RecommendReads
from semantic.store.postgres.relations import PostgresRelations
from semantic.store.postgres.retrieval import PostgresRetrieval, RetrievalConfig
from semantic.store.postgres.rules import PostgresRules
from semantic.store.postgres.schema import bootstrap_schema
from semantic.store.postgres.snapshot import PostgresScheduleLock
from semantic.store.postgres.spaces import PostgresSpaces
from semantic.store.postgres.statistics import PostgresStatistics
from semantic.store.postgres.tracking_rows import TrackStore
from semantic.v1 import search_pb2, search_pb2_grpc
from semantic.wire import feedback as wire_feedback
from semantic.wire.convert import Limits
from semantic.wire.rules import CheckLimits

log = structlog.get_logger(__name__)
SERVICES = [search_pb2.DESCRIPTOR.services_by_name[n].full_name for n in ("Search", "Admin")]


async def serve(settings: SearchSettings, stop: asyncio.Event | None = None) -> None:
    """Run the search service until SIGTERM/SIGINT (or ``stop``)."""
    limits = Limits(
        max_nodes=settings.search_max_nodes_per_upsert,
        max_top_k=settings.search_max_top_k,
        max_offset=settings.search_max_offset,
        max_get=settings.search_max_get,
        max_title_chars=settings.search_max_title_chars,
        max_text_chars=settings.search_max_text_chars,
        max_query_chars=settings.search_max_query_chars,
        max_tags=settings.search_max_tags,
        max_metadata_bytes=settings.search_max_metadata_bytes,
        max_relations=settings.search_max_relations,
        max_rules=settings.search_max_rules,
    )
    modifier_defaults = wire_feedback.modifier_defaults(settings.search_score_modifiers)
    search = SearchServicer(
        limits,
        hybrid_defaults(settings),
        max_related=settings.search_max_related,
        check_limits=CheckLimits(
            max_text_bytes=settings.search_max_check_bytes,
            max_violations=settings.search_max_check_violations,
            budget_ms=settings.search_check_budget_ms,
            max_tags=settings.search_max_tags,
            max_metadata_bytes=settings.search_max_metadata_bytes,
        ),
    )
    nats_connection = BackgroundConnection(settings.nats_url, "semantic-search")
    pipeline = JetStreamPipeline(
        nats_connection,
        StreamNames.from_settings(settings),
        timeout_s=settings.search_nats_timeout_s,
    )
    admin = AdminServicer(PipelineAdmin(nats_connection, pipeline))
    closers: list[object] = [nats_connection]
    auth = AuthInterceptor(settings)
    kit = ServerKit.from_settings(
        settings, name="search", service_names=SERVICES, extra_interceptors=[auth]
    )
    companions = [http_server(settings, search, admin, auth, kit)] if settings.http_enabled else []

    async def start() -> None:
        nats_connection.start()
        await bootstrap_schema(settings.dsn(), timeout_s=settings.startup_timeout_seconds)
        pool = await create_pool(
            settings.dsn(),
            min_size=settings.search_pool_min,
            max_size=settings.search_pool_max,
            session_settings=session_settings(settings.search_ef_search),
        )
        closers.append(pool)
        embedder = EmbedderClient(
            settings.embedder_address, query_timeout_s=settings.search_query_embed_timeout_s
        )
        closers.append(embedder)
        model = await embedder.default_model(wait_s=settings.startup_timeout_seconds)
        registry = PostgresSpaces(pool, index_precision=settings.vector_index_precision)
        space = await registry.ensure(
            model_id=model.model_id, model_sha256=model.sha256, dim=model.dim
        )
        active = ActiveSpaces(registry, ttl_s=settings.search_active_space_ttl_s)
        nodes = PostgresNodes(pool, text_config=settings.search_text_config)
        writer = writer_from_settings(settings, nodes, embedder, model.max_tokens)
        local = local_index(settings, PostgresChanges(pool))
        if local is not None:
            local.start()
            closers.append(local)  # closed before the pool
        rescoring = Rescoring(
            defaults=modifier_defaults,
            candidates=settings.search_modifier_candidates,
            feedback=FeedbackService(
                PostgresFeedback(pool),
                Prior(settings.feedback_prior_success, settings.feedback_prior_failure),
            ),
        )
        service = SearchService(
            active,
            writer,
            embedder,
            PostgresRetrieval(pool, RetrievalConfig.from_settings(settings, settings)),
            PostgresStatistics(pool),
            fallback=local,
            rescoring=rescoring,
            local_first=settings.search_local_first,
            local_first_max_busy=settings.search_local_first_max_busy,
        )
        reads = RecommendReads(
            pool,
            ef_search=settings.search_ef_search,
            exact_threshold=settings.search_exact_threshold,
        )
        tracker = Tracker(TrackStore(pool), settings.track_config())
        recommendations = Recommendations(
            active,
            limits,
            tracker,
            Recommender(reads, settings.recommend_config(), tracker.config, rescoring=rescoring),
            max_track_events=settings.recommend_max_track_events,
        )
        rules = RuleService(
            PostgresRules(pool),
            max_rules=settings.search_max_rules,
            concurrency=settings.search_check_concurrency,
        )
        closers.append(rules)  # closed before the pool
        search.attach(
            service, recommendations, RelationService(PostgresRelations(pool), nodes), rules
        )
        maintenance = Maintenance(
            PostgresMaintenance(pool), active, writer, batch_size=settings.indexer_heal_batch_size
        )
        backups = backups_factory(settings, settings.dsn(), PostgresScheduleLock(pool))
        admin.attach(
            embedder,
            maintenance,
            recommendations,
            consistency=ConsistencyChecker(PostgresConsistency(pool), active),
            explorer=Explorer(PostgresExplore(pool), active),
            local_index=local,
            backups=backups,
        )
        scheduler = schedule(settings, backups)
        if scheduler is not None:
            closers.append(scheduler)  # closed before the pool
        guardian = DatabaseGuardian.from_settings(
            pool,
            settings,
            model,
            serving_report(kit, local),
            "search",
            index_precision=settings.vector_index_precision,
        )
        guardian.on_recovered(active.invalidate)
        guardian.start(space)
        closers.append(guardian)  # closed before the pool
        log.info("search_ready", space=space.id, model=space.model_id, state=space.state)

    async def close() -> None:
        await admin.close()
        for resource in reversed(closers):
            await resource.close()  # type: ignore[attr-defined]

    def register(server: grpc.aio.Server) -> None:
        search_pb2_grpc.add_SearchServicer_to_server(search, server)
        search_pb2_grpc.add_AdminServicer_to_server(admin, server)

    await run_service(
        kit,
        [register],
        start_dependencies=start,
        close_dependencies=close,
        stop=stop,
        companions=companions,
    )


def hybrid_defaults(settings: SearchSettings) -> HybridParams:
    """What a hybrid search gets for the tuning its request leaves unset."""
    return HybridParams(
        rrf_k=settings.search_rrf_k,
        candidates=settings.search_hybrid_candidates,
        fusion=settings.search_fusion,
        expansion_docs=settings.search_expansion_docs,
        expansion_weight=settings.search_expansion_weight,
    )


def local_index(settings: SearchSettings, feed: ChangeFeed) -> LocalIndexFollower | None:
    """The follower of the degraded-mode index (None when SEMANTIC_SEARCH_LOCAL_INDEX=false)."""
    if not settings.search_local_index:
        return None
    return LocalIndexFollower(
        feed,
        UsearchIndex(
            settings.local_index_dir(), expansion_search=settings.search_local_index_ef_search
        ),
        sync_s=settings.search_local_index_sync_s,
        save_s=settings.search_local_index_save_s,
    )


def serving_report(kit: ServerKit, local: LocalIndexFollower | None) -> Report:
    """The guardian's health report: NOT_SERVING while the database is away, unless the
    local index can answer reads then (degraded mode: SERVING, writes UNAVAILABLE)."""
    report = health_reporter(kit)

    async def publish(available: bool) -> None:
        await report(available or (local is not None and local.ready))

    return publish


def http_server(
    settings: SearchSettings,
    search: SearchServicer,
    admin: AdminServicer,
    auth: AuthInterceptor,
    kit: ServerKit,
) -> HttpServer:
    """The HTTP API on the same servicers and auth as gRPC; ready when gRPC serves."""
    http_auth = HttpAuth(
        auth, trusted_origins=settings.cors_origins(), allowed_hosts=settings.allowed_hosts()
    )
    gateway = Gateway(search, admin, http_auth, max_body_bytes=settings.http_max_body_bytes)

    async def ready() -> bool:
        return kit.serving

    console, pages = console_router(gateway)
    app = create_app(
        gateway,
        ready,
        cors_origins=settings.cors_origins(),
        routers=[console],
        mounts=[static_files()],
    )
    return HttpServer(
        app,
        host=settings.http_host,
        port=settings.http_port,
        grace_seconds=settings.shutdown_grace_seconds,
        forwarded_allow_ips=settings.http_forwarded_allow_ips,
        on_stop=[pages.jobs.close],
        max_head_bytes=settings.http_max_head_bytes,
    )


def main() -> None:
    """Entry point of ``python -m semantic.search``."""
    settings = SearchSettings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", service="search", settings=settings.redacted())
    runtime.run(serve(settings), settings.event_loop)


def openapi_document() -> dict[str, Any]:
    """The HTTP API's OpenAPI document, from an app wired as serve() wires it (nothing is
    started or connected: the routes and the protos are all it takes)."""
    settings = SearchSettings()
    search = SearchServicer(
        Limits(),
        hybrid_defaults(settings),
    )
    connection = BackgroundConnection(None, "describe")
    pipeline = JetStreamPipeline(connection, StreamNames.from_settings(settings), timeout_s=1.0)
    admin = AdminServicer(PipelineAdmin(connection, pipeline))
    gateway = Gateway(search, admin, HttpAuth(None), max_body_bytes=settings.http_max_body_bytes)

    async def never() -> bool:
        return False

    return create_app(gateway, never).openapi()
