"""The common shape of a record read from another vector store, and its mapping to a node.

Mapping (documented in README_vector.md, "Moving in from and out to other vector stores"):

- ``id`` -> node id, after ``id_prefix`` is put in front; an id that is not a valid node id
  (empty, over 256 characters, control characters) is an error naming the record.
- ``metadata`` -> node metadata; it must be a JSON object of JSON values (strings, finite
  numbers, booleans, null, lists, objects): anything else is refused, naming the key.
- content type: the string under ``content_type_key`` in the metadata (taken out of it),
  else the record's own ``content_type``, else the default (``document``).
- title: the string under ``title`` in the metadata (taken out of it), else the record's
  own ``title``, else empty.
- body: ``text``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semantic.common import validation
from semantic.common.errors import InvalidArgument

MAX_TITLE_CHARS = 1_000
"""The search service's default title limit (a longer title is cut, not refused)."""
MAX_BODY_CHARS = 1_000_000
"""The search service's default body limit."""


@dataclass
class ForeignRecord:
    """One item of another store: its id, its vector (None when the store kept none or it
    could not be read back), its text, its metadata, and a content type or title when the
    format has a place for them."""

    id: str
    vector: np.ndarray[Any, Any] | None
    text: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    content_type: str | None = None
    title: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """What some readers need besides a path: the Chroma or Qdrant collection (needed when
    the store holds several), the Qdrant named vector and server URL, the payload key
    holding the text (Qdrant), the page size of paged reads, and pgvector's source database,
    table or query and columns."""

    collection: str | None = None
    vector_name: str | None = None
    url: str | None = None
    text_key: str = "text"
    page_size: int = 256
    source_dsn: str | None = None
    table: str | None = None
    query: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    """pgvector: the column of each field given by the user (``id``, ``vector``, ``text``,
    ``metadata``, ``title``, ``content_type``; "" turns a default column off)."""


@dataclass
class ForeignSource:
    """The records of one store, read lazily, and how many there are when the store says."""

    format: str
    total: int | None
    records: Iterator[ForeignRecord]


@dataclass(frozen=True)
class MappingOptions:
    """How records become nodes (the CLI's ``--id-prefix``, ``--content-type-key`` and
    ``--content-type``)."""

    id_prefix: str = ""
    content_type_key: str = "content_type"
    default_content_type: str = "document"


@dataclass(frozen=True)
class MappedNode:
    """The node fields of one record, validated."""

    id: str
    content_type: str
    title: str
    body: str
    metadata: dict[str, Any]


def describe(record: ForeignRecord, position: int) -> str:
    """How errors name a record: its position in the source and its id."""
    return f"record {position} (id {record.id[:64]!r})"


def map_record(record: ForeignRecord, position: int, options: MappingOptions) -> MappedNode:
    """The node fields of ``record``; InvalidArgument naming the record when it cannot be
    stored as it is."""
    where = describe(record, position)
    node_id = validation.node_id(options.id_prefix + record.id, f"{where}.id")
    if not isinstance(record.metadata, dict):
        raise InvalidArgument(f"{where}.metadata", "must be a JSON object")
    metadata = dict(record.metadata)
    for key, value in metadata.items():
        check_json(value, f"{where}.metadata.{key}")
    content_type = _take_string(metadata, options.content_type_key, f"{where}.metadata")
    content_type = content_type or record.content_type or options.default_content_type
    validation.name(content_type, f"{where}.content_type")
    title = _take_string(metadata, "title", f"{where}.metadata") or record.title or ""
    title = validation.text(title[:MAX_TITLE_CHARS], f"{where}.title", MAX_TITLE_CHARS)
    body = validation.text(record.text or "", f"{where}.text", MAX_BODY_CHARS)
    return MappedNode(node_id, content_type, title, body, metadata)


def check_json(value: Any, where: str, depth: int = 0) -> None:
    """Refuse what JSON cannot hold faithfully: non-string keys, NaN and infinities, bytes,
    dates, numpy values and any other object (the error names the key path)."""
    if depth > validation.MAX_JSON_DEPTH:
        raise InvalidArgument(where, f"is nested deeper than {validation.MAX_JSON_DEPTH}")
    if value is None or isinstance(value, bool | str | int):
        if isinstance(value, str) and "\x00" in value:
            raise InvalidArgument(where, "must not contain NUL characters")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(where, f"{value} is not a JSON number")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(where, f"key {key!r} is not a string")
            check_json(item, f"{where}.{key}", depth + 1)
        return
    raise InvalidArgument(where, f"a {type(value).__name__} value is not JSON")


def parse_metadata(value: Any, where: str) -> dict[str, Any]:
    """A metadata column or field: an object, a JSON string holding one, or nothing."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise InvalidArgument(where, f"is not JSON: {exc}") from exc
    if isinstance(value, list) and all(isinstance(p, tuple) and len(p) == 2 for p in value):
        value = dict(value)  # a Parquet map column arrives as (key, value) pairs
    if not isinstance(value, dict):
        raise InvalidArgument(where, "must be a JSON object")
    return value


def read_json(path: Path) -> Any:
    """A JSON side file (ids.json, meta.json); InvalidArgument naming it when malformed."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise InvalidArgument(path.name, f"is not JSON: {exc}") from exc


def as_vector(value: Any, where: str) -> np.ndarray[Any, Any] | None:
    """A vector field (a list of numbers, an array) as float32, None when absent."""
    if value is None:
        return None
    try:
        vector = np.asarray(value, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(where, f"is not a list of numbers: {exc}") from exc
    return vector if vector.size else None


def _take_string(metadata: dict[str, Any], key: str, where: str) -> str | None:
    if key not in metadata:
        return None
    value = metadata[key]
    if not isinstance(value, str):
        raise InvalidArgument(f"{where}.{key}", "must be a string")
    del metadata[key]
    return value
