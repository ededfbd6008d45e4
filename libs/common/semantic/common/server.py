"""The gRPC server kit every service runs on, and the one process life cycle.

    settings -> logging -> server up with health NOT_SERVING -> dependencies (with retry)
    -> SERVING -> wait for SIGTERM/SIGINT -> enter_graceful_shutdown -> drain -> close

The server starts before the dependencies so that orchestrators see a live process that
is not yet ready (readiness probes read ``grpc.health.v1``), instead of a refused port.

A request that cannot be decoded (corrupt wire format, bad UTF-8 in a string field) gets
INVALID_ARGUMENT on every method, ours and grpc's own (health, reflection):
:class:`DecodeGuard` wraps each handler's request deserializer.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from semantic.common.errors import InvalidArgument
from semantic.common.grpc_errors import Behavior, ErrorInterceptor, Rewrapped, rewrap
from semantic.common.settings import BaseServiceSettings

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
    grace_seconds: float = BaseServiceSettings.model_fields["shutdown_grace_seconds"].default
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    options: Sequence[tuple[str, Any]] = (
        ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ("grpc.so_reuseport", 0),
    )
    health: HealthServicer = field(default_factory=HealthServicer)
    bound_port: int = 0
    serving: bool = False
    """Whether every service reports SERVING (what the HTTP side's /readyz answers)."""
    listening: asyncio.Event = field(default_factory=asyncio.Event)
    _server: grpc.aio.Server | None = None
    _metrics: Any = None

    @classmethod
    def from_settings(
        cls,
        settings: BaseServiceSettings,
        *,
        name: str,
        service_names: Sequence[str],
        extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    ) -> ServerKit:
        """The kit of one service process: addresses and grace period from its settings."""
        return cls(
            name=name,
            service_names=service_names,
            host=settings.grpc_host,
            port=settings.grpc_port,
            metrics_host=settings.metrics_host,
            metrics_port=settings.metrics_port,
            grace_seconds=settings.shutdown_grace_seconds,
            extra_interceptors=extra_interceptors,
        )

    async def start(self, registrars: Sequence[Registrar]) -> int:
        """Start listening with every service NOT_SERVING; returns the bound port."""
        server = grpc.aio.server(
            # DecodeGuard innermost: its InvalidArgument goes through the error table.
            interceptors=[*self.extra_interceptors, ErrorInterceptor(), DecodeGuard()],
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
        self.serving = False
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

    async def report(self, serving: bool) -> None:
        """Set every service (and the server, name "") SERVING or NOT_SERVING."""
        await self._set_all(SERVING if serving else NOT_SERVING)

    async def _set_all(self, status: int) -> None:
        self.serving = status == SERVING
        for service in ("", *self.service_names):
            await self.health.set(service, status)


class Undecodable:
    """What a guarded deserializer returns instead of raising: grpc.aio would answer
    UNKNOWN for an exception raised there, before any interceptor sees the call."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def problem(self) -> InvalidArgument:
        """The error the client gets (the decoder's message, cut at 200 characters)."""
        detail = str(self.error)[:200] or type(self.error).__name__
        return InvalidArgument("request", f"cannot be decoded: {detail}")


class DecodeGuard(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Undecodable requests become ``InvalidArgument("request", ...)`` for every handler.

    Each handler's ``request_deserializer`` returns :class:`Undecodable` instead of raising,
    and the behaviour raises InvalidArgument when it receives one (for streamed requests:
    when the request iterator reaches one), so the error table maps it like any other.
    """

    def __init__(self) -> None:
        self._wrapped = Rewrapped()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return self._wrapped.get(
            handler_call_details.method,
            handler,
            lambda: rewrap(
                handler,
                lambda behavior, kind: _checked(behavior, streamed=kind.startswith("stream_")),
                request_deserializer=_guarded(handler.request_deserializer),
            ),
        )


def _guarded(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def guarded(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError and whatever else a decoder raises
            return Undecodable(exc)

    return guarded


async def _requests(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
    async for request in requests:
        if isinstance(request, Undecodable):
            raise request.problem()
        yield request


def _checked(behavior: Behavior, *, streamed: bool = False) -> Behavior:
    """``behavior`` refusing undecodable requests; an async generator stays one (the
    error interceptor and grpc.aio tell the kinds of streaming handlers apart by it)."""

    def request_of(request: Any) -> Any:
        if streamed:
            return _requests(request)
        if isinstance(request, Undecodable):
            raise request.problem()
        return request

    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            async for item in behavior(request_of(request), context):
                yield item

        return stream

    async def unary(request: Any, context: Any) -> Any:
        return await behavior(request_of(request), context)

    return unary


def termination_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (installed on the running loop)."""
    event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, event.set)
    return event


class Companion(Protocol):
    """Another server of the process (the search service's HTTP API) living beside gRPC."""

    async def start(self) -> int: ...

    async def stop(self) -> None: ...


async def run_service(
    kit: ServerKit,
    registrars: Sequence[Registrar],
    *,
    start_dependencies: Callable[[], Coroutine[Any, Any, None]],
    close_dependencies: Callable[[], Coroutine[Any, Any, None]],
    stop: asyncio.Event | None = None,
    companions: Sequence[Companion] = (),
) -> None:
    """The whole life cycle of one service process; returns after a clean shutdown.

    ``companions`` start listening right after the gRPC server (their readiness follows
    the kit's health) and stop before it."""
    stop = stop or termination_event()
    await kit.start(registrars)
    started: list[Companion] = []
    try:
        for companion in companions:
            await companion.start()
            started.append(companion)
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
        for companion in reversed(started):
            await companion.stop()
        await kit.stop()
        await close_dependencies()
