"""Parquet: columns ``id`` (string or integer), and optionally ``vector`` (a list of
floats), ``text``, ``title``, ``content_type`` and ``metadata`` (a struct, a map or a JSON
string). Read one row group batch at a time, so large files stream."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.jsonl_files import from_row
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions


def read(path: Path, options: ReadOptions) -> ForeignSource:
    """The records of a Parquet file."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InvalidArgument("path", f"{path} is not a file")
    parquet = pq.ParquetFile(path)
    if "id" not in parquet.schema_arrow.names:
        raise InvalidArgument("path", f"{path} has no `id` column")
    return ForeignSource(
        "parquet", parquet.metadata.num_rows, _records(parquet, path.name, options.page_size)
    )


def _records(parquet: Any, name: str, batch_size: int) -> Iterator[ForeignRecord]:
    row_number = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield from_row(row, f"{name}[{row_number}]")
            row_number += 1
