"""The gRPC server kit every service runs on, and the one process life cycle.

    settings -> logging -> server up with health NOT_SERVING -> dependencies (with retry)
    -> SERVING -> wait for SIGTERM/SIGINT -> enter_graceful_shutdown -> drain -> close

The server starts before the dependencies so that orchestrators see a live process that
is not yet ready (readiness probes read ``grpc.health.v1``), instead of a refused port.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from semantic.common.grpc_errors import ErrorInterceptor

log = structlog.get_logger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Registrar(Protocol):
    """Adds one servicer to a server, e.g. ``search_pb2_grpc.add_SearchServicer_to_server``."""

    def __call__(self, server: grpc.aio.Server) -> None: ...


@dataclass
class ServerKit:
    """A grpc.aio server with health, reflection, error mapping and Prometheus metrics."""

    name: str
    service_names: Sequence[str]
    host: str = "127.0.0.1"
    port: int = 0
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 0
    grace_seconds: float = 10.0
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    options: Sequence[tuple[str, Any]] = (
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
    )
    health: HealthServicer = field(default_factory=HealthServicer)
    bound_port: int = 0
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    _server: grpc.aio.Server | None = None
    _metrics: Any = None

    async def start(self, registrars: Sequence[Registrar]) -> int:
        """Start listening with every service NOT_SERVING; returns the bound port."""
        server = grpc.aio.server(
            interceptors=[*self.extra_interceptors, ErrorInterceptor()],
            options=list(self.options),
        )
        for register in registrars:
            register(server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        full_names = [
            *self.service_names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        ]
        reflection.enable_server_reflection([*full_names, reflection.SERVICE_NAME], server)
        await self._set_all(NOT_SERVING)
        self.bound_port = server.add_insecure_port(f"{self.host}:{self.port}")
        if self.bound_port == 0:
            raise OSError(f"cannot bind gRPC port {self.host}:{self.port}")
        await server.start()
        self._server = server
        self.listening.set()
        if self.metrics_port:
            self._metrics = start_http_server(self.metrics_port, addr=self.metrics_host)
        log.info(
            "server_started",
            service=self.name,
            grpc=f"{self.host}:{self.bound_port}",
            metrics=f"{self.metrics_host}:{self.metrics_port}" if self.metrics_port else None,
        )
        return self.bound_port

    async def set_serving(self) -> None:
        """Report SERVING for every service (and the server as a whole, name "")."""
        await self._set_all(SERVING)
        log.info("serving", service=self.name)

    async def stop(self) -> None:
        """Report NOT_SERVING, let in-flight RPCs finish within the grace period, close."""
        await self.health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(self.grace_seconds)
            self._server = None
        if self._metrics is not None:
            http_server, thread = self._metrics
            http_server.shutdown()
            thread.join(timeout=5)
            self._metrics = None
        log.info("server_stopped", service=self.name)

    async def _set_all(self, status: int) -> None:
        for service in ("", *self.service_names):
            await self.health.set(service, status)


def termination_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (installed on the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


async def run_service(
    kit: ServerKit,
    registrars: Sequence[Registrar],
    *,
    start_dependencies: Callable[[], Coroutine[Any, Any, None]],
    close_dependencies: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event | None = None,
) -> None:
    """The whole life cycle of one service process; returns after a clean shutdown."""
    stop = stop or termination_event()
    await kit.start(registrars)
    try:
        deps = asyncio.create_task(start_dependencies(), name=f"{kit.name}-dependencies")
        stopped = asyncio.create_task(stop.wait(), name=f"{kit.name}-stop")
        await asyncio.wait({deps, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not deps.done():  # asked to stop while still waiting for dependencies
            deps.cancel()
            await asyncio.gather(deps, return_exceptions=True)
            return
        stopped.cancel()
        deps.result()  # re-raise a start-up failure
        await kit.set_serving()
        await stop.wait()
        log.info("shutdown_requested", service=kit.name)
    finally:
        await kit.stop()
        await close_dependencies()
