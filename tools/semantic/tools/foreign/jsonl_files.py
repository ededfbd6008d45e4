"""JSON Lines: one JSON object per line, ``{"id", "vector"?, "text"?, "metadata"?,
"title"?, "content_type"?}`` (what ``semantic export-to jsonl`` writes). Blank lines are
skipped; a line that is not an object is an error naming its line number."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.records import (
    ForeignRecord,
    ForeignSource,
    ReadOptions,
    as_vector,
    parse_metadata,
)


def read(path: Path, options: ReadOptions) -> ForeignSource:
    """The records of a JSONL file."""
    del options
    if not path.is_file():
        raise InvalidArgument("path", f"{path} is not a file")
    with path.open(encoding="utf-8") as counting:
        total = sum(1 for line in counting if line.strip())
    return ForeignSource("jsonl", total, _records(path))


def _records(path: Path) -> Iterator[ForeignRecord]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise InvalidArgument(where, f"is not JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise InvalidArgument(where, "is not a JSON object")
            yield from_row(row, where)


def from_row(row: dict[str, Any], where: str) -> ForeignRecord:
    """A record from a row with the JSONL / Parquet columns."""
    raw_id = row.get("id")
    if raw_id is None or isinstance(raw_id, bool | float | dict | list):
        raise InvalidArgument(f"{where}.id", "must be a string or an integer")
    text = row.get("text")
    if text is not None and not isinstance(text, str):
        raise InvalidArgument(f"{where}.text", "must be a string")
    title = row.get("title")
    content_type = row.get("content_type")
    return ForeignRecord(
        id=str(raw_id),
        vector=as_vector(row.get("vector"), f"{where}.vector"),
        text=text,
        metadata=parse_metadata(row.get("metadata"), f"{where}.metadata"),
        content_type=content_type if isinstance(content_type, str) else None,
        title=title if isinstance(title, str) else None,
    )


def write(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` (already in the JSONL shape) to ``path``; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")
            count += 1
    return count
