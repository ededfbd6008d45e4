"""Protobuf <-> domain values for the search service, with input validation.

Every problem is an InvalidArgument naming the field path the client sent, e.g.
``nodes[3].content_type: must not be empty``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import json_format, struct_pb2, timestamp_pb2

from semantic.common.errors import InvalidArgument
from semantic.search import domain
from semantic.search.nodes import VectorRow
from semantic.v1 import common_pb2 as cpb


@dataclass(frozen=True)
class Limits:
    """Input limits, from settings."""

    max_nodes: int = 500
    max_id_chars: int = 512
    max_text_chars: int = 1_000_000
    max_tags: int = 256
    max_top_k: int = 1000
    max_offset: int = 10_000
    max_filter_values: int = 1000


def vector_from_proto(
    vector: cpb.Vector, field: str, dim: int | None = None
) -> np.ndarray[Any, Any]:
    """Packed little-endian float32 or repeated values; checked for size and finiteness."""
    if vector.packed and vector.values:
        raise InvalidArgument(field, "set either packed or values, not both")
    if vector.packed:
        if len(vector.packed) % 4:
            raise InvalidArgument(f"{field}.packed", "length is not a multiple of 4 bytes")
        array = np.frombuffer(vector.packed, dtype="<f4").astype(np.float32)
    else:
        array = np.asarray(vector.values, dtype=np.float32)
    if array.size == 0:
        raise InvalidArgument(field, "is empty")
    if vector.dim and vector.dim != array.size:
        raise InvalidArgument(
            f"{field}.dim", f"says {vector.dim} but {array.size} values were sent"
        )
    if dim is not None and array.size != dim:
        raise InvalidArgument(field, f"has {array.size} dimensions, the space holds {dim}")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument(field, "holds NaN or infinite values")
    if not np.any(array):
        raise InvalidArgument(field, "is all zeros (no direction to compare)")
    return array


def node_from_proto(
    node: cpb.Node, field: str, tenant: str, dim: int, limits: Limits
) -> tuple[domain.NodeRecord, list[VectorRow]]:
    """A validated node and its client-supplied vectors."""
    _check_id(node.id, f"{field}.id", limits)
    if not node.content_type.strip():
        raise InvalidArgument(f"{field}.content_type", "must not be empty")
    if len(node.content_type) > 128:
        raise InvalidArgument(f"{field}.content_type", "is longer than 128 characters")
    if node.slug:
        _check_id(node.slug, f"{field}.slug", limits)
    for name in ("title", "body"):
        if len(getattr(node, name)) > limits.max_text_chars:
            raise InvalidArgument(
                f"{field}.{name}", f"is longer than {limits.max_text_chars} characters"
            )
    for name, text in node.texts.items():
        if not name or len(name) > 64:
            raise InvalidArgument(f"{field}.texts", f"vector name {name!r} must be 1-64 characters")
        if len(text) > limits.max_text_chars:
            raise InvalidArgument(f"{field}.texts[{name}]", "is too long")
    if len(node.tags) > limits.max_tags:
        raise InvalidArgument(f"{field}.tags", f"more than {limits.max_tags} tags")
    vectors = []
    for j, named in enumerate(node.vectors):
        path = f"{field}.vectors[{j}]"
        if not named.name:
            raise InvalidArgument(f"{path}.name", "must not be empty")
        array = vector_from_proto(named.vector, f"{path}.vector", dim)
        span = named.span
        vectors.append(
            VectorRow(
                named.name, named.chunk_index, span.start, span.end, array, client_supplied=True
            )
        )
    record = domain.NodeRecord(
        tenant=tenant,
        id=node.id,
        slug=node.slug or None,
        content_type=node.content_type.strip(),
        title=node.title,
        body=node.body,
        texts=dict(node.texts),
        tags=tuple(dict.fromkeys(node.tags)),
        metadata=json_format.MessageToDict(node.metadata) if node.HasField("metadata") else {},
        version=node.version,
    )
    return record, vectors


def node_to_proto(
    record: domain.NodeRecord, *, include_body: bool = True, vectors: Sequence[VectorRow] = ()
) -> cpb.Node:
    """A stored node as protobuf (body and vectors only when asked)."""
    message = cpb.Node(
        id=record.id,
        tenant=record.tenant,
        slug=record.slug or "",
        content_type=record.content_type,
        title=record.title,
        body=record.body if include_body else "",
        tags=list(record.tags),
        version=record.version,
        content_hash=record.content_hash,
        texts=dict(record.texts) if include_body else {},
    )
    if record.metadata:
        message.metadata.update(dict(record.metadata))
    for stamp, value in (("created_at", record.created_at), ("updated_at", record.updated_at)):
        if value is not None:
            getattr(message, stamp).FromDatetime(value)
    for row in vectors:
        message.vectors.append(
            cpb.NamedVector(
                name=row.name,
                chunk_index=row.chunk,
                span=cpb.TextSpan(start=row.span_start, end=row.span_end),
                client_supplied=row.client_supplied,
                vector=cpb.Vector(
                    packed=np.asarray(row.embedding, dtype="<f4").tobytes(), dim=len(row.embedding)
                ),
            )
        )
    return message


def filter_from_proto(message: cpb.Filter, field: str, limits: Limits) -> domain.Filter:
    """A domain filter; deep checks (ranges, keys) happen when it is compiled to SQL."""
    lists = {
        "content_types": message.content_types,
        "tags_any": message.tags_any,
        "tags_all": message.tags_all,
        "tags_none": message.tags_none,
        "ids": message.ids,
        "exclude_ids": message.exclude_ids,
    }
    for name, values in lists.items():
        if len(values) > limits.max_filter_values:
            raise InvalidArgument(f"{field}.{name}", f"more than {limits.max_filter_values} values")
    conditions = tuple(
        _condition(c, f"{field}.metadata[{i}]") for i, c in enumerate(message.metadata)
    )
    return domain.Filter(
        content_types=tuple(message.content_types),
        tags_any=tuple(message.tags_any),
        tags_all=tuple(message.tags_all),
        tags_none=tuple(message.tags_none),
        metadata=conditions,
        created=_time_range(message.created) if message.HasField("created") else None,
        updated=_time_range(message.updated) if message.HasField("updated") else None,
        ids=tuple(message.ids),
        exclude_ids=tuple(message.exclude_ids),
    )


def _condition(message: cpb.MetadataCondition, field: str) -> domain.MetadataCondition:
    kind = message.WhichOneof("test")
    if kind is None:
        raise InvalidArgument(
            field, "needs one of equals, any_of, number_range, time_range, exists"
        )
    base: dict[str, Any] = {"key": message.key, "negate": message.negate}
    if kind == "equals":
        value = _value(message.equals)
        # equals=None means "not set" in the domain; JSON null is matched as any_of [null].
        base["equals" if value is not None else "any_of"] = value if value is not None else (None,)
    elif kind == "any_of":
        base["any_of"] = tuple(_value(v) for v in message.any_of.values)
    elif kind == "number_range":
        r = message.number_range
        base["number_range"] = domain.NumberRange(
            gte=r.gte if r.HasField("gte") else None,
            gt=r.gt if r.HasField("gt") else None,
            lte=r.lte if r.HasField("lte") else None,
            lt=r.lt if r.HasField("lt") else None,
        )
        for bound in (r.gte, r.gt, r.lte, r.lt):
            if math.isnan(bound):
                raise InvalidArgument(f"{field}.number_range", "bounds must be numbers, not NaN")
    elif kind == "time_range":
        base["time_range"] = _time_range(message.time_range)
    else:
        base["exists"] = message.exists
    return domain.MetadataCondition(**base)


def _value(value: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(value)


def _time_range(message: cpb.TimeRange) -> domain.TimeRange:
    return domain.TimeRange(
        start=_time(message.start) if message.HasField("start") else None,
        end=_time(message.end) if message.HasField("end") else None,
    )


def _time(stamp: timestamp_pb2.Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def _check_id(value: str, field: str, limits: Limits) -> None:
    if not value.strip():
        raise InvalidArgument(field, "must not be empty")
    if len(value) > limits.max_id_chars:
        raise InvalidArgument(field, f"is longer than {limits.max_id_chars} characters")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidArgument(field, "must not contain control characters")
