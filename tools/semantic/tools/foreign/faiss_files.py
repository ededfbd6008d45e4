"""FAISS: a directory with ``index.faiss`` (``faiss.write_index``), ``ids.json`` (a JSON
array of strings, one per vector in index order) and optionally ``docs.jsonl`` (one
``{"id", "text", "metadata", "title"?, "content_type"?}`` per line, any order).

FAISS keeps no ids of its own beyond positions, nor any text, hence the two side files.
Vectors are read back with ``reconstruct_n``: exact for flat indexes (``IndexFlatIP``,
``IndexFlatL2``), ``IndexHNSWFlat`` and IVF-flat indexes (``IndexIVFFlat``, after
``make_direct_map``); approximations for compressed ones (PQ, SQ), which are better
re-embedded from their text (``--no-keep-vectors``). An index that cannot reconstruct at
all (for example a bare ``IndexIDMap``) yields records without vectors: their texts are
embedded, and records without text are errors.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign import jsonl_files
from semantic.tools.foreign.jsonl_files import from_row
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions, read_json

log = structlog.get_logger(__name__)

INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
DOCS_FILE = "docs.jsonl"


def read(path: Path, options: ReadOptions) -> ForeignSource:
    """The records of a FAISS directory (or of its ``index.faiss``, the side files next to
    it)."""
    import faiss

    folder = path.parent if path.is_file() else path
    index_file = path if path.is_file() else path / INDEX_FILE
    if not index_file.is_file():
        raise InvalidArgument("path", f"{index_file} does not exist")
    ids = _ids(folder / IDS_FILE)
    index = faiss.read_index(str(index_file))
    if len(ids) != index.ntotal:
        raise InvalidArgument(
            IDS_FILE, f"holds {len(ids)} ids but {index_file.name} has {index.ntotal} vectors"
        )
    docs = _docs(folder / DOCS_FILE)
    return ForeignSource("faiss", len(ids), _records(index, ids, docs, options.page_size))


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise InvalidArgument("path", f"{path} does not exist (a JSON array of ids)")
    ids = read_json(path)
    if not isinstance(ids, list) or not all(isinstance(i, str | int) for i in ids):
        raise InvalidArgument(IDS_FILE, "must be a JSON array of strings")
    return [str(i) for i in ids]


def _docs(path: Path) -> dict[str, dict[str, Any]]:
    docs: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return docs
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidArgument(f"{DOCS_FILE}:{number}", f"is not JSON: {exc}") from exc
            if not isinstance(row, dict) or "id" not in row:
                raise InvalidArgument(f"{DOCS_FILE}:{number}", "must be an object with an id")
            docs[str(row["id"])] = row
    return docs


def _reconstructor(index: Any) -> Any:
    """A function (start, count) -> vectors, or None when the index cannot give them back."""
    import faiss

    with contextlib.suppress(RuntimeError):  # raised for an index that is not IVF
        faiss.extract_index_ivf(index).make_direct_map()
    try:
        index.reconstruct_n(0, min(1, index.ntotal))
    except RuntimeError as exc:
        log.warning("faiss_no_reconstruct", index=type(index).__name__, error=str(exc)[:200])
        return None
    return index.reconstruct_n


def _records(
    index: Any, ids: list[str], docs: dict[str, dict[str, Any]], page: int
) -> Iterator[ForeignRecord]:
    reconstruct = _reconstructor(index)
    for start in range(0, len(ids), page):
        count = min(page, len(ids) - start)
        vectors = reconstruct(start, count) if reconstruct is not None else None
        for offset in range(count):
            record_id = ids[start + offset]
            doc = docs.get(record_id, {"id": record_id})
            record = from_row({**doc, "vector": None}, f"{DOCS_FILE}[{record_id!r}]")
            if vectors is not None:
                record.vector = np.asarray(vectors[offset], dtype=np.float32)
            yield record


def write(folder: Path, ids: list[str], vectors: np.ndarray[Any, Any], docs: list[Any]) -> None:
    """Write an ``IndexFlatIP`` of ``vectors`` (rows L2-normalised, so inner product is
    cosine similarity), ``ids.json`` and ``docs.jsonl`` into ``folder``."""
    import faiss

    folder.mkdir(parents=True, exist_ok=True)
    index = faiss.IndexFlatIP(int(vectors.shape[1]))
    if len(ids):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    faiss.write_index(index, str(folder / INDEX_FILE))
    (folder / IDS_FILE).write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    jsonl_files.write(folder / DOCS_FILE, docs)
