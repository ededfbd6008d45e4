"""Snapshot import, one file at a time: a Parquet file's rows (of the tenants in scope)
COPYed into a temporary table, refused as :class:`SnapshotInvalid` naming the file when
they break a rule the manifest's checksums cannot vouch for: a key or ``version`` column
missing, another row count than the manifest's, a tenant the manifest does not list, a key
given twice. :mod:`semantic.store.postgres.snapshot_load` applies the tables."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from semantic.core.snapshot import Manifest, SnapshotInvalid
from semantic.store.postgres.snapshot import TABLES

Progress = Callable[[str, int], Awaitable[None]]
"""Awaited after each batch loaded: the file's name and the batch's row count."""


async def load_file(
    conn: asyncpg.Connection,
    folder: Path,
    manifest: Manifest,
    file: str,
    *,
    temp: str,
    like: str,
    tenants: Sequence[str] | None,
    batch_size: int,
    progress: Progress | None,
) -> None:
    """COPY ``folder / file`` (the rows of ``tenants``, all when None) into a new
    temporary table ``temp`` shaped ``LIKE like``, dropped at commit."""

    await conn.execute(f"CREATE TEMP TABLE {temp} (LIKE {like} INCLUDING DEFAULTS) ON COMMIT DROP")
    table_columns = {
        r["attname"]
        for r in await conn.fetch(
            "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass"
            " AND attnum > 0 AND NOT attisdropped",
            temp,
        )
    }
    parquet = pq.ParquetFile(folder / file)
    columns = [c for c in parquet.schema_arrow.names if c in table_columns]
    missing = sorted(_REQUIRED.get(file, {"tenant", *_key_of(file)}) - set(columns))
    if missing:
        raise SnapshotInvalid(f"{file} has no {', '.join(missing)} column")
    listed = manifest.files[file].rows if file in manifest.files else None
    if listed is not None and parquet.metadata.num_rows != listed:
        raise SnapshotInvalid(
            f"{file} holds {parquet.metadata.num_rows} rows; the manifest says {listed}"
        )
    for read in parquet.iter_batches(batch_size=batch_size, columns=columns):
        batch = read
        if tenants is not None:
            batch = read.filter(pc.is_in(read.column("tenant"), pa.array(tenants)))
        if batch.num_rows:
            await conn.copy_records_to_table(temp, records=_records(batch), columns=columns)
        if progress is not None:
            await progress(file, batch.num_rows)
    listed_tenants = manifest.tenants
    if listed_tenants is not None and await conn.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {temp} WHERE tenant <> ALL($1::text[]))",
        listed_tenants,
    ):  # rows the manifest does not declare: a replace would not clear their tenant
        raise SnapshotInvalid(f"{file} holds rows of a tenant its manifest does not list")
    key = _key_of(file)
    if key:  # a key twice would be dropped by ON CONFLICT DO NOTHING without a word
        columns_sql = ", ".join(key)
        twice = await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {temp} GROUP BY {columns_sql} HAVING count(*) > 1)"
        )
        if twice:
            raise SnapshotInvalid(f"{file} holds one row twice (a key repeats: {columns_sql})")


_KEYS = {table.file: table.key for table in TABLES}
_VECTOR_KEY = ("tenant", "node_id", "name", "chunk")


def _key_of(file: str) -> tuple[str, ...]:
    """The primary key of the table a snapshot file fills (a vectors file: a vector table's)."""
    if re.fullmatch(r"vectors-[0-9]+\.parquet", file):
        return _VECTOR_KEY
    return _KEYS.get(file, ())


_REQUIRED = {
    table.file: {"tenant", *table.key, *({"version"} & set(table.schema.names))} for table in TABLES
}
"""Columns a snapshot file must have: its key and its version (a column missing from an
older format takes its default, but a version of 0 for every row would let any older
write replace the restored content)."""


def _records(batch: pa.RecordBatch) -> list[tuple[object, ...]]:
    columns = [batch.column(i) for i in range(batch.num_columns)]
    values = [
        list(c.flatten().to_numpy(zero_copy_only=False).reshape(len(c), c.type.list_size))
        if pa.types.is_fixed_size_list(c.type)
        else c.to_pylist()
        for c in columns
    ]  # fmt: skip
    return list(zip(*values, strict=True))
