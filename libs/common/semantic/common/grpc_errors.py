"""Domain errors become gRPC status codes here and nowhere else.

:data:`STATUS_TABLE` is the one table; :class:`ErrorInterceptor` applies it to every RPC
of a server. Anything not in the table is a bug on our side: the client gets INTERNAL with
a generic message and a reference id, and the trace is logged under that id.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn

import grpc
import structlog
from grpc.aio import ServicerContext
from prometheus_client import Counter, Histogram

from semantic.common import errors

log = structlog.get_logger(__name__)

STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (errors.InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DependencyUnavailable, grpc.StatusCode.UNAVAILABLE),
    (TimeoutError, grpc.StatusCode.DEADLINE_EXCEEDED),
)

RPC_HANDLED = Counter(
    "semantic_grpc_server_handled_total",
    "RPCs completed, by method and status code.",
    ["method", "code"],
)
RPC_SECONDS = Histogram(
    "semantic_grpc_server_handling_seconds",
    "RPC handling time in seconds, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing message for an exception raised by a handler."""
    for kind, code in STATUS_TABLE:
        if isinstance(exc, kind):
            message = str(exc) or type(exc).__name__
            if code is grpc.StatusCode.DEADLINE_EXCEEDED:
                message = "deadline exceeded while processing the request"
            return code, message
    return grpc.StatusCode.INTERNAL, "internal error"


class _Outcome:
    """Tracks the status code of one call for metrics."""

    __slots__ = ("code",)

    def __init__(self) -> None:
        self.code = grpc.StatusCode.OK


async def _abort(exc: Exception, context: ServicerContext[Any, Any], method: str) -> NoReturn:
    code, message = status_for(exc)
    if code is grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        log.error("rpc_failed", method=method, ref=ref, exc_info=exc)
        message = f"internal error (ref {ref})"
    else:
        log.info("rpc_rejected", method=method, code=code.name, detail=message)
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def _is_abort(exc: BaseException) -> bool:
    # grpc.aio raises AbortError out of context.abort(); it must pass through untouched.
    return type(exc).__name__ == "AbortError" or isinstance(exc, asyncio.CancelledError)


def _wrap_unary(
    behavior: Callable[[Any, ServicerContext[Any, Any]], Awaitable[Any]], method: str
) -> Callable[[Any, ServicerContext[Any, Any]], Awaitable[Any]]:
    async def handler(request: Any, context: ServicerContext[Any, Any]) -> Any:
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            return await behavior(request, context)
        except Exception as exc:
            if _is_abort(exc):
                outcome.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            outcome.code = status_for(exc)[0]
            await _abort(exc, context, method)
        finally:
            _observe(method, outcome, started)

    return handler


def _wrap_stream(
    behavior: Callable[[Any, ServicerContext[Any, Any]], AsyncIterator[Any]], method: str
) -> Callable[[Any, ServicerContext[Any, Any]], AsyncIterator[Any]]:
    async def handler(request: Any, context: ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        started = time.perf_counter()
        outcome = _Outcome()
        try:
            async for item in behavior(request, context):
                yield item
        except Exception as exc:
            if _is_abort(exc):
                outcome.code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            outcome.code = status_for(exc)[0]
            await _abort(exc, context, method)
        finally:
            _observe(method, outcome, started)

    return handler


@functools.cache
def _handled(method: str, code: str) -> Any:
    return RPC_HANDLED.labels(method, code)


@functools.cache
def _seconds(method: str) -> Any:
    return RPC_SECONDS.labels(method)


def _observe(method: str, outcome: _Outcome, started: float) -> None:
    # The label children are looked up once per method (and code): ``labels()`` takes a
    # lock and builds a key on every call. Methods are the registered ones only.
    code = outcome.code
    name = code.name if isinstance(code, grpc.StatusCode) else str(code)
    _handled(method, name).inc()
    _seconds(method).observe(time.perf_counter() - started)


class ErrorInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps domain exceptions to status codes and records per-method metrics."""

    def __init__(self) -> None:
        self._wrapped = Rewrapped()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        def wrap(behavior: Behavior, kind: str) -> Behavior:
            # A streaming handler is either an async generator or a coroutine that calls
            # context.write() (grpc's own health Watch does the latter).
            streams = kind.endswith("_stream") and inspect.isasyncgenfunction(behavior)
            return (_wrap_stream if streams else _wrap_unary)(behavior, method)

        return self._wrapped.get(method, handler, lambda: rewrap(handler, wrap))


Behavior = Callable[[Any, Any], Any]
"""A method handler's behaviour: (request or request iterator, context) -> response."""


class Rewrapped:
    """An interceptor's rewrapped handlers, made once per method instead of on every call.

    grpc.aio hands an interceptor the same registered handler object for a method on every
    call, so a wrapping that depends only on the method and the handler is kept and
    reused; a different handler object under the same method (another server) is wrapped
    anew. The wrapping saves grpc.aio no work; it saves ours (closures, handler tuples).
    """

    __slots__ = ("_by_method",)

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        make: Callable[[], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        """The wrapped ``handler`` of ``method``, made by ``make()`` the first time."""
        kept = self._by_method.get(method)
        if kept is not None and kept[0] is handler:
            return kept[1]
        wrapped = make()
        self._by_method[method] = (handler, wrapped)
        return wrapped


_FACTORIES = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def rewrap(
    handler: grpc.RpcMethodHandler,
    wrap: Callable[[Behavior, str], Behavior],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """The same kind of handler with its behaviour replaced by ``wrap(behaviour, kind)``
    (kind: ``unary_unary``, ``unary_stream``, ``stream_unary`` or ``stream_stream``) and,
    when given, another request deserializer. The one place interceptors rebuild handlers."""
    for kind, factory in _FACTORIES.items():
        behavior = getattr(handler, kind)
        if behavior:
            return factory(
                wrap(behavior, kind),
                request_deserializer=request_deserializer or handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
