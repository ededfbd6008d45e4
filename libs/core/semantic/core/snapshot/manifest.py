"""The snapshot manifest (``manifest.json``): what a snapshot holds and how to check it.

A snapshot is a directory (or a ``.tar`` of one) with ``manifest.json`` and one Parquet
file per table. The manifest names the format and its version, the schema the rows were
read from, when and where from, the filters used, the embedding spaces exported and, per
file, its row count, size and sha256 (the manifest itself is not listed).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from semantic.common.errors import FailedPrecondition
from semantic.common.validation import unique_keys
from semantic.core.spaces import DEFAULT_INDEX_PRECISION, INDEX_PRECISIONS, IndexPrecision

FORMAT = "semantic-snapshot"
"""The ``format`` value of every snapshot manifest."""
FORMAT_VERSION = 1
"""The only ``format_version`` this code reads and writes."""
MANIFEST = "manifest.json"
"""The manifest's file name inside a snapshot directory."""

MAX_DIM = 2000
"""The largest vector dimension a space may have (the schema's CHECK)."""
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_FILE_NAME = re.compile(r"^[a-z_]+(-[0-9]+)?\.parquet$")


class SnapshotInvalid(FailedPrecondition):
    """The input is not a snapshot this code can import (wrong format, truncated,
    tampered, incompatible schema); nothing was written."""


def vectors_file(space_id: int) -> str:
    """The Parquet file holding the vectors of snapshot space ``space_id``."""
    return f"vectors-{int(space_id)}.parquet"


@dataclass(frozen=True)
class SpaceEntry:
    """An exported embedding space: its model, state and vector row count."""

    id: int
    model_id: str
    model_sha256: str
    dim: int
    version: int
    state: str
    active: bool
    vectors: int
    index_precision: IndexPrecision = DEFAULT_INDEX_PRECISION
    """Of the space's HNSW index; snapshots written before it was recorded: float32."""


@dataclass(frozen=True)
class FileEntry:
    """A data file: rows, size in bytes and sha256 of its content."""

    rows: int
    bytes: int
    sha256: str


@dataclass
class Manifest:
    """The content of ``manifest.json``."""

    schema_version: str
    created_at: str
    source: dict[str, str]
    tenants: list[str] | None = None
    content_types: list[str] | None = None
    spaces: list[SpaceEntry] = field(default_factory=list)
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest as indented, key-sorted JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """Parse and check a manifest; :class:`SnapshotInvalid` names what is wrong."""
        try:
            raw = json.loads(text, object_pairs_hook=unique_keys)
        except ValueError as exc:
            raise SnapshotInvalid(f"{MANIFEST} is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise SnapshotInvalid(f"{MANIFEST} is not a JSON object")
        if raw.get("format") != FORMAT:
            raise SnapshotInvalid(f"not a Semantic snapshot (format {raw.get('format')!r})")
        version = raw.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:  # true == 1 in Python
            raise SnapshotInvalid(
                f"snapshot format_version {raw.get('format_version')!r} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        try:
            manifest = cls(
                schema_version=_text(raw, "schema_version"),
                created_at=_text(raw, "created_at"),
                source={str(k): str(v) for k, v in dict(raw.get("source") or {}).items()},
                tenants=_names(raw.get("tenants")),
                content_types=_names(raw.get("content_types")),
                spaces=[SpaceEntry(**_space(s)) for s in raw.get("spaces") or []],
                files={str(k): FileEntry(**_file(v)) for k, v in dict(raw["files"]).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotInvalid(f"{MANIFEST} is malformed: {exc}") from exc
        for name, entry in manifest.files.items():
            if not _FILE_NAME.match(name):
                raise SnapshotInvalid(f"{MANIFEST} lists an unexpected file name {name!r}")
            if not _SHA256.match(entry.sha256) or entry.rows < 0 or entry.bytes < 0:
                raise SnapshotInvalid(f"{MANIFEST} has a malformed entry for {name}")
        for space in manifest.spaces:
            if vectors_file(space.id) not in manifest.files:
                raise SnapshotInvalid(f"space {space.id} has no {vectors_file(space.id)}")
        return manifest


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise SnapshotInvalid(f"{MANIFEST}: {key} is missing or not a string")
    return value


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("a filter is not a list of strings")
    if any(len(v) > 64 or _CONTROL.search(v) for v in value):
        raise ValueError("a filter holds a name too long or with control characters")
    return list(value)


def _space(value: Any) -> dict[str, Any]:
    space = dict(value)
    for key in ("id", "dim", "version", "vectors"):
        if not isinstance(space.get(key), int) or isinstance(space.get(key), bool):
            raise ValueError(f"space {key} is not an integer")
    for key in ("model_id", "model_sha256", "state"):
        if not isinstance(space.get(key), str):
            raise ValueError(f"space {key} is not a string")
    if not isinstance(space.get("active"), bool):
        raise ValueError("space active is not a boolean")
    precision = space.setdefault("index_precision", DEFAULT_INDEX_PRECISION)
    if precision not in INDEX_PRECISIONS:
        raise ValueError(f"space index_precision {precision!r} is not one of {INDEX_PRECISIONS}")
    if not (0 < space["id"] < 2**31 and 1 <= space["dim"] <= MAX_DIM):
        raise ValueError(f"space id {space['id']} or dim {space['dim']} out of range")
    return space


def _file(value: Any) -> dict[str, Any]:
    entry = dict(value)
    if not all(type(entry.get(k)) is int for k in ("rows", "bytes")):
        raise ValueError("file rows/bytes are not integers")
    if not isinstance(entry.get("sha256"), str):
        raise ValueError("file sha256 is not a string")
    return entry
