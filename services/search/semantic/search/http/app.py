"""The HTTP application of the search service: the API, health, the OpenAPI document.

create_app(gateway, ready, ...)   the ASGI app (FastAPI): /api/semantic/*, /healthz,
                                  /readyz, /openapi.json, and any extra routers
HttpServer                        uvicorn on the running event loop, beside gRPC
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter, Histogram
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semantic.search.http.api import api_router
from semantic.search.http.gateway import Gateway, HttpProblem, problem_response
from semantic.search.http.openapi import build_openapi
from semantic.search.http.problems import (
    BY_STATUS,
    INTERNAL,
    INVALID,
    UNAVAILABLE,
    Problem,
    problem_for,
)
from semantic.search.http.protocol import bounded_protocol

log = structlog.get_logger(__name__)

HTTP_REQUESTS = Counter(
    "semantic_http_requests_total",
    "HTTP requests completed, by route template, method and status.",
    ["route", "method", "status"],
)
HTTP_SECONDS = Histogram(
    "semantic_http_request_seconds",
    "HTTP request handling time in seconds, by route template and method.",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

Ready = Callable[[], Awaitable[bool]]


def create_app(
    gateway: Gateway,
    ready: Ready,
    *,
    cors_origins: Sequence[str] = (),
    routers: Sequence[APIRouter] = (),
    mounts: Sequence[tuple[str, ASGIApp]] = (),
) -> FastAPI:
    """The search service's HTTP app. ``ready`` says whether the core serves (``/readyz``)."""
    app = FastAPI(
        title="Semantic",
        version="1",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(api_router(gateway))
    for router in routers:
        app.include_router(router)
    for path, mounted in mounts:
        app.mount(path, mounted)

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/admin/vector-search", status_code=307)

    @app.get("/healthz", include_in_schema=True, tags=["Operations"], operation_id="Live")
    async def healthz() -> JSONResponse:
        """Live: the process answers."""
        return JSONResponse({"status": "live"})

    @app.get("/readyz", tags=["Operations"], operation_id="Ready")
    async def readyz(request: Request) -> Response:
        """Ready: the core serves (the database is reachable and its schema current)."""
        if await ready():
            return JSONResponse({"status": "ready"})
        return problem_response(
            Problem(UNAVAILABLE, "not ready: starting up or the database is away", "/readyz")
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    _add_handlers(app)
    if cors_origins:
        app.add_middleware(
            _Cors,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["authorization", "content-type", "x-csrf-token"],
            expose_headers=["retry-after", "www-authenticate", "allow"],
            max_age=600,
        )
    app.add_middleware(RouteMetrics)
    app.add_middleware(HeadAsGet)
    return app


class _Cors(CORSMiddleware):
    """Starlette's CORS, its refused preflights (an origin, method or header not allowed)
    answered as a problem document like every other 4xx, not as plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode()  # "Disallowed CORS origin, headers"
        problem = problem_response(Problem(INVALID, f"CORS preflight refused: {refused}"))
        for name, value in response.headers.items():
            if name.lower() not in ("content-length", "content-type"):
                problem.headers[name] = value
        return problem


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(HttpProblem)
    async def on_problem(request: Request, exc: HttpProblem) -> Response:
        return problem_response(exc.problem)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path")]
        name = ".".join(location) or "request"
        detail = f"{name}: {first.get('msg', 'invalid value')}"
        return problem_response(Problem(INVALID, detail, request.url.path, {"field": name}))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        kind = BY_STATUS.get(exc.status_code, INTERNAL if exc.status_code >= 500 else INVALID)
        detail = str(exc.detail) if exc.detail else kind.title
        response = problem_response(Problem(kind, detail, request.url.path))
        if exc.status_code == 405:
            # Starlette names the methods of the first route matching the path only; a path
            # served by several routes (GET and POST /nearest) allows all of theirs.
            allowed = _allowed_methods(app, request.scope)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
            elif exc.headers:
                response.headers.update(exc.headers)
        return response


def _allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route of ``app`` fully answers for the path of ``scope`` (HEAD
    wherever GET: :class:`HeadAsGet`)."""
    allowed = [
        method
        for method in ("DELETE", "GET", "PATCH", "POST", "PUT")
        if any(
            route.matches({**scope, "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    ]
    return sorted([*allowed, "HEAD"]) if "GET" in allowed else allowed


class HeadAsGet:
    """Answers ``HEAD`` as the route's ``GET`` (RFC 9110: a server that serves GET serves
    HEAD); the server sends the status and headers of that answer without its body, since
    its own view of the request still says HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


class RouteMetrics:
    """Counts and times every request by its route template (never the raw path), and
    answers an unexpected exception with a 500 problem (logged once, with its ref)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:  # a bug: answered here once, logged once with its ref
            if status:
                raise  # the response had begun; the server closes the connection
            problem = problem_for(exc, scope.get("path", ""))
            await problem_response(problem)(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            HTTP_REQUESTS.labels(template, method, str(status or 500)).inc()
            HTTP_SECONDS.labels(template, method).observe(time.perf_counter() - started)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the service's loop owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """Serves an ASGI app with uvicorn on the running loop; start() binds, stop() drains."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str,
        port: int,
        grace_seconds: float,
        forwarded_allow_ips: str = "127.0.0.1",
        on_stop: Sequence[Callable[[], Awaitable[None]]] = (),
        max_head_bytes: int = 64 * 1024,
    ) -> None:
        """``on_stop``: called once the server no longer serves (the console's jobs);
        ``max_head_bytes``: a request's line and headers at most (431 above)."""
        self.host = host
        self._on_stop = list(on_stop)
        self.port = port
        self._config = uvicorn.Config(
            app,
            host=host,
            port=port,
            http=bounded_protocol(max_head_bytes),
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            proxy_headers=True,
            forwarded_allow_ips=forwarded_allow_ips,
            timeout_graceful_shutdown=max(1, int(grace_seconds)),
        )
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None
        self.bound_port = 0

    async def start(self, timeout_s: float = 30.0) -> int:
        """Bind and start serving; returns the bound port (``port`` 0 picks a free one)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"cannot bind HTTP port {self.host}:{self.port}: {exc}") from exc
        self.bound_port = sock.getsockname()[1]
        server = _Uvicorn(self._config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="http-server")
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if self._task.done():
                self._task.result()
                raise OSError("the HTTP server stopped while starting")
            if time.monotonic() > deadline:
                raise TimeoutError("the HTTP server did not start")
            await asyncio.sleep(0.01)
        log.info("http_started", http=f"{self.host}:{self.bound_port}")
        return self.bound_port

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (within the grace period)."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = None
        self._task = None
        for callback in self._on_stop:
            await callback()
        log.info("http_stopped")
