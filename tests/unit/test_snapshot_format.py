"""The snapshot format's pure parts: the manifest, file verification, the schema rule,
space matching and the replace scope."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from semantic.core.snapshot import (
    DbSpace,
    FileEntry,
    HashingWriter,
    ImportReport,
    Manifest,
    SnapshotInvalid,
    SpaceEntry,
    check_schema,
    map_spaces,
    replace_scope,
    verify_snapshot,
)

SPACE = SpaceEntry(
    id=3, model_id="m", model_sha256="a" * 64, dim=4, version=1, state="active", active=True,
    vectors=2,
)  # fmt: skip


def _write(folder: Path, files: dict[str, bytes], **changes: object) -> Manifest:
    folder.mkdir(exist_ok=True)
    entries = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        entries[name] = FileEntry(1, len(data), hashlib.sha256(data).hexdigest())
    manifest = Manifest(
        schema_version="003_recommend", created_at="2026-12-04T19:00:00Z",
        source={"host": "db"}, spaces=[SPACE], files=entries,
    )  # fmt: skip
    raw = json.loads(manifest.to_json())
    raw.update(changes)
    (folder / "manifest.json").write_text(json.dumps(raw))
    return manifest


FILES = {"nodes.parquet": b"nodes", "vectors-3.parquet": b"vectors"}


def test_a_written_snapshot_verifies_and_its_manifest_round_trips(tmp_path: Path) -> None:
    written = _write(tmp_path, FILES)
    read = verify_snapshot(tmp_path)
    assert read == written
    assert Manifest.from_json(read.to_json()) == read


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"format": "other"}, "not a Semantic snapshot"),
        ({"format_version": 2}, "format_version"),
        ({"schema_version": ""}, "schema_version"),
        ({"spaces": [{"id": 3}]}, "malformed"),
        ({"tenants": ["a\x00"]}, "malformed"),
    ],
)
def test_a_wrong_manifest_is_refused(
    tmp_path: Path, damage: dict[str, object], message: str
) -> None:
    _write(tmp_path, FILES, **damage)
    with pytest.raises(SnapshotInvalid, match=message):
        verify_snapshot(tmp_path)


def test_missing_truncated_tampered_and_extra_files_are_refused(tmp_path: Path) -> None:
    _write(tmp_path, FILES)
    (tmp_path / "nodes.parquet").write_bytes(b"node")
    with pytest.raises(SnapshotInvalid, match="truncated"):
        verify_snapshot(tmp_path)
    (tmp_path / "nodes.parquet").write_bytes(b"NODES")
    with pytest.raises(SnapshotInvalid, match="sha256"):
        verify_snapshot(tmp_path)
    (tmp_path / "nodes.parquet").unlink()
    with pytest.raises(SnapshotInvalid, match="missing"):
        verify_snapshot(tmp_path)
    _write(tmp_path, FILES)
    (tmp_path / "stray.parquet").write_bytes(b"")
    with pytest.raises(SnapshotInvalid, match="not listed"):
        verify_snapshot(tmp_path)
    with pytest.raises(SnapshotInvalid, match=r"no manifest\.json"):
        verify_snapshot(tmp_path / "stray.parquet")


def test_a_file_name_outside_the_format_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, FILES)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["files"]["../nodes.parquet"] = raw["files"]["nodes.parquet"]
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(SnapshotInvalid, match="unexpected file name"):
        verify_snapshot(tmp_path)


def test_the_schema_rule_accepts_the_same_or_an_older_migration() -> None:
    applied = ["001_meta", "002_content", "003_recommend"]
    check_schema("003_recommend", applied)
    check_schema("002_content", applied)
    with pytest.raises(SnapshotInvalid, match="newer"):
        check_schema("004_future", applied)
    with pytest.raises(SnapshotInvalid, match="no schema"):
        check_schema("003_recommend", [])


def _db(space_id: int, sha: str, *, active: bool, state: str = "active") -> DbSpace:
    return DbSpace(space_id, "m", sha, 4, 1, state, active)


def test_a_space_matches_on_model_sha_and_dimension() -> None:
    same = [_db(7, "b" * 64, active=True), _db(9, "a" * 64, active=False, state="ready")]
    assert map_spaces([SPACE], same, reembed=False) == ({3: 9}, [])
    retired = [_db(9, "a" * 64, active=False, state="retired")]
    assert map_spaces([SPACE], retired, reembed=False) == ({3: None}, [])
    assert map_spaces([SPACE], [], reembed=False) == ({}, [SPACE])
    assert map_spaces([SPACE], [], reembed=True) == ({3: None}, [])


def test_replace_clears_the_asked_tenants_else_the_exported_ones_else_all() -> None:
    manifest = Manifest(schema_version="x", created_at="y", source={}, tenants=["b"])
    assert replace_scope(manifest, ["a", "a"]) == ["a"]
    assert replace_scope(manifest, None) == ["b"]
    manifest.tenants = None
    assert replace_scope(manifest, None) is None


def test_the_report_counts_changes() -> None:
    report = ImportReport(mode="merge")
    report.nodes["unchanged"] = 4
    assert report.changed == 0
    report.tables["postings"] = 2
    assert report.as_dict()["changed"] == 2


def test_the_hashing_writer_hashes_what_it_writes() -> None:
    target = io.BytesIO()
    writer = HashingWriter(target)
    writer.write(b"abc")
    writer.write(memoryview(b"def"))
    assert (writer.size, writer.tell()) == (6, 6)
    assert writer.sha256 == hashlib.sha256(b"abcdef").hexdigest()
    assert target.getvalue() == b"abcdef"


def test_a_space_keeps_its_index_precision_and_older_manifests_read_as_float32(
    tmp_path: Path,
) -> None:
    half = SpaceEntry(**{**SPACE.__dict__, "index_precision": "half"})
    raw = json.loads(Manifest("003", "2026", {}, spaces=[half], files={}).to_json())
    assert raw["spaces"][0]["index_precision"] == "half"
    _write(tmp_path, FILES)
    older = json.loads((tmp_path / "manifest.json").read_text())
    del older["spaces"][0]["index_precision"]  # written before the field existed
    (tmp_path / "manifest.json").write_text(json.dumps(older))
    assert verify_snapshot(tmp_path).spaces[0].index_precision == "float32"
    older["spaces"][0]["index_precision"] = "quarter"
    with pytest.raises(SnapshotInvalid, match="index_precision"):
        Manifest.from_json(json.dumps(older))
