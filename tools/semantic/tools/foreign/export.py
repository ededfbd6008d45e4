"""``semantic export-to``: the nodes of a tenant with their ``content`` vectors (the mean
of the node's chunks in the active space, L2-normalised), read from PostgreSQL
(``DATABASE_URL``) and written as

- ``faiss``: ``index.faiss`` (an ``IndexFlatIP``: inner product of unit vectors is cosine
  similarity, Semantic's own measure), ``ids.json`` and ``docs.jsonl`` (id, text, title,
  content_type, metadata, tags);
- ``jsonl``: one line per node, ``{id, vector, text, title, content_type, metadata, tags}``
  (``vector`` null for a node without one);
- ``chroma``: a persistent directory with one cosine collection (``--collection``,
  default ``semantic``).

FAISS and Chroma need a vector per item: nodes without one are skipped and counted.
Everything is read first, then written (a FAISS index is built in memory anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semantic.common.errors import InvalidArgument
from semantic.store.postgres import export_rows
from semantic.tools.foreign import chroma_dir, faiss_files, jsonl_files
from semantic.tools.foreign.formats import EXPORT_FORMATS


@dataclass
class ExportSummary:
    """What an export wrote."""

    format: str
    out: str
    nodes: int = 0
    written: int = 0
    skipped_without_vector: int = 0
    space: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-able values."""
        return dict(self.__dict__)


async def export(
    dsn: str,
    fmt: str,
    out: Path,
    *,
    tenant: str = "",
    content_type: str | None = None,
    collection: str = chroma_dir.DEFAULT_COLLECTION,
) -> ExportSummary:
    """Write the nodes of ``tenant`` (of ``content_type`` when given) to ``out``."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidArgument("format", f"{fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    conn = await export_rows.connect(dsn)
    try:
        space = await export_rows.export_space(conn)
        rows = [
            row
            async for row in export_rows.export_rows(
                conn, space, tenant=tenant, content_type=content_type
            )
        ]
    finally:
        await conn.close()
    summary = ExportSummary(
        fmt,
        str(out),
        nodes=len(rows),
        space={"id": f"s{space.id}", "model_id": space.model_id, "dim": space.dim},
    )
    if fmt == "jsonl":
        out.parent.mkdir(parents=True, exist_ok=True)
        summary.written = jsonl_files.write(out, (_doc(r, with_vector=True) for r in rows))
        return summary
    kept = [r for r in rows if r.vector is not None]
    summary.skipped_without_vector = len(rows) - len(kept)
    vectors = np.zeros((len(kept), space.dim), np.float32)
    for i, row in enumerate(kept):
        vectors[i] = _unit(row.vector)
    ids = [r.id for r in kept]
    if fmt == "faiss":
        faiss_files.write(out, ids, vectors, [_doc(r, with_vector=False) for r in kept])
    else:
        chroma_dir.write(
            out,
            collection_name=collection,
            ids=ids,
            vectors=vectors,
            documents=[r.body for r in kept],
            metadatas=[chroma_dir.flat_metadata(r.metadata, r.content_type, r.title) for r in kept],
        )
    summary.written = len(kept)
    return summary


def _unit(vector: Any) -> np.ndarray[Any, Any]:
    values = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def _doc(row: export_rows.ExportRow, *, with_vector: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": row.id}
    if with_vector:
        doc["vector"] = None if row.vector is None else [float(x) for x in _unit(row.vector)]
    doc.update(
        text=row.body,
        title=row.title,
        content_type=row.content_type,
        metadata=row.metadata,
        tags=row.tags,
    )
    return doc
