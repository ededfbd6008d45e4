"""Protobuf <-> core domain values (nodes, vectors, filters, targets), with input validation;
used by the search servicer and by the indexer's event decoding.

The rules are ``semantic.common.validation``'s; this module applies them field by field
while converting. Every problem is an InvalidArgument naming the field path the client
sent, e.g. ``nodes[3].content_type: must not be empty``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf import timestamp_pb2

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core import domain
from semantic.core.nodes import VectorRow
from semantic.core.settings import InputLimitSettings
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.wire.json_values import struct_to_dict, value_to_python
from semantic.wire.relations import node_relations
from semantic.wire.rules import node_rules


def _setting(name: str) -> Any:
    """The default of one of the input-limit settings (defined there, once)."""
    return InputLimitSettings.model_fields[name].default


@dataclass(frozen=True)
class Limits:
    """Input limits of the search API (nodes, queries, filters) and of content events.

    The configurable ones default to the search service's settings (SEMANTIC_SEARCH_MAX_*);
    the embedder's per-call limits are another thing (``semantic.embedder.engine.EmbedLimits``).
    """

    max_nodes: int = _setting("search_max_nodes_per_upsert")
    """Nodes per Upsert; ids + slugs per Delete."""
    max_get: int = _setting("search_max_get")
    """Ids + slugs per Get."""
    max_title_chars: int = _setting("search_max_title_chars")
    max_text_chars: int = _setting("search_max_text_chars")
    """Characters of a body or a ``texts`` entry."""
    max_query_chars: int = _setting("search_max_query_chars")
    max_tags: int = _setting("search_max_tags")
    max_metadata_bytes: int = _setting("search_max_metadata_bytes")
    """Serialized size of ``Node.metadata``."""
    max_relations: int = _setting("search_max_relations")
    """Relations per node on a write (``Node.relations.items``)."""
    max_rules: int = _setting("search_max_rules")
    """Guardian rules per node (``Node.rules.items``, WriteRules, RemoveRules)."""
    max_chunks: int = 1024
    """Chunks per vector name of a node (``chunk_index`` < this)."""
    max_targets: int = domain.MAX_TARGETS
    max_top_k: int = _setting("search_max_top_k")
    max_offset: int = _setting("search_max_offset")
    max_filter_values: int = 1000
    """Values per list of a filter (content types, tags, one condition's ``any_of``)."""
    max_filter_ids: int = 10_000
    """Ids per ``ids`` / ``exclude_ids`` list of a filter."""


NO_CONTENT_TYPE = ""
"""A content type no node has (stored types are never empty): an empty intersection."""


def vector_from_proto(
    vector: cpb.Vector, field: str, dim: int | None = None
) -> np.ndarray[Any, Any]:
    """Packed little-endian float32 or repeated values; checked for size and for what cosine
    similarity needs (``domain.vector_problem``)."""
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
    problem = domain.vector_problem(array)
    if problem is not None:
        raise InvalidArgument(field, problem)
    return array


def node_from_proto(
    node: cpb.Node, field: str, tenant: str, dim: int, limits: Limits
) -> tuple[domain.NodeRecord, list[VectorRow]]:
    """A validated node and its client-supplied vectors.

    A vector name may be used by ``texts`` or by ``vectors``, not both; one (name,
    chunk_index) appears at most once among a node's vectors. The id may be empty when a
    slug is given (an Upsert by slug: the caller resolves it, ``SearchService.with_ids``).
    """
    if node.id or not node.slug:
        validation.node_id(node.id, f"{field}.id")
    else:  # by slug alone: a new node takes the slug as its id
        validation.node_id(node.slug, f"{field}.slug")
    validation.name(node.content_type, f"{field}.content_type")
    if node.slug:
        validation.slug(node.slug, f"{field}.slug")
    validation.text(node.title, f"{field}.title", limits.max_title_chars)
    validation.text(node.body, f"{field}.body", limits.max_text_chars)
    for name, text in node.texts.items():
        validation.name(name, f"{field}.texts")
        validation.text(text, f"{field}.texts[{name}]", limits.max_text_chars)
    validation.count(len(node.tags), f"{field}.tags", limits.max_tags)
    for i, tag in enumerate(node.tags):
        validation.tag(tag, f"{field}.tags[{i}]")
    validation.integer(node.version, f"{field}.version")
    created_at = (
        timestamp(node.created_at, f"{field}.created_at") if node.HasField("created_at") else None
    )
    metadata: dict[str, Any] = {}
    if node.HasField("metadata"):
        if node.metadata.ByteSize() > limits.max_metadata_bytes:
            raise InvalidArgument(
                f"{field}.metadata", f"is larger than {limits.max_metadata_bytes} bytes"
            )
        metadata = struct_to_dict(node.metadata, f"{field}.metadata")
    vectors = _vectors(node, field, dim, limits)
    relations = node_relations(node, field, limits.max_relations)
    rules = node_rules(node, field, limits.max_rules)
    record = domain.NodeRecord(
        tenant=tenant,
        id=node.id,
        slug=node.slug or None,
        content_type=node.content_type,
        title=node.title,
        body=node.body,
        texts=dict(node.texts),
        tags=tuple(dict.fromkeys(node.tags)),
        metadata=metadata,
        version=node.version,
        created_at=created_at,
        relations=relations,
        rules=rules,
    )
    return record, vectors


def _vectors(node: cpb.Node, field: str, dim: int, limits: Limits) -> list[VectorRow]:
    vectors = []
    for j, named in enumerate(node.vectors):
        path = f"{field}.vectors[{j}]"
        validation.name(named.name, f"{path}.name")
        if named.name in node.texts:
            raise InvalidArgument(
                f"{path}.name", f"{named.name!r} is in texts too: give a name one or the other"
            )
        validation.integer(named.chunk_index, f"{path}.chunk_index", maximum=limits.max_chunks - 1)
        span = named.span
        validation.integer(span.start, f"{path}.span.start", maximum=validation.INT32_MAX)
        validation.integer(span.end, f"{path}.span.end", maximum=validation.INT32_MAX)
        if span.end < span.start:
            raise InvalidArgument(f"{path}.span", "end must not be before start")
        array = vector_from_proto(named.vector, f"{path}.vector", dim)
        vectors.append(
            VectorRow(
                named.name, named.chunk_index, span.start, span.end, array, client_supplied=True
            )
        )
    again = validation.repeated((v.name, v.chunk) for v in vectors)
    if again is not None:
        first, index = again
        raise InvalidArgument(
            f"{field}.vectors[{index}]",
            f"repeats the name and chunk_index of {field}.vectors[{first}]"
            " (each chunk of a named vector at most once)",
        )
    return vectors


def node_reference(message: Any, field: str) -> tuple[str, str]:
    """(node_id, slug) of a message naming a node in its ``node`` oneof (``node_id`` or
    ``slug``), one of them required and valid; InvalidArgument names ``field``.sub-field."""
    which = message.WhichOneof("node")
    if which is None or not getattr(message, which).strip():
        raise InvalidArgument(f"{field}.node_id", "node_id or slug is required")
    if which == "node_id":
        return validation.node_id(message.node_id, f"{field}.node_id"), ""
    return "", validation.slug(message.slug, f"{field}.slug")


def timestamp(stamp: timestamp_pb2.Timestamp, field: str) -> datetime:
    """A Timestamp as an aware UTC datetime; years 1-9999 and valid nanos only."""
    return validation.timestamp(stamp.seconds, stamp.nanos, field)


def min_score(request: Any) -> float | None:
    """``min_score`` of a Search or Nearest request: None when unset, else finite."""
    if not request.HasField("min_score"):
        return None
    return validation.number(request.min_score, "min_score")


def distinct_nodes(records: Sequence[domain.NodeRecord]) -> None:
    """The same node (tenant + id, or tenant + slug) at most once per Upsert."""
    ids = [(i, (r.tenant, r.id)) for i, r in enumerate(records) if r.id]  # '': by slug
    again = validation.repeated(key for _, key in ids)
    if again is not None:
        again = (ids[again[0]][0], ids[again[1]][0])
        raise InvalidArgument(
            f"nodes[{again[1]}].id",
            f"names the same node as nodes[{again[0]}] (a node at most once per request)",
        )
    slugs = [(i, (r.tenant, r.slug)) for i, r in enumerate(records) if r.slug]
    again = validation.repeated(key for _, key in slugs)
    if again is not None:
        first, index = slugs[again[0]][0], slugs[again[1]][0]
        raise InvalidArgument(
            f"nodes[{index}].slug",
            f"is the slug of nodes[{first}] too (a node at most once per request)",
        )


def check_keys(ids: Sequence[str], slugs: Sequence[str], maximum: int, *, distinct: bool) -> None:
    """Ids and slugs of a Get or Delete: formats, count, and (Delete) each at most once."""
    validation.count(len(ids) + len(slugs), "ids", maximum)
    for i, node_id in enumerate(ids):
        validation.node_id(node_id, f"ids[{i}]")
    for i, slug in enumerate(slugs):
        validation.slug(slug, f"slugs[{i}]")
    if not distinct:
        return
    for name, keys in (("ids", ids), ("slugs", slugs)):
        again = validation.repeated(keys)
        if again is not None:
            raise InvalidArgument(
                f"{name}[{again[1]}]", f"repeats {name}[{again[0]}] (each at most once)"
            )


def targets_from_proto(
    targets: Sequence[pb.VectorTarget], limits: Limits
) -> list[domain.VectorTarget]:
    """Named vectors to search: names distinct and well formed, weights between
    ``domain.MIN_TARGET_WEIGHT`` and ``domain.MAX_WEIGHT``."""
    validation.count(len(targets), "targets", limits.max_targets)
    out = []
    for i, target in enumerate(targets):
        validation.name(target.name, f"targets[{i}].name")
        weight = target.weight if target.HasField("weight") else 1.0
        out.append(
            domain.VectorTarget(
                target.name,
                validation.number(
                    weight,
                    f"targets[{i}].weight",
                    minimum=domain.MIN_TARGET_WEIGHT,
                    maximum=domain.MAX_WEIGHT,
                ),
            )
        )
    again = validation.repeated(t.name for t in out)
    if again is not None:
        raise InvalidArgument(
            f"targets[{again[1]}].name", f"repeats targets[{again[0]}].name (names distinct)"
        )
    return out


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)


def timestamp_to_proto(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """``value`` as a protobuf Timestamp (a naive value taken as UTC, as ``FromDatetime``
    does), without ``FromDatetime``'s detour through a time tuple: this runs for every hit."""
    if value is None:
        return None
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    return timestamp_pb2.Timestamp(
        seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000
    )


def node_to_proto(
    record: domain.NodeRecord, *, include_body: bool = True, vectors: Sequence[VectorRow] = ()
) -> cpb.Node:
    """A stored node as protobuf (body and vectors only when asked)."""
    message = cpb.Node()
    fill_node(message, record, include_body=include_body)
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


def fill_node(message: cpb.Node, record: domain.NodeRecord, *, include_body: bool) -> None:
    """Write ``record`` into an empty Node message in place (body and texts only when
    asked). In place, because a submessage passed to a constructor is copied: every hit of
    every search comes through here, and building in place costs a third."""
    message.id = record.id
    message.tenant = record.tenant
    if record.slug:
        message.slug = record.slug
    message.content_type = record.content_type
    message.title = record.title
    if include_body:
        message.body = record.body
        if record.texts:
            message.texts.update(record.texts)
    if record.tags:
        message.tags.extend(record.tags)
    message.version = record.version
    message.content_hash = record.content_hash
    fill_timestamp(message, "created_at", record.created_at)
    fill_timestamp(message, "updated_at", record.updated_at)
    if record.metadata:
        message.metadata.update(dict(record.metadata))


def fill_timestamp(message: Any, field: str, value: datetime | None) -> None:
    """``timestamp_to_proto`` in place (an unset field stays unset)."""
    if value is None:
        return
    delta = value - (_NAIVE_EPOCH if value.tzinfo is None else _EPOCH)
    stamp = getattr(message, field)
    stamp.seconds = delta.days * 86_400 + delta.seconds
    stamp.nanos = delta.microseconds * 1000


_NO_FILTER = domain.Filter()


def filter_from_proto(message: cpb.Filter, field: str, limits: Limits) -> domain.Filter:
    """A domain filter; values checked against the formats of what they match.

    Structural rules (ranges, one test per condition, key paths) are ``filters``'
    and are checked there, on the domain value.
    """
    if not message.ByteSize():  # most requests carry no filter: nothing to walk
        return _NO_FILTER
    for name in ("content_types", "tags_any", "tags_all", "tags_none"):
        validation.count(len(getattr(message, name)), f"{field}.{name}", limits.max_filter_values)
    for name in ("ids", "exclude_ids"):
        validation.count(len(getattr(message, name)), f"{field}.{name}", limits.max_filter_ids)
    for i, content_type in enumerate(message.content_types):
        validation.name(content_type, f"{field}.content_types[{i}]")
    for name in ("tags_any", "tags_all", "tags_none"):
        for i, tag in enumerate(getattr(message, name)):
            validation.tag(tag, f"{field}.{name}[{i}]")
    for name in ("ids", "exclude_ids"):
        for i, node_id in enumerate(getattr(message, name)):
            validation.node_id(node_id, f"{field}.{name}[{i}]")
    conditions = tuple(
        _condition(c, f"{field}.metadata[{i}]", limits) for i, c in enumerate(message.metadata)
    )
    return domain.Filter(
        content_types=tuple(message.content_types),
        tags_any=tuple(message.tags_any),
        tags_all=tuple(message.tags_all),
        tags_none=tuple(message.tags_none),
        metadata=conditions,
        created=_time_range(message.created, f"{field}.created")
        if message.HasField("created")
        else None,
        updated=_time_range(message.updated, f"{field}.updated")
        if message.HasField("updated")
        else None,
        ids=tuple(message.ids),
        exclude_ids=tuple(message.exclude_ids),
    )


def with_content_types(flt: domain.Filter, types: Sequence[str], field: str) -> domain.Filter:
    """``flt`` further restricted to ``types`` (a request's shorthand): both must hold."""
    if not types:
        return flt
    chosen = tuple(validation.name(t, f"{field}[{i}]") for i, t in enumerate(types))
    if flt.content_types:
        chosen = tuple(t for t in chosen if t in flt.content_types) or (NO_CONTENT_TYPE,)
    return replace(flt, content_types=chosen)


def _condition(
    message: cpb.MetadataCondition, field: str, limits: Limits
) -> domain.MetadataCondition:
    kind = message.WhichOneof("test")
    if kind is None:
        raise InvalidArgument(
            field, "needs one of equals, any_of, number_range, time_range, exists"
        )
    base: dict[str, Any] = {"key": message.key, "negate": message.negate}
    if kind == "equals":
        value = value_to_python(message.equals, f"{field}.equals")
        # equals=None means "not set" in the domain; JSON null is matched as any_of [null].
        base["equals" if value is not None else "any_of"] = value if value is not None else (None,)
    elif kind == "any_of":
        values = message.any_of.values
        validation.count(len(values), f"{field}.any_of", limits.max_filter_values)
        base["any_of"] = tuple(
            value_to_python(v, f"{field}.any_of[{i}]") for i, v in enumerate(values)
        )
    elif kind == "number_range":
        r = message.number_range
        bounds = {}
        for name in ("gte", "gt", "lte", "lt"):
            if r.HasField(name):
                bounds[name] = validation.number(getattr(r, name), f"{field}.number_range.{name}")
        base["number_range"] = domain.NumberRange(**bounds)
    elif kind == "time_range":
        base["time_range"] = _time_range(message.time_range, f"{field}.time_range")
    else:
        base["exists"] = message.exists
    return domain.MetadataCondition(**base)


def _time_range(message: cpb.TimeRange, field: str) -> domain.TimeRange:
    return domain.TimeRange(
        start=timestamp(message.start, f"{field}.start") if message.HasField("start") else None,
        end=timestamp(message.end, f"{field}.end") if message.HasField("end") else None,
    )
