"""Qdrant: a collection of a local-mode directory (``QdrantClient(path=...)``) or of a
server (``--url``), read with ``scroll`` (payloads and vectors, one page at a time).

- id: the point id (an unsigned integer or a UUID) as a string.
- vector: the unnamed vector, or the named one chosen with ``--vector-name`` (needed when
  the collection has several named vectors; sparse and multi-vectors are not read).
- text: the payload's ``--text-key`` string (default ``text``), taken out of the payload;
  LangChain's layout (``page_content`` + a ``metadata`` object) is understood too.
- metadata: the rest of the payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions

META_FILE = "meta.json"
COLLECTIONS_DIR = "collection"


def looks_local(path: Path) -> bool:
    """Whether ``path`` is a Qdrant local-mode directory."""
    return (path / META_FILE).is_file() and (path / COLLECTIONS_DIR).is_dir()


def read(path: Path | None, options: ReadOptions) -> ForeignSource:
    """The records of one collection, from a local directory or ``options.url``."""
    from qdrant_client import QdrantClient

    if options.url:
        qdrant = QdrantClient(url=options.url)
    elif path is not None and looks_local(path):
        qdrant = QdrantClient(path=str(path))
    else:
        problem = f"{path} is not a Qdrant local directory" if path else "is missing"
        raise InvalidArgument("path", f"{problem}: give a local directory or a server's --url")
    names = [c.name for c in qdrant.get_collections().collections]
    name = options.collection
    if name is None:
        if len(names) != 1:
            raise InvalidArgument(
                "collection", f"choose one of {', '.join(sorted(names)) or '(none)'}"
            )
        name = names[0]
    elif name not in names:
        raise InvalidArgument("collection", f"{name!r} is not a collection of the store")
    total = qdrant.count(name, exact=True).count
    return ForeignSource("qdrant", total, _records(qdrant, name, options))


def _records(qdrant: Any, name: str, options: ReadOptions) -> Iterator[ForeignRecord]:
    offset = None
    try:
        while True:
            points, offset = qdrant.scroll(
                name,
                limit=options.page_size,
                offset=offset,
                with_payload=True,
                with_vectors=True,
            )
            for point in points:
                yield _record(point, options)
            if offset is None:
                return
    finally:
        qdrant.close()


def _record(point: Any, options: ReadOptions) -> ForeignRecord:
    record_id = str(point.id)
    payload = dict(point.payload or {})
    text = payload.pop(options.text_key, None)
    if text is None and "page_content" in payload:
        text = payload.pop("page_content")
        inner = payload.pop("metadata", None)
        if isinstance(inner, dict):
            payload = {**payload, **inner}
    if text is not None and not isinstance(text, str):
        raise InvalidArgument(f"point {record_id}.payload.{options.text_key}", "must be a string")
    return ForeignRecord(
        id=record_id,
        vector=_vector(point.vector, record_id, options.vector_name),
        text=text,
        metadata=payload,
    )


def _vector(value: Any, record_id: str, wanted: str | None) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        dense = {k: v for k, v in value.items() if isinstance(v, list) and _flat(v)}
        if wanted is None:
            if len(dense) > 1:
                raise InvalidArgument(
                    "vector_name",
                    f"point {record_id} has named vectors {', '.join(sorted(dense))}: "
                    "choose one with --vector-name",
                )
            value = next(iter(dense.values()), None)
        else:
            value = dense.get(wanted)
        if value is None:
            return None
    if not isinstance(value, list) or not _flat(value):
        return None
    return np.asarray(value, dtype=np.float32)


def _flat(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) for v in values)
