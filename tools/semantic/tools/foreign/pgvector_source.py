"""pgvector: the rows of a table (or of a query) in another PostgreSQL database, such as an
application's own `documents` table or a Supabase project.

With ``--table`` the columns are named by options (defaults: ``id``, ``embedding``,
``content``, ``metadata``, no title or content-type column; the LangChain / Supabase
layout). A column left at its default that the table does not have is skipped (a table
without ``metadata`` is fine); a column named explicitly that is missing is an error. With
``--query`` the user's own SELECT must return ``id`` and any of ``vector``, ``text``,
``title``, ``content_type``, ``metadata``.

Values: ids of any type as text; vectors from ``vector``, ``halfvec`` (read as float32) or
``real[]`` / ``double precision[]`` columns; metadata from ``jsonb``, ``json`` or JSON text.
Everything is read in one REPEATABLE READ, read-only transaction (the source is never
written, whatever ``--query`` says), through a server-side cursor a page at a time, by a
thread with an event loop of its own that hands the records over through a bounded queue:
memory stays bounded whatever the table's size.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from semantic.common.errors import DependencyUnavailable, InvalidArgument
from semantic.tools.foreign.records import ForeignRecord, ForeignSource, ReadOptions

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]{0,62}")
COLUMNS = ("id", "vector", "text", "metadata", "title", "content_type")
DEFAULTS = {"id": "id", "vector": "embedding", "text": "content", "metadata": "metadata"}
CONNECT_TIMEOUT_S = 30.0
_END = object()


@dataclass(frozen=True)
class TableColumns:
    """The source table and the column of each record field (None: not read)."""

    table: str
    id: str = "id"
    vector: str | None = "embedding"
    text: str | None = "content"
    metadata: str | None = "metadata"
    title: str | None = None
    content_type: str | None = None


def quoted(name: str, option: str) -> str:
    """``name`` (``table``, ``schema.table`` or a column) as a quoted SQL identifier;
    InvalidArgument naming ``option`` when it is not one."""
    parts = name.split(".")
    if not 1 <= len(parts) <= 2 or not all(IDENTIFIER.fullmatch(p) for p in parts):
        raise InvalidArgument(option, f"{name!r} is not a table or column name")
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


def read(options: ReadOptions) -> ForeignSource:
    """The records of ``options.source_dsn``: its ``table`` or its ``query``. Connects,
    checks the columns and counts the rows before returning (a wrong DSN, table or column
    is an error here, before anything is written)."""
    if not options.source_dsn:
        raise InvalidArgument("source_dsn", "name the database to read (--source-dsn)")
    if bool(options.table) == bool(options.query):
        raise InvalidArgument("table", "give either --table or --query")
    reader = _Reader(options)
    total = reader.start()
    return ForeignSource("pgvector", total, reader.records())


class _Reader:
    """The thread reading the source and the queue it fills."""

    def __init__(self, options: ReadOptions) -> None:
        self._options = options
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(2 * options.page_size, 64))
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._total: int | None = None
        self._error: BaseException | None = None

    def start(self) -> int | None:
        threading.Thread(target=self._run, name="pgvector-source", daemon=True).start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self._total

    def records(self) -> Iterator[ForeignRecord]:
        try:
            while (item := self._queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._stop.set()  # the consumer stopped early: the reader gives up

    def _run(self) -> None:
        try:
            asyncio.run(self._read())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = _readable(exc)
                self._ready.set()
            else:
                self._queue.put(_readable(exc))
            return
        self._queue.put(_END)

    async def _read(self) -> None:
        import asyncpg

        try:
            conn = await asyncpg.connect(self._options.source_dsn, timeout=CONNECT_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            raise DependencyUnavailable("source database", str(exc)) from exc
        try:
            await _codecs(conn)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                sql = await self._select(conn)
                self._total = int(await conn.fetchval(f"SELECT count(*) FROM ({sql}) q"))
                self._ready.set()
                cursor = await conn.cursor(sql)
                number = 0
                while rows := await cursor.fetch(self._options.page_size):
                    for row in rows:
                        if self._stop.is_set():
                            return
                        self._queue.put(_record(dict(row), number))
                        number += 1
        finally:
            await conn.close()

    async def _select(self, conn: Any) -> str:
        """The SELECT whose columns are named after the record's fields."""
        if self._options.query:
            sql = self._options.query.strip().rstrip(";")
            found = await _columns_of(conn, sql, "query")
            if "id" not in found:
                raise InvalidArgument("query", f"returns no `id` column (it returns {found})")
            picked = [c for c in COLUMNS if c in found]
            return "SELECT " + ", ".join(f'q."{c}"' for c in picked) + f" FROM ({sql}) q"
        assert self._options.table is not None
        table = quoted(self._options.table, "table")
        found = await _columns_of(conn, f"SELECT * FROM {table}", "table")
        chosen = []
        for field in COLUMNS:
            name = self._options.columns.get(field)
            explicit = name is not None
            name = name if explicit else DEFAULTS.get(field)
            if not name:
                if field == "id":
                    raise InvalidArgument("id_column", "the id column cannot be turned off")
                continue
            if name not in found:
                if explicit or field == "id":
                    raise InvalidArgument(
                        f"{field}_column",
                        f"{self._options.table} has no column {name!r} (it has {found})",
                    )
                continue
            chosen.append(f'{quoted(name, f"{field}_column")} AS "{field}"')
        return f"SELECT {', '.join(chosen)} FROM {table}"


async def _codecs(conn: Any) -> None:
    """pgvector's codecs when the source has the extension (a table of real[] needs none)."""
    from pgvector.asyncpg import register_vector

    try:
        await register_vector(conn)
    except ValueError:  # no vector type in this database
        return


async def _columns_of(conn: Any, sql: str, option: str) -> list[str]:
    """The columns ``sql`` returns; InvalidArgument naming ``option`` when it fails."""
    import asyncpg

    try:
        statement = await conn.prepare(f"SELECT * FROM ({sql}) q LIMIT 0")
    except asyncpg.PostgresError as exc:
        raise InvalidArgument(option, str(exc)) from exc
    return [a.name for a in statement.get_attributes()]


def _record(row: dict[str, Any], number: int) -> ForeignRecord:
    where = f"row {number}"
    if row.get("id") is None:
        raise InvalidArgument("id", f"{where} has a NULL id")
    return ForeignRecord(
        id=str(row["id"]),
        vector=_vector(row.get("vector"), where),
        text=None if row.get("text") is None else str(row["text"]),
        metadata=_metadata(row.get("metadata"), where),
        content_type=None if row.get("content_type") is None else str(row["content_type"]),
        title=None if row.get("title") is None else str(row["title"]),
    )


def _vector(value: Any, where: str) -> np.ndarray[Any, Any] | None:
    if value is None:
        return None
    if hasattr(value, "to_numpy"):  # pgvector's HalfVector / SparseVector
        value = value.to_numpy()
    elif isinstance(value, str):  # a vector column read without the codec: "[1,2,3]"
        value = json.loads(value)
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument("vector", f"{where}: not a vector ({exc})") from exc
    if array.ndim != 1:
        raise InvalidArgument("vector", f"{where}: not a one-dimensional vector")
    return array


def _metadata(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidArgument("metadata", f"{where}: not JSON ({exc})") from exc
    if not isinstance(value, dict):
        raise InvalidArgument("metadata", f"{where}: not a JSON object")
    return value


def _readable(exc: BaseException) -> BaseException:
    """Driver errors as the CLI's errors (a message naming the source), others as they are."""
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        return InvalidArgument("source_dsn", f"the source database: {exc}")
    return exc
