"""One HTTP request -> one call of the gRPC servicers, with the same auth, rules and errors.

The servicers are the protobuf face of the core (``semantic.search.servicer`` and
``semantic.search.admin``): every check on a request's fields lives there, once. The HTTP
side only reads query parameters or a protobuf-JSON body into the request message,
authorizes the caller for the gRPC method the route stands for, runs the servicer as that
caller, and writes the response message as JSON; a raised error becomes a problem document.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from semantic.search.admin import AdminServicer
from semantic.search.http.problems import (
    MEDIA_TYPE,
    TOO_LARGE,
    UNSUPPORTED_MEDIA,
    Problem,
    problem_for,
)
from semantic.search.http.security import Caller, HttpAuth, acting
from semantic.search.servicer import SearchServicer
from semantic.wire import protojson

M = TypeVar("M", bound=Message)
JSON_MEDIA = "application/json"


class HttpProblem(Exception):
    """Carries a problem document out of a handler to the app's exception handler."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.detail)


def problem_response(problem: Problem) -> Response:
    """The problem as ``application/problem+json`` with its headers."""
    return Response(
        json_bytes(problem.body()),
        status_code=problem.kind.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers(),
    )


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


class MessageResponse(Response):
    """A protobuf message written as protobuf-JSON."""

    media_type = JSON_MEDIA

    def render(self, content: Any) -> bytes:
        """``content`` is a protobuf message."""
        return protojson.to_json(content)


class HttpContext:
    """What a servicer may ask of its gRPC context, answered for an HTTP request."""

    def __init__(self, caller: Caller) -> None:
        self._caller = caller

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        """The caller's credentials (Reindex passes them on to the embedder)."""
        return self._caller.metadata()


PARSE_INLINE_BYTES = 256 * 1024
"""Bodies up to this size parse on the event loop (a millisecond or so); larger ones on a
thread."""


class Gateway:
    """Authorizes and runs servicer calls for the HTTP routes."""

    def __init__(
        self,
        search: SearchServicer,
        admin: AdminServicer,
        auth: HttpAuth,
        *,
        max_body_bytes: int,
    ) -> None:
        self.search = search
        self.admin = admin
        self.auth = auth
        self.max_body_bytes = max_body_bytes

    def caller(self, request: Request, method: str, form_csrf: str | None = None) -> Caller:
        """The caller of ``request``, authorized for gRPC ``method``."""
        try:
            return self.auth.authorize(
                method,
                request.headers,
                request.cookies,
                http_method=request.method,
                origin_host=request.headers.get("host", ""),
                form_csrf=form_csrf,
            )
        except Exception as exc:
            raise HttpProblem(problem_for(exc, request.url.path)) from exc

    async def call(
        self,
        request: Request,
        service: str,
        rpc: str,
        message: Message,
        renames: Mapping[str, str] | None = None,
        *,
        caller: Caller | None = None,
    ) -> Message:
        """Run ``service``'s ``rpc`` on ``message`` as the request's caller (``caller``:
        authorized already, for this method)."""
        if caller is None:
            caller = self.caller(request, f"/semantic.v1.{service}/{rpc}")
        servicer: Any = self.search if service == "Search" else self.admin
        try:
            with acting(caller):
                result: Message = await getattr(servicer, rpc)(message, HttpContext(caller))
        except Exception as exc:
            sent = getattr(request.state, "sent_names", None)  # a body's (see body())
            problem = problem_for(exc, request.url.path, renames, sent=sent)
            raise HttpProblem(problem) from exc
        return result

    async def body(self, request: Request, message: M) -> M:
        """Fill ``message`` from the request's protobuf-JSON body (empty body: unset)."""
        path = request.url.path
        declared = request.headers.get("content-length")
        if (
            declared is not None
            and declared.isascii()
            and declared.isdigit()
            and int(declared) > self.max_body_bytes
        ):
            raise HttpProblem(self._too_large(path))
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > self.max_body_bytes:
                raise HttpProblem(self._too_large(path))
        if not bytes(data).strip():
            return message
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media != JSON_MEDIA and not (
            media.startswith("application/") and media.endswith("+json")
        ):
            raise HttpProblem(
                Problem(
                    UNSUPPORTED_MEDIA,
                    f"send the body as {JSON_MEDIA} (protobuf-JSON), not {media or 'no type'!r}",
                    path,
                )
            )
        # The field names the body used: a problem found later names fields as sent.
        names: set[str] = set()
        request.state.sent_names = names
        try:
            if len(data) <= PARSE_INLINE_BYTES:
                return protojson.parse(bytes(data), message, names=names)
            # A large body parses on a thread: the loop (gRPC and every other request)
            # keeps turning meanwhile instead of stalling for the parse's seconds.
            return await asyncio.to_thread(
                functools.partial(protojson.parse, bytes(data), message, names=names)
            )
        except Exception as exc:
            raise HttpProblem(problem_for(exc, path, sent=names)) from exc

    def _too_large(self, path: str) -> Problem:
        return Problem(TOO_LARGE, f"the body exceeds {self.max_body_bytes} bytes", path)
