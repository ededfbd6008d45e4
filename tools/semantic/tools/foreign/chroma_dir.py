"""Chroma: a persistent directory (``chromadb.PersistentClient(path)``), read with
Chroma's own client, one page of ``get(include=[embeddings, documents, metadatas])`` at a
time. The collection is ``--collection``, or the only one. Chroma's ``documents`` are the
texts; its metadata values are strings, numbers and booleans.

The exporter writes a collection of the same shape (cosine space): node metadata goes into
Chroma's metadata with the content type (key ``content_type``) and the title (``title``)
added, nested values JSON-encoded as strings (Chroma only holds flat values)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions

DATABASE_FILE = "chroma.sqlite3"
DEFAULT_COLLECTION = "semantic"


def client(path: Path) -> Any:
    """A Chroma client on ``path`` with telemetry off."""
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def read(path: Path, options: ReadOptions) -> ForeignSource:
    """The records of one collection of a Chroma persistent directory."""
    if not (path / DATABASE_FILE).is_file():
        raise InvalidArgument("path", f"{path} is not a Chroma directory (no {DATABASE_FILE})")
    chroma = client(path)
    names = [c if isinstance(c, str) else c.name for c in chroma.list_collections()]
    name = options.collection
    if name is None:
        if len(names) != 1:
            raise InvalidArgument(
                "collection", f"choose one of {', '.join(sorted(names)) or '(none)'}"
            )
        name = names[0]
    elif name not in names:
        raise InvalidArgument("collection", f"{name!r} is not in {path}")
    collection = chroma.get_collection(name, embedding_function=None)
    return ForeignSource("chroma", collection.count(), _records(collection, options.page_size))


def _records(collection: Any, page: int) -> Iterator[ForeignRecord]:
    offset = 0
    while True:
        got = collection.get(
            include=["embeddings", "documents", "metadatas"], limit=page, offset=offset
        )
        ids = got["ids"]
        if not ids:
            return
        embeddings = got.get("embeddings")
        documents = got.get("documents") or [None] * len(ids)
        metadatas = got.get("metadatas") or [None] * len(ids)
        for i, record_id in enumerate(ids):
            vector = None if embeddings is None else embeddings[i]
            yield ForeignRecord(
                id=str(record_id),
                vector=None if vector is None else np.asarray(vector, dtype=np.float32),
                text=documents[i],
                metadata=dict(metadatas[i] or {}),
            )
        offset += len(ids)


def flat_metadata(metadata: dict[str, Any], content_type: str, title: str) -> dict[str, Any]:
    """Node metadata as Chroma metadata: flat values kept, others JSON-encoded, with the
    content type and title (which the importer takes back out)."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        scalar = value is None or isinstance(value, str | int | float | bool)
        flat[key] = value if scalar and value is not None else json.dumps(value)
    flat["content_type"] = content_type
    if title:
        flat["title"] = title
    return flat


def write(
    path: Path,
    *,
    collection_name: str,
    ids: list[str],
    vectors: np.ndarray[Any, Any],
    documents: list[str],
    metadatas: list[dict[str, Any]],
    batch: int = 1000,
) -> None:
    """Add the items to a (new or existing) cosine collection of a persistent directory."""
    path.mkdir(parents=True, exist_ok=True)
    collection = client(path).get_or_create_collection(
        collection_name, embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    for start in range(0, len(ids), batch):
        end = start + batch
        collection.upsert(
            ids=ids[start:end],
            embeddings=vectors[start:end],
            documents=documents[start:end],
            metadatas=metadatas[start:end],
        )
