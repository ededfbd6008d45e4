"""The backups' decisions (names, when a scheduled snapshot is due, what the retention
removes) and the fsspec storage on a local folder and on fsspec's in-memory filesystem."""

from __future__ import annotations

import asyncio
import os
import tarfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from semantic.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from semantic.core.backup import (
    StoredSnapshot,
    checked_name,
    due,
    scheduled_at,
    snapshot_name,
    to_prune,
)
from semantic.core.snapshot import Manifest
from semantic.store.files.snapshots import FsspecSnapshots

pytestmark = pytest.mark.unit
NOW = datetime(2026, 12, 5, 2, 30, tzinfo=UTC)


def _stored(*names: str) -> list[StoredSnapshot]:
    return [StoredSnapshot(n, f"/b/{n}.tar", 1, scheduled_at(n)) for n in names]


def test_names_carry_the_time_and_only_the_schedule_uses_its_prefix() -> None:
    scheduled = snapshot_name(NOW, scheduled=True)
    assert scheduled == "scheduled-20261205T023000Z"
    assert scheduled_at(scheduled) == NOW
    manual = snapshot_name(NOW, scheduled=False)
    assert manual.startswith("snapshot-20261205T023000Z-")
    assert manual != snapshot_name(NOW, scheduled=False)  # two in one second differ
    assert checked_name(manual) == manual
    assert scheduled_at(manual) is None
    assert scheduled_at("scheduled-not-a-time") is None


@pytest.mark.parametrize(
    "name",
    ["", "../up", "a/b", "with space", "-dash-first", "x" * 101, "é", "scheduled-1"],
)
def test_a_chosen_name_outside_the_pattern_is_refused_naming_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        checked_name(name)
    assert refused.value.field == "name"


def test_a_scheduled_snapshot_is_due_when_the_newest_is_an_interval_old() -> None:
    day = timedelta(days=1)
    assert due([], NOW, day)
    assert due(_stored("by-hand", "snapshot-x"), NOW, day)  # only scheduled ones count
    assert not due(_stored("scheduled-20261204T120000Z"), NOW, day)
    assert due(_stored("scheduled-20261204T023000Z"), NOW, day)
    assert not due(_stored("scheduled-20261201T000000Z", "scheduled-20261205T000000Z"), NOW, day)


def test_the_retention_removes_the_oldest_scheduled_snapshots_only() -> None:
    stored = _stored(
        "scheduled-20261203T000000Z",
        "keep-forever",
        "scheduled-20261201T000000Z",
        "scheduled-20261204T000000Z",
        "scheduled-20261202T000000Z",
    )
    assert to_prune(stored, 2, NOW) == [
        "scheduled-20261201T000000Z",
        "scheduled-20261202T000000Z",
    ]
    assert to_prune(stored, 4, NOW) == []
    assert to_prune(stored, 0, NOW) == to_prune(stored, 1, NOW)  # at least one is kept
    assert len(to_prune(stored, 1, NOW)) == 3


def test_a_snapshot_dated_in_the_future_is_neither_the_newest_nor_what_is_kept() -> None:
    """A replica with a wrong clock wrote one dated 2099: the schedule must not stop until
    then, and the retention must not delete the snapshots really taken because of it."""
    day = timedelta(days=1)
    stored = _stored("scheduled-20991231T000000Z", "scheduled-20261203T000000Z")
    assert due(stored, NOW, day)
    taken = "scheduled-20261205T020000Z"
    stored = _stored("scheduled-20991231T000000Z", "scheduled-20261203T000000Z", taken)
    assert to_prune(stored, 1, NOW) == ["scheduled-20261203T000000Z"]  # 2099 is left alone
    assert to_prune(stored, 1, NOW, keep=taken) == ["scheduled-20261203T000000Z"]
    just_written = _stored("scheduled-20261205T020000Z", "scheduled-20261205T020001Z")
    assert to_prune(just_written, 1, NOW, keep="scheduled-20261205T020000Z") == []


def _manifest() -> Manifest:
    return Manifest(schema_version="004_change_log", created_at="2026-12-05T02:30:00Z", source={})


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "staged"
    folder.mkdir()
    (folder / "manifest.json").write_text("{}")
    (folder / "nodes.parquet").write_bytes(b"rows")
    return folder


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_the_storage_stores_lists_and_deletes_whole_tars(kind: str, tmp_path: Path) -> None:
    location = str(tmp_path / "backups") if kind == "local" else f"memory://b-{uuid.uuid4().hex}"
    storage = FsspecSnapshots(location)

    async def run() -> None:
        assert await storage.stored() == []  # a location not created yet is empty
        stored = await storage.put("nightly", _folder(tmp_path), _manifest())
        assert stored.url == f"{location}/nightly.tar"
        assert stored.created_at == datetime(2026, 12, 5, 2, 30, tzinfo=UTC)
        with pytest.raises(AlreadyExists):
            await storage.put("nightly", _folder(tmp_path / "again"), _manifest())
        (listed,) = await storage.stored()
        assert (listed.name, listed.bytes) == ("nightly", stored.bytes)
        assert listed.created_at is not None
        await storage.delete("nightly")
        await storage.delete("nightly")  # gone already: nothing to do
        assert await storage.stored() == []

    (tmp_path / "again").mkdir()
    asyncio.run(run())


def test_a_local_tar_holds_the_folder_under_the_name_and_no_partial_is_left(
    tmp_path: Path,
) -> None:
    storage = FsspecSnapshots(str(tmp_path / "backups"))
    asyncio.run(storage.put("nightly", _folder(tmp_path), _manifest()))
    assert [p.name for p in (tmp_path / "backups").iterdir()] == ["nightly.tar"]
    with tarfile.open(tmp_path / "backups" / "nightly.tar") as tar:
        assert sorted(tar.getnames()) == [
            "nightly",
            "nightly/manifest.json",
            "nightly/nodes.parquet",
        ]


def test_an_unknown_protocol_is_a_failed_precondition_naming_the_location() -> None:
    with pytest.raises(FailedPrecondition) as refused:
        FsspecSnapshots("nosuch://bucket/path")
    assert "nosuch://bucket/path" in str(refused.value)


def test_a_file_name_that_is_not_utf8_is_not_listed(tmp_path: Path) -> None:
    """Such a name comes back with surrogate escapes, which no response can carry: listing
    every snapshot failed with INTERNAL."""
    location = tmp_path / "backups"
    location.mkdir()
    (location / "good.tar").write_bytes(b"x")
    os.close(os.open(bytes(location) + b"/bad-\xff.tar", os.O_CREAT | os.O_WRONLY))
    names = [s.name for s in asyncio.run(FsspecSnapshots(str(location)).stored())]
    assert names == ["good"]
