"""Content events off the wire: decode, validate, and classify the poison.

Pure functions of (subject, headers, payload); nothing here talks to NATS or PostgreSQL.
A message either becomes a :class:`ContentChange` or raises :class:`Poison` with the
dead-letter reason code of ``events.proto`` and a detail naming the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf import json_format
from google.protobuf.message import DecodeError

from semantic.common.errors import InvalidArgument
from semantic.search import convert, domain
from semantic.v1 import events_pb2

CONTENT_PREFIX = "semantic.content"
USER_PREFIX = "semantic.user"
DLQ_PREFIX = "semantic.dlq"
DEFAULT_TENANT_TOKEN = "_"
MAX_EVENT_ID = 128

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
    message: events_pb2.ContentEvent | events_pb2.UserEvent,
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
            json_format.Parse(payload.decode("utf-8"), message)
        else:
            raise Poison("decode_error", f"Content-Type {media!r} is not protobuf or JSON")
    except (DecodeError, json_format.ParseError, UnicodeDecodeError, RecursionError) as exc:
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
    try:
        return _validate(event, subject_tenant, limits)
    except InvalidArgument as exc:
        raise Poison("invalid", str(exc)) from exc


def _validate(
    event: events_pb2.ContentEvent, subject_tenant: str, limits: convert.Limits
) -> ContentChange:
    if not event.event_id.strip():
        raise InvalidArgument("event_id", "must not be empty")
    if len(event.event_id) > MAX_EVENT_ID:
        raise InvalidArgument("event_id", f"is longer than {MAX_EVENT_ID} characters")
    if event.op not in (events_pb2.CONTENT_OP_UPSERT, events_pb2.CONTENT_OP_DELETE):
        raise InvalidArgument("op", "must be CONTENT_OP_UPSERT or CONTENT_OP_DELETE")
    if event.version <= 0:
        raise InvalidArgument("version", "must be > 0")
    if event.version >= 2**63:
        raise InvalidArgument("version", "must be < 2^63")
    if not event.HasField("node"):
        raise InvalidArgument("node", "is required")
    node = event.node
    if node.version and node.version != event.version:
        raise InvalidArgument(
            "node.version", f"is {node.version} but the event's version is {event.version}"
        )
    if node.tenant != subject_tenant:
        raise Poison(
            "tenant_mismatch",
            f"node.tenant {node.tenant!r} differs from the subject's tenant {subject_tenant!r}",
        )
    if not node.id.strip() and not node.slug.strip():
        raise InvalidArgument("node.id", "id or slug is required")
    if len(event.source) > MAX_EVENT_ID:
        raise InvalidArgument("source", f"is longer than {MAX_EVENT_ID} characters")
    occurred = event.occurred_at.ToDatetime(tzinfo=UTC) if event.HasField("occurred_at") else None
    upsert = event.op == events_pb2.CONTENT_OP_UPSERT
    record: domain.NodeRecord | None = None
    if upsert:
        named = events_pb2.ContentEvent().node
        named.CopyFrom(node)
        named.version = event.version
        if not named.id:
            named.id = named.slug  # placeholder until the slug is resolved
        if named.vectors:
            raise InvalidArgument("node.vectors", "events carry text only; use Search.Upsert")
        record, _ = convert.node_from_proto(named, "node", node.tenant, 1, limits)
    else:
        for name in ("id", "slug"):
            value = getattr(node, name)
            if value and (len(value) > limits.max_id_chars or any(ord(c) < 32 for c in value)):
                raise InvalidArgument(f"node.{name}", "is too long or holds control characters")
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
