"""Domain errors become HTTP statuses and RFC 9457 problem documents here and nowhere else.

:data:`STATUS_TABLE` is the HTTP twin of ``semantic.common.grpc_errors.STATUS_TABLE``: the
same exceptions, in the same order, with the gRPC code each one gets over gRPC. Anything not
in the table is a bug on our side: 500 with a generic detail and a reference id, the trace
logged under that id. A client's mistake never gets a 500.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from semantic.common import errors
from semantic.wire import protojson

log = structlog.get_logger(__name__)

MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_S = 1
"""``Retry-After`` of 429 and 503 answers, in seconds."""


@dataclass(frozen=True)
class Kind:
    """One row of the table: the HTTP status, its title and the gRPC code of the same error."""

    status: int
    title: str
    code: str

    @property
    def type(self) -> str:
        """The problem type URI: ``urn:semantic:problem:<code in kebab case>``."""
        return "urn:semantic:problem:" + self.code.lower().replace("_", "-")


INVALID = Kind(400, "Invalid request", "INVALID_ARGUMENT")
UNAUTHENTICATED = Kind(401, "Not authenticated", "UNAUTHENTICATED")
FORBIDDEN = Kind(403, "Forbidden", "PERMISSION_DENIED")
NOT_FOUND = Kind(404, "Not found", "NOT_FOUND")
CONFLICT = Kind(409, "Conflict", "ALREADY_EXISTS")
PRECONDITION = Kind(409, "Not possible in the current state", "FAILED_PRECONDITION")
OVERLOADED = Kind(429, "Overloaded", "RESOURCE_EXHAUSTED")
UNAVAILABLE = Kind(503, "A dependency is unavailable", "UNAVAILABLE")
DEADLINE = Kind(504, "Deadline exceeded", "DEADLINE_EXCEEDED")
INTERNAL = Kind(500, "Internal error", "INTERNAL")
# Statuses of the HTTP layer itself (no domain error behind them).
METHOD_NOT_ALLOWED = Kind(405, "Method not allowed", "UNIMPLEMENTED")
TOO_LARGE = Kind(413, "Request body too large", "INVALID_ARGUMENT")
UNSUPPORTED_MEDIA = Kind(415, "Unsupported media type", "INVALID_ARGUMENT")

STATUS_TABLE: tuple[tuple[type[BaseException], Kind], ...] = (
    (errors.InvalidArgument, INVALID),
    (errors.NotFound, NOT_FOUND),
    (errors.AlreadyExists, CONFLICT),
    (errors.FailedPrecondition, PRECONDITION),
    (errors.Unauthenticated, UNAUTHENTICATED),
    (errors.PermissionDenied, FORBIDDEN),
    (errors.Overloaded, OVERLOADED),
    (errors.DependencyUnavailable, UNAVAILABLE),
    (TimeoutError, DEADLINE),
)
BY_STATUS: Mapping[int, Kind] = {
    kind.status: kind
    for kind in (
        INVALID,
        UNAUTHENTICATED,
        FORBIDDEN,
        NOT_FOUND,
        CONFLICT,
        METHOD_NOT_ALLOWED,
        TOO_LARGE,
        UNSUPPORTED_MEDIA,
        OVERLOADED,
        UNAVAILABLE,
        DEADLINE,
        INTERNAL,
    )
}


@dataclass(frozen=True)
class Problem:
    """An RFC 9457 problem document and the headers that go with it."""

    kind: Kind
    detail: str
    instance: str = ""
    extra: Mapping[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        """The JSON object: type, title, status, detail, instance, code and extensions."""
        out: dict[str, Any] = {
            "type": self.kind.type,
            "title": self.kind.title,
            "status": self.kind.status,
            "detail": self.detail,
            "code": self.kind.code,
        }
        if self.instance:
            out["instance"] = self.instance
        out.update(self.extra or {})
        return out

    def headers(self) -> dict[str, str]:
        """``Retry-After`` for 429 and 503; ``WWW-Authenticate`` for 401."""
        if self.kind.status in (429, 503):
            return {"Retry-After": str(RETRY_AFTER_S)}
        if self.kind.status == 401:
            return {"WWW-Authenticate": 'Bearer realm="semantic"'}
        return {}


def problem_for(
    exc: BaseException,
    instance: str = "",
    renames: Mapping[str, str] | None = None,
    *,
    sent: set[str] | None = None,
) -> Problem:
    """The problem an exception raised by a handler becomes.

    ``renames`` maps request field paths to the names the client used (a query parameter
    ``k`` for the field ``top_k``), so the problem names what the client sent; ``sent``: the
    field names a JSON body used (``topK`` for ``top_k``: ``protojson.as_sent``).
    """
    kind = next((k for exc_type, k in STATUS_TABLE if isinstance(exc, exc_type)), None)
    if kind is None:
        ref = uuid.uuid4().hex[:12]
        log.error("http_failed", instance=instance, ref=ref, exc_info=exc)
        return Problem(INTERNAL, f"internal error (ref {ref})", instance, {"ref": ref})
    if isinstance(exc, errors.InvalidArgument):
        name = _renamed(exc.field, renames or {})
        if sent:
            name = protojson.as_sent(name, sent)
        return Problem(kind, f"{name}: {exc.problem}", instance, {"field": name})
    if kind is DEADLINE:
        return Problem(kind, "deadline exceeded while processing the request", instance)
    return Problem(kind, str(exc) or type(exc).__name__, instance)


def _renamed(field: str, renames: Mapping[str, str]) -> str:
    """``filter.content_types[0]`` with ``{"filter.content_types": "type"}`` -> ``type[0]``."""
    for path, name in renames.items():
        if field == path or field.startswith((path + ".", path + "[")):
            return name + field[len(path) :]
    return field


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "An RFC 9457 problem document.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "urn:semantic:problem:<code>"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string", "description": "What went wrong, naming the field."},
        "code": {"type": "string", "description": "The gRPC status code of the same error."},
        "instance": {"type": "string", "description": "The request path."},
        "field": {"type": "string", "description": "The request field at fault (400)."},
        "ref": {"type": "string", "description": "Reference of the logged trace (500)."},
    },
}
