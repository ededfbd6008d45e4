"""Checking a snapshot directory before an import, and hashing files as they are written."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import BinaryIO

from semantic.core.snapshot.manifest import MANIFEST, Manifest, SnapshotInvalid

_CHUNK = 1 << 20


def file_digest(path: Path) -> tuple[int, str]:
    """Size and sha256 (hex) of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def verify_snapshot(folder: Path) -> Manifest:
    """The manifest of the snapshot in ``folder`` once every listed file is present with
    the size and sha256 the manifest records; :class:`SnapshotInvalid` otherwise. Files
    that the manifest does not list are refused too (a snapshot is written whole)."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise SnapshotInvalid(f"{folder} has no {MANIFEST}: not a Semantic snapshot")
    try:
        text = manifest_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SnapshotInvalid(f"{MANIFEST} is not UTF-8 text") from exc
    manifest = Manifest.from_json(text)
    if "nodes.parquet" not in manifest.files:
        raise SnapshotInvalid(f"{MANIFEST} lists no nodes.parquet")
    present = {p.name for p in folder.iterdir() if p.name != MANIFEST}
    extra = sorted(present - set(manifest.files))
    if extra:
        raise SnapshotInvalid(f"files not listed in {MANIFEST}: {', '.join(extra)}")
    for name, entry in sorted(manifest.files.items()):
        path = folder / name
        if not path.is_file():
            raise SnapshotInvalid(f"{name} is missing (truncated snapshot?)")
        size, sha = file_digest(path)
        if size != entry.bytes:
            raise SnapshotInvalid(
                f"{name} has {size} bytes, the manifest says {entry.bytes} (truncated?)"
            )
        if sha != entry.sha256:
            raise SnapshotInvalid(f"{name} does not match its sha256 (modified or corrupt)")
    return manifest


class HashingWriter(io.RawIOBase):
    """A writable binary file that hashes (sha256) and counts what goes through it, so a
    file's digest is known the moment it is closed, without reading it back."""

    def __init__(self, target: BinaryIO) -> None:
        super().__init__()
        self._target = target
        self._digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data).cast("B")
        self._digest.update(view)
        self._target.write(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        if not self._target.closed:
            self._target.flush()

    def close(self) -> None:
        if not self.closed:
            self._target.close()
        super().close()

    @property
    def sha256(self) -> str:
        """Hex digest of everything written so far."""
        return self._digest.hexdigest()
