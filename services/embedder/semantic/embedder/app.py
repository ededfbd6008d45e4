"""The embedder process: settings -> logging -> server (NOT_SERVING) -> load models and
answer a warm-up batch -> SERVING -> SIGTERM -> drain -> close.

Auth: Embed, EmbedStream and Info need no token (the embedder holds no data; the network
lets in its callers). LoadModel needs an admin token without a tenant claim, checked by
the shared AuthInterceptor with the SEMANTIC_AUTH_* settings; with SEMANTIC_AUTH_MODE=jwt
and no key to check tokens with, LoadModel is refused and the rest is served.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import structlog

from semantic.common import runtime
from semantic.common.auth import EMBEDDER_METHOD_ROLES, EMBEDDER_OPEN_METHODS, AuthInterceptor
from semantic.common.log import configure_logging
from semantic.common.server import ServerKit, run_service
from semantic.embedder.batcher import BatchPolicy
from semantic.embedder.engine import EmbeddingEngine, EmbeddingModel, EmbedLimits
from semantic.embedder.loading import ModelLoading
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel
from semantic.embedder.precision import cpu_flags, int8_is_fast
from semantic.embedder.servicer import EmbedderServicer
from semantic.embedder.settings import EmbedderSettings
from semantic.v1 import embedder_pb2, embedder_pb2_grpc

log = structlog.get_logger(__name__)
SERVICE_NAME = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name


def load_models(settings: EmbedderSettings) -> list[EmbeddingModel]:
    """Load every configured model directory (blocking; run it in a thread)."""
    flags = cpu_flags()
    dirs = settings.served_model_dirs(flags)
    log.info(
        "model_dirs",
        dirs=[str(path) for path in dirs],
        precision=settings.embedder_precision,
        int8_fast_cpu=int8_is_fast(flags),
    )
    return [load_model(settings, path) for path in dirs]


def load_model(settings: EmbedderSettings, path: Path) -> EmbeddingModel:
    """One model directory with the configured solo and shared threads (blocking)."""
    return OnnxEmbeddingModel.load(
        path,
        intra_op_threads=settings.embedder_intra_op_threads,
        shared_threads=settings.shared_threads,
    )


def build_engine(
    settings: EmbedderSettings, models: list[EmbeddingModel], executor: ThreadPoolExecutor
) -> EmbeddingEngine:
    """The engine as the settings describe it."""
    return EmbeddingEngine(
        models,
        executor=executor,
        policy=BatchPolicy(
            token_budget=settings.embedder_token_budget,
            max_batch_texts=settings.embedder_max_batch_texts,
            max_wait_s=settings.embedder_max_wait_ms / 1000,
            max_pending=settings.embedder_max_pending,
            workers=settings.embedder_workers,
        ),
        limits=EmbedLimits(
            max_texts=settings.embedder_max_texts_per_request,
            max_chars=settings.embedder_max_chars_per_text,
        ),
        default_model=settings.embedder_default_model,
        max_models=settings.embedder_max_models,
    )


def access(settings: EmbedderSettings) -> tuple[list[grpc.aio.ServerInterceptor], str | None]:
    """The auth interceptors to install, and why LoadModel is refused (None: it is not).

    Raises BootstrapError when key material is configured but unusable.
    """
    refusal = None
    if not settings.embedder_allow_load:
        refusal = (
            "loading models at run time is switched off on this embedder "
            "(SEMANTIC_EMBEDDER_ALLOW_LOAD=false)"
        )
    has_key = bool(
        settings.auth_jwt_secret
        or settings.auth_jwt_public_key
        or settings.auth_jwt_public_key_file
    )
    if settings.auth_mode == "jwt" and not has_key:
        if refusal is None:
            refusal = (
                "LoadModel needs an admin token and this embedder has no key to check one "
                "with: set SEMANTIC_AUTH_JWT_SECRET or SEMANTIC_AUTH_JWT_PUBLIC_KEY(_FILE) "
                "as on the search service (or SEMANTIC_AUTH_MODE=disabled for development "
                "only)"
            )
            log.warning("load_model_refused", reason=refusal)
        return [], refusal
    interceptor = AuthInterceptor(
        settings, method_roles=EMBEDDER_METHOD_ROLES, open_methods=EMBEDDER_OPEN_METHODS
    )
    return [interceptor], refusal


async def serve(settings: EmbedderSettings, stop: asyncio.Event | None = None) -> None:
    """Run the embedder until SIGTERM/SIGINT (or ``stop``)."""
    executor = ThreadPoolExecutor(
        max_workers=settings.embedder_workers, thread_name_prefix="inference"
    )

    def loader(path: Path) -> EmbeddingModel:
        return load_model(settings, path)

    interceptors, refusal = access(settings)
    loading = ModelLoading(loader, settings.model_roots, refusal=refusal)
    # UNAVAILABLE until the models answered a warm-up
    servicer = EmbedderServicer(loading=loading)
    engines: list[EmbeddingEngine] = []
    kit = ServerKit.from_settings(
        settings, name="embedder", service_names=[SERVICE_NAME], extra_interceptors=interceptors
    )

    async def start() -> None:
        models = await asyncio.to_thread(load_models, settings)
        engine = build_engine(settings, models, executor)
        engine.start()
        engines.append(engine)
        await engine.warm_up()
        servicer.attach(engine)
        log.info("models_ready", models=[m.manifest.model_id for m in models])

    async def close() -> None:
        for engine in engines:
            await engine.close()
        executor.shutdown(wait=True, cancel_futures=True)

    def register(server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)

    await run_service(
        kit, [register], start_dependencies=start, close_dependencies=close, stop=stop
    )


def main() -> None:
    """Entry point of ``python -m semantic.embedder``."""
    settings = EmbedderSettings()
    configure_logging(settings.log_level, settings.log_format)
    log.info("starting", service="embedder", settings=settings.redacted())
    runtime.run(serve(settings), settings.event_loop)
