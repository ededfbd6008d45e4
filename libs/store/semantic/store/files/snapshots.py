"""Packed snapshots at a location: a local folder or any fsspec URL (``s3://bucket/prefix``
with ``s3fs`` installed, ``gs://`` with ``gcsfs``, ``memory://`` in one process, ...).

A snapshot is stored as ``NAME.tar`` (the snapshot's folder, named NAME, in an uncompressed
tar: the Parquet files are compressed already). It is streamed to a hidden
``.NAME.tar.partial-XXXX`` first and moved to its name once complete, so a listing never
shows part of a snapshot: on a local folder the move is a rename, on object stores a
server-side copy of the finished object. fsspec is blocking: every call runs in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fsspec
import structlog
from fsspec.core import url_to_fs

from semantic.common.errors import AlreadyExists, DependencyUnavailable, FailedPrecondition
from semantic.core.backup import SUFFIX, StoredSnapshot, scheduled_at
from semantic.core.snapshot import Manifest

log = structlog.get_logger(__name__)

PARTIAL = ".partial-"


class FsspecSnapshots:
    """The :class:`~semantic.core.backup.SnapshotStorage` of one location."""

    def __init__(self, location: str, storage_options: dict[str, Any] | None = None) -> None:
        try:
            self._fs, root = url_to_fs(location, **(storage_options or {}))
        except (ImportError, ValueError) as exc:
            # An unknown protocol, or one whose package is missing (s3:// without s3fs).
            raise FailedPrecondition(f"snapshot location {location!r}: {exc}") from exc
        self._root = root.rstrip("/") or "/"
        self._location = location

    @property
    def location(self) -> str:
        """The location as configured."""
        return self._location

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}{SUFFIX}"

    def _url(self, name: str) -> str:
        return f"{self._location.rstrip('/')}/{name}{SUFFIX}"

    async def put(self, name: str, folder: Path, manifest: Manifest) -> StoredSnapshot:
        """Stream ``folder`` as a tar to a hidden partial object, then move it in place."""
        with _location_errors(self._location):
            return await asyncio.to_thread(self._put, name, folder, manifest)

    def _put(self, name: str, folder: Path, manifest: Manifest) -> StoredSnapshot:
        target = self._path(name)
        if self._fs.exists(target):
            raise AlreadyExists("snapshot", name)
        self._fs.makedirs(self._root, exist_ok=True)
        partial = f"{self._root}/.{name}{SUFFIX}{PARTIAL}{secrets.token_hex(4)}"
        try:
            with self._fs.open(partial, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
                tar.add(folder, arcname=name)
            if self._fs.exists(target):  # taken meanwhile by another process
                raise AlreadyExists("snapshot", name)
            self._fs.mv(partial, target)
        except BaseException:
            _remove(self._fs, partial)
            raise
        size = int(self._fs.size(target) or 0)
        return StoredSnapshot(name, self._url(name), size, _created(name, manifest))

    async def stored(self) -> list[StoredSnapshot]:
        """Every ``*.tar`` at the location (hidden partial objects are not listed)."""
        with _location_errors(self._location):
            return await asyncio.to_thread(self._list)

    def _list(self) -> list[StoredSnapshot]:
        try:
            entries = self._fs.ls(self._root, detail=True)
        except FileNotFoundError:
            return []
        found = []
        for entry in entries:
            base = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            if entry.get("type") == "directory" or base.startswith("."):
                continue
            if not base.endswith(SUFFIX):
                continue
            name = base[: -len(SUFFIX)]
            if not _utf8(name):  # a file name of bytes no client could name or read back
                log.warning("snapshot_name_not_utf8", name=repr(name))
                continue
            found.append(
                StoredSnapshot(
                    name,
                    self._url(name),
                    int(entry.get("size") or 0),
                    scheduled_at(name) or _modified(entry),
                )
            )
        return found

    async def delete(self, name: str) -> None:
        """Remove ``name``.tar; nothing when it is gone."""
        with _location_errors(self._location):
            await asyncio.to_thread(_remove, self._fs, self._path(name))


@contextlib.contextmanager
def _location_errors(location: str) -> Iterator[None]:
    """A location that cannot be written as configured (no permission, a file where a
    folder should be) is FailedPrecondition; any other I/O failure (a network store away)
    is DependencyUnavailable: both name the location."""
    try:
        yield
    except (PermissionError, NotADirectoryError, FileExistsError, IsADirectoryError) as exc:
        raise FailedPrecondition(f"snapshot location {location!r}: {exc}") from exc
    except OSError as exc:
        raise DependencyUnavailable("snapshot location", f"{location!r}: {exc}") from exc


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path)


def _created(name: str, manifest: Manifest) -> datetime | None:
    taken = scheduled_at(name)
    if taken is not None:
        return taken
    try:
        return datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
    except ValueError:
        return None


def _modified(entry: dict[str, Any]) -> datetime | None:
    """When an object was written, from whichever key its filesystem reports."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = entry.get(key)
        if isinstance(value, datetime):
            return value if value.tzinfo else value.replace(tzinfo=UTC)
        if isinstance(value, int | float):
            return datetime.fromtimestamp(value, UTC)
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def _utf8(name: str) -> bool:
    """Whether ``name`` is text (a file name that is not UTF-8 comes back from the file
    system with surrogate escapes, which no protobuf or JSON string can carry)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
