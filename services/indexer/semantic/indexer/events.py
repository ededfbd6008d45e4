"""Content events off the wire: decode, validate, and classify the poison.

Pure functions of (subject, headers, payload); nothing here talks to NATS or PostgreSQL.
A message either becomes a :class:`ContentChange` or raises :class:`Poison` with the
dead-letter reason code of ``events.proto`` and a detail naming the offending field.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import structlog
from google.protobuf.message import DecodeError

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core import domain
from semantic.v1 import events_pb2
from semantic.wire import convert, protojson

log = structlog.get_logger(__name__)

CONTENT_PREFIX = "semantic.content"
USER_PREFIX = "semantic.user"
FEEDBACK_PREFIX = "semantic.feedback"
DLQ_PREFIX = "semantic.dlq"
DEFAULT_TENANT_TOKEN = "_"

PROTOBUF_TYPES = frozenset({"", "application/protobuf", "application/x-protobuf"})
JSON_TYPES = frozenset({"application/json"})


class Poison(Exception):
    """A message that can never be applied; it goes to the dead-letter subject."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class ContentChange:
    """One validated ContentEvent."""

    event_id: str
    upsert: bool
    tenant: str
    id: str  # empty when the publisher named the node by slug only
    slug: str | None
    version: int
    node: domain.NodeRecord | None  # UPSERT only
    occurred_at: datetime | None
    source: str

    @property
    def key(self) -> tuple[str, str]:
        """(tenant, id or slug): what identifies the node before slugs are resolved."""
        return (self.tenant, self.id or f"slug:{self.slug}")


def tenant_from_subject(subject: str, prefix: str) -> str:
    """The tenant token of ``<prefix>.<tenant>...``; ``_`` is the default tenant."""
    rest = subject[len(prefix) + 1 :] if subject.startswith(prefix + ".") else ""
    token = rest.split(".", 1)[0]
    if not token:
        raise Poison("invalid", f"subject {subject!r} has no tenant token after {prefix}.")
    return "" if token == DEFAULT_TENANT_TOKEN else token


def subject_token(tenant: str) -> str:
    """The subject token of a tenant (``_`` for the default tenant)."""
    return tenant or DEFAULT_TENANT_TOKEN


def content_type_of(headers: Mapping[str, str] | None) -> str:
    """The media type of a message, lower case, parameters dropped."""
    raw = (headers or {}).get("Content-Type", "")
    return raw.split(";", 1)[0].strip().lower()


def parse_event(
    payload: bytes,
    headers: Mapping[str, str] | None,
    message: events_pb2.ContentEvent | events_pb2.UserEvent | events_pb2.FeedbackEvent,
    *,
    max_bytes: int,
) -> None:
    """Fill ``message`` from a protobuf or protobuf-JSON payload; Poison when impossible."""
    if len(payload) > max_bytes:
        raise Poison("too_large", f"payload of {len(payload)} bytes exceeds {max_bytes}")
    media = content_type_of(headers)
    try:
        if media in PROTOBUF_TYPES:
            message.ParseFromString(payload)
        elif media in JSON_TYPES:
            protojson.parse(payload, message)
        else:
            raise Poison("decode_error", f"Content-Type {media!r} is not protobuf or JSON")
    except (
        DecodeError,
        InvalidArgument,
        ValueError,
        TypeError,
        RecursionError,
        OverflowError,
    ) as exc:
        kind = "protobuf" if media in PROTOBUF_TYPES else "protobuf-JSON"
        raise Poison("decode_error", f"not a valid {kind} {type(message).__name__}: {exc}") from exc


def decode_content(
    subject: str,
    headers: Mapping[str, str] | None,
    payload: bytes,
    *,
    max_bytes: int,
    limits: convert.Limits,
) -> ContentChange:
    """A validated ContentChange, or Poison naming the reason and the field."""
    event = events_pb2.ContentEvent()
    parse_event(payload, headers, event, max_bytes=max_bytes)
    subject_tenant = tenant_from_subject(subject, CONTENT_PREFIX)
    with validating(subject):
        return _validate(event, subject_tenant, limits)


def decode_tenant_event(
    msg_subject: str,
    headers: Mapping[str, str] | None,
    payload: bytes,
    event: events_pb2.UserEvent | events_pb2.FeedbackEvent,
    *,
    prefix: str,
    max_bytes: int,
) -> None:
    """Fill ``event`` (a message with a ``tenant``) from a message on ``<prefix>.<tenant>``:
    Poison when the subject is not one of ``prefix``, the payload cannot be decoded, the
    tenant is not valid or differs from the subject's."""
    if not msg_subject.startswith(prefix + "."):
        raise Poison("invalid", f"subject {msg_subject!r} is not a {prefix}.<tenant> subject")
    parse_event(payload, headers, event, max_bytes=max_bytes)
    subject_tenant = tenant_from_subject(msg_subject, prefix)
    with validating(msg_subject):
        validation.tenant(event.tenant, "tenant")
    if event.tenant != subject_tenant:
        raise Poison(
            "tenant_mismatch",
            f"tenant {event.tenant!r} differs from the subject's tenant {subject_tenant!r}",
        )


@contextmanager
def validating(subject: str, *, strip: str = "") -> Iterator[None]:
    """Turns a validation failure into Poison ``invalid`` naming the field (``strip``:
    a prefix of the field path left out of the detail).

    Validation is a pure function of the payload, so any other exception raised while
    validating would recur on every delivery: it is poison too (and logged with its
    trace, as a bug of ours).
    """
    try:
        yield
    except Poison:
        raise
    except InvalidArgument as exc:
        raise Poison("invalid", str(exc).removeprefix(strip)) from exc
    except Exception as exc:
        log.error("event_validation_failed", subject=subject, exc_info=exc)
        raise Poison("invalid", f"cannot be validated ({type(exc).__name__})") from exc


def _validate(
    event: events_pb2.ContentEvent, subject_tenant: str, limits: convert.Limits
) -> ContentChange:
    validation.short_id(event.event_id, "event_id", required=True)
    if event.op not in (events_pb2.CONTENT_OP_UPSERT, events_pb2.CONTENT_OP_DELETE):
        raise InvalidArgument("op", "must be CONTENT_OP_UPSERT or CONTENT_OP_DELETE")
    validation.integer(event.version, "version", minimum=1)
    if not event.HasField("node"):
        raise InvalidArgument("node", "is required")
    node = event.node
    if node.version and node.version != event.version:
        raise InvalidArgument(
            "node.version", f"is {node.version} but the event's version is {event.version}"
        )
    validation.tenant(node.tenant, "node.tenant")
    if node.tenant != subject_tenant:
        raise Poison(
            "tenant_mismatch",
            f"node.tenant {node.tenant!r} differs from the subject's tenant {subject_tenant!r}",
        )
    if not node.id.strip() and not node.slug.strip():
        raise InvalidArgument("node.id", "id or slug is required")
    if node.id:
        validation.node_id(node.id, "node.id")
    if node.slug:
        validation.slug(node.slug, "node.slug")
    validation.short_id(event.source, "source")
    occurred = (
        convert.timestamp(event.occurred_at, "occurred_at")
        if event.HasField("occurred_at")
        else None
    )
    upsert = event.op == events_pb2.CONTENT_OP_UPSERT
    record: domain.NodeRecord | None = None
    if upsert:
        if node.vectors:
            raise InvalidArgument("node.vectors", "events carry text only; use Search.Upsert")
        named = events_pb2.ContentEvent().node
        named.CopyFrom(node)
        named.version = event.version
        if not named.id:
            # An upsert by slug alone may create the node with the slug as its id.
            validation.node_id(node.slug, "node.slug")
            named.id = named.slug  # placeholder until the slug is resolved
        record, _ = convert.node_from_proto(named, "node", node.tenant, 1, limits)
    return ContentChange(
        event_id=event.event_id,
        upsert=upsert,
        tenant=node.tenant,
        id=node.id,
        slug=node.slug or None,
        version=event.version,
        node=record,
        occurred_at=occurred,
        source=event.source,
    )
