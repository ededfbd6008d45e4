"""The formats ``semantic import-from`` reads, and ``auto`` detection from the path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign import (
    annoy_files,
    chroma_dir,
    faiss_files,
    jsonl_files,
    parquet_files,
    pgvector_source,
    qdrant_source,
)
from semantic.tools.foreign.records import ForeignSource, ReadOptions

FORMATS = ("faiss", "annoy", "chroma", "qdrant", "pgvector", "jsonl", "parquet")
"""What import-from reads (``auto`` detects one of them)."""
EXPORT_FORMATS = ("faiss", "jsonl", "chroma")
"""What export-to writes."""


def detect(path: Path) -> str:
    """The format of ``path``: a directory by the files it holds (``index.faiss``,
    ``index.ann``, ``chroma.sqlite3``, Qdrant's ``meta.json`` + ``collection/``), a file by
    its suffix (``.faiss``, ``.ann``, ``.jsonl`` / ``.ndjson``, ``.parquet``)."""
    if path.is_dir():
        for marker, name in (
            ("index.faiss", "faiss"),
            ("index.ann", "annoy"),
            ("chroma.sqlite3", "chroma"),
        ):
            if (path / marker).is_file():
                return name
        if qdrant_source.looks_local(path):
            return "qdrant"
    elif path.is_file():
        suffixes = {".faiss": "faiss", ".ann": "annoy", ".jsonl": "jsonl", ".ndjson": "jsonl"}
        suffixes[".parquet"] = "parquet"
        if path.suffix.lower() in suffixes:
            return suffixes[path.suffix.lower()]
    else:
        raise InvalidArgument("path", f"{path} does not exist")
    raise InvalidArgument("format", f"cannot tell the format of {path}: name it ({FORMATS})")


def open_source(fmt: str, path: Path | None, options: ReadOptions) -> ForeignSource:
    """The records of ``path`` in format ``fmt`` (``auto``: detected)."""
    if fmt == "qdrant":
        return qdrant_source.read(path, options)
    if fmt == "pgvector" or (fmt == "auto" and path is None and options.source_dsn):
        return pgvector_source.read(options)
    if path is None:
        raise InvalidArgument("path", "is required for this format")
    if fmt == "auto":
        fmt = detect(path)
    readers: dict[str, Callable[[Path, ReadOptions], ForeignSource]] = {
        "faiss": faiss_files.read,
        "annoy": annoy_files.read,
        "chroma": chroma_dir.read,
        "jsonl": jsonl_files.read,
        "parquet": parquet_files.read,
        "qdrant": qdrant_source.read,
    }
    if fmt not in readers:
        raise InvalidArgument("format", f"{fmt!r} is not one of auto, {', '.join(FORMATS)}")
    return readers[fmt](path, options)
