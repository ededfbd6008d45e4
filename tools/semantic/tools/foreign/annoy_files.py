"""Annoy: a directory with ``index.ann`` (``AnnoyIndex.save``) and ``meta.json``:
``{"dim": 384, "metric": "angular", "ids": ["a", ...], "docs": {"a": {"text", "metadata",
"title"?, "content_type"?}}}``. Annoy stores neither the dimension nor the metric in its
file, and identifies items by position only, hence ``meta.json``; ``ids[i]`` names the
item ``i``. Vectors are read back exactly with ``get_item_vector``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.jsonl_files import from_row
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions, read_json

INDEX_FILE = "index.ann"
META_FILE = "meta.json"
METRICS = ("angular", "euclidean", "manhattan", "hamming", "dot")


def read(path: Path, options: ReadOptions) -> ForeignSource:
    """The records of an Annoy directory (or of its ``index.ann``, ``meta.json`` beside)."""
    del options
    from annoy import AnnoyIndex

    folder = path.parent if path.is_file() else path
    index_file = path if path.is_file() else path / INDEX_FILE
    meta_file = folder / META_FILE
    if not index_file.is_file() or not meta_file.is_file():
        raise InvalidArgument("path", f"{folder} needs {INDEX_FILE} and {META_FILE}")
    meta = read_json(meta_file)
    if not isinstance(meta, dict):
        raise InvalidArgument(META_FILE, "must be a JSON object")
    dim, metric, ids = meta.get("dim"), meta.get("metric", "angular"), meta.get("ids")
    if not isinstance(dim, int) or dim < 1:
        raise InvalidArgument(f"{META_FILE}.dim", "must be a positive integer")
    if metric not in METRICS:
        raise InvalidArgument(f"{META_FILE}.metric", f"must be one of {', '.join(METRICS)}")
    if not isinstance(ids, list):
        raise InvalidArgument(f"{META_FILE}.ids", "must be a JSON array of ids")
    docs = meta.get("docs") or {}
    if not isinstance(docs, dict):
        raise InvalidArgument(f"{META_FILE}.docs", "must be an object keyed by id")
    index = AnnoyIndex(dim, metric)
    index.load(str(index_file))
    if index.get_n_items() != len(ids):
        raise InvalidArgument(
            f"{META_FILE}.ids",
            f"holds {len(ids)} ids but {index_file.name} has {index.get_n_items()} items",
        )
    return ForeignSource("annoy", len(ids), _records(index, [str(i) for i in ids], docs))


def _records(index: Any, ids: list[str], docs: dict[str, Any]) -> Iterator[ForeignRecord]:
    for position, record_id in enumerate(ids):
        doc = docs.get(record_id) or {}
        if not isinstance(doc, dict):
            raise InvalidArgument(f"{META_FILE}.docs[{record_id!r}]", "must be an object")
        record = from_row({**doc, "id": record_id, "vector": None}, f"{META_FILE}.docs")
        record.vector = np.asarray(index.get_item_vector(position), dtype=np.float32)
        yield record
