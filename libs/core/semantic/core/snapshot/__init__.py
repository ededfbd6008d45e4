"""Portable snapshots: Semantic's own export format (a manifest and Parquet files).

The format (see README_vector.md, "Snapshots: export, import, backup") is described by
:mod:`.manifest`; :mod:`.verify` checks a snapshot before anything is written and
:mod:`.plan` holds the pure decisions of an import (schema compatibility, which database
space receives a snapshot space's vectors). Reading and writing rows is the store's job.
"""

from semantic.core.snapshot.manifest import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    FileEntry,
    Manifest,
    SnapshotInvalid,
    SpaceEntry,
    vectors_file,
)
from semantic.core.snapshot.plan import (
    DbSpace,
    ImportReport,
    check_schema,
    map_spaces,
    replace_scope,
)
from semantic.core.snapshot.verify import HashingWriter, file_digest, verify_snapshot

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "DbSpace",
    "FileEntry",
    "HashingWriter",
    "ImportReport",
    "Manifest",
    "SnapshotInvalid",
    "SpaceEntry",
    "check_schema",
    "file_digest",
    "map_spaces",
    "replace_scope",
    "vectors_file",
    "verify_snapshot",
]
