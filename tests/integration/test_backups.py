"""Backups in production: the Admin Snapshot RPC writes a portable snapshot (one .tar) to
the configured location, ListSnapshots lists it, `semantic import` restores it into an
empty database with every table equal; the schedule takes snapshots of its own and keeps
the newest SEMANTIC_SNAPSHOT_RETENTION; `python -m semantic.search.backup` (the CronJob)
does one and prunes; a location that cannot be used is a clear error, never INTERNAL, and
leaves no part of a snapshot behind. Real PostgreSQL, embedder and search service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import fsspec
import grpc
import pytest
from db_kit import fresh_database
from indexer_kit import running_search, search_env, wait_for

from semantic.store.postgres.checksums import table_checksums
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.cli.main import main
from semantic.tools.devstack import EmbeddedPostgres
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc


def _nodes() -> list[cpb.Node]:
    topics = [
        ("Sourdough starter care", "Feed the starter flour and water every day."),
        ("Renewing TLS certificates", "ACME clients renew certificates automatically."),
        ("Growing tomatoes", "Tomatoes like sun and regular watering."),
    ]
    return [
        cpb.Node(id=f"n{i}", tenant=tenant, content_type="page", title=title, body=body,
                 tags=[f"t{i}"])
        for tenant in ("", "acme") for i, (title, body) in enumerate(topics)
    ]  # fmt: skip


async def _fill(search: search_pb2_grpc.SearchStub) -> None:
    await search.Upsert(pb.UpsertRequest(nodes=_nodes()), timeout=120)
    events = [
        epb.UserEvent(event_id=str(uuid.uuid4()), user_id=f"u{k}", node_id=f"n{k % 3}",
                      action=epb.USER_ACTION_VIEW)
        for k in range(4)
    ]  # fmt: skip
    await search.Track(pb.TrackRequest(events=events), timeout=60)


async def _checksums(url: str) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        return await table_checksums(conn)
    finally:
        await conn.close()


@pytest.fixture
def second_url(pg_server: EmbeddedPostgres) -> Any:
    yield from fresh_database(pg_server)


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


async def test_snapshot_rpc_stores_a_tar_that_restores_every_table(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    location = tmp_path / "backups"
    settings = {**env, "SEMANTIC_SNAPSHOT_LOCATION": str(location)}
    async with running_search(settings, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        await _fill(search)
        assert (await admin.ListSnapshots(pb.ListSnapshotsRequest())).snapshots == []

        reply = await admin.Snapshot(pb.SnapshotRequest(name="before-upgrade"), timeout=120)
        acme = await admin.Snapshot(pb.SnapshotRequest(tenants=["acme"]), timeout=120)
        listed = await admin.ListSnapshots(pb.ListSnapshotsRequest())

        with pytest.raises(grpc.aio.AioRpcError) as taken:
            await admin.Snapshot(pb.SnapshotRequest(name="before-upgrade"), timeout=60)
        assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
        for bad in (
            pb.SnapshotRequest(name="../escape"),
            pb.SnapshotRequest(name="scheduled-20260101T000000Z"),
            pb.SnapshotRequest(space="first"),
            pb.SnapshotRequest(tenants=["no spaces allowed"]),
            pb.SnapshotRequest(content_types=["Page!"]),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await admin.Snapshot(bad, timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, bad
            assert refused.value.details()
        source = await _checksums(database_url)

    stored = location / "before-upgrade.tar"
    assert reply.snapshot.url == str(stored)
    assert reply.snapshot.bytes == stored.stat().st_size
    assert not reply.snapshot.scheduled
    files = {f.file: f.rows for f in reply.files}
    assert files["nodes.parquet"] == 6
    assert files["users.parquet"] == 4
    assert reply.vectors == sum(n for f, n in files.items() if f.startswith("vectors-"))
    assert reply.schema_version
    assert {f.file: f.rows for f in acme.files}["nodes.parquet"] == 3
    assert acme.snapshot.name.startswith("snapshot-")
    assert sorted(s.name for s in listed.snapshots) == sorted(
        ["before-upgrade", acme.snapshot.name]
    )
    assert listed.location == str(location)
    assert sorted(p.name for p in location.iterdir()) == sorted(
        ["before-upgrade.tar", f"{acme.snapshot.name}.tar"]
    )  # no partial file, no staging folder left

    await bootstrap_schema(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    assert await asyncio.to_thread(main, ["import", str(stored), "--json"]) == 0
    assert await _checksums(second_url) == source


async def test_the_schedule_keeps_the_newest_snapshots_at_an_fsspec_url(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    location = f"memory://backups-{uuid.uuid4().hex}"
    settings = {
        **env,
        "SEMANTIC_SNAPSHOT_LOCATION": location,
        "SEMANTIC_SNAPSHOT_INTERVAL_S": "1",
        "SEMANTIC_SNAPSHOT_RETENTION": "2",
    }
    seen: set[str] = set()
    async with running_search(settings, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        admin = search_pb2_grpc.AdminStub(channel)
        await _fill(search)
        manual = await admin.Snapshot(pb.SnapshotRequest(name="keep-me"), timeout=120)

        async def pruned() -> bool:
            listed = await admin.ListSnapshots(pb.ListSnapshotsRequest(), timeout=30)
            scheduled = [s.name for s in listed.snapshots if s.scheduled]
            seen.update(scheduled)
            return len(seen) >= 4 and len(scheduled) == 2

        await wait_for(pruned, timeout_s=120, what="four scheduled snapshots, two kept")
        listed = await admin.ListSnapshots(pb.ListSnapshotsRequest(), timeout=30)

    names = [s.name for s in listed.snapshots]
    scheduled = [s.name for s in listed.snapshots if s.scheduled]
    assert "keep-me" in names  # the retention never removes a snapshot taken on request
    assert scheduled == sorted(scheduled, reverse=True)  # newest first
    assert scheduled == sorted(seen, reverse=True)[:2]  # the two newest survive
    stamps = [s.created_at.ToDatetime() for s in listed.snapshots if s.scheduled]
    assert stamps == sorted(stamps, reverse=True)
    assert manual.snapshot.url == f"{location}/keep-me.tar"
    fs, root = fsspec.core.url_to_fs(location)
    with fs.open(f"{root}/{scheduled[0]}.tar", "rb") as raw, tarfile.open(fileobj=raw) as tar:
        manifest = json.loads(tar.extractfile(f"{scheduled[0]}/manifest.json").read())  # type: ignore[union-attr]
    assert manifest["format"] == "semantic-snapshot"
    assert manifest["tenants"] is None  # the whole installation
    assert {s["id"] for s in manifest["spaces"]}  # every space's vectors


async def test_an_unusable_location_is_a_clear_error_and_leaves_nothing(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    async with running_search(env, monkeypatch) as channel:  # no location configured
        admin = search_pb2_grpc.AdminStub(channel)
        for call in (
            admin.Snapshot(pb.SnapshotRequest(), timeout=60),
            admin.ListSnapshots(pb.ListSnapshotsRequest(), timeout=60),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call
            assert missing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "SEMANTIC_SNAPSHOT_LOCATION" in (missing.value.details() or "")
    for location, code in (
        (str(blocker / "backups"), grpc.StatusCode.FAILED_PRECONDITION),
        ("nosuchprotocol://bucket/x", grpc.StatusCode.FAILED_PRECONDITION),
    ):
        settings = {
            **env,
            "SEMANTIC_SNAPSHOT_LOCATION": location,
            "SEMANTIC_SNAPSHOT_STAGING_DIR": str(tmp_path / "staging"),
        }
        async with running_search(settings, monkeypatch) as channel:
            admin = search_pb2_grpc.AdminStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as unusable:
                await admin.Snapshot(pb.SnapshotRequest(), timeout=60)
            assert unusable.value.code() == code, unusable.value.details()
            assert location.split("/")[0] in (unusable.value.details() or "")
    assert blocker.read_text() == "not a folder"
    assert list((tmp_path / "staging").glob("*")) == []  # nothing staged is left


def _backup(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "semantic.search.backup"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


async def test_the_cronjob_entry_takes_a_snapshot_and_applies_the_retention(
    env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    location = tmp_path / "backups"
    location.mkdir()
    old = ["scheduled-20240101T000000Z", "scheduled-20240102T000000Z", "scheduled-20240103T000000Z"]
    for name in [*old, "by-hand"]:
        (location / f"{name}.tar").write_bytes(b"")
    settings = {
        "DATABASE_URL": database_url,
        "SEMANTIC_SNAPSHOT_LOCATION": str(location),
        "SEMANTIC_SNAPSHOT_RETENTION": "2",
        "SEMANTIC_LOG_FORMAT": "json",
    }
    done = await asyncio.to_thread(_backup, settings)
    assert done.returncode == 0, done.stderr
    left = sorted(p.name for p in location.iterdir())
    (new,) = set(left) - {f"{n}.tar" for n in [*old, "by-hand"]}
    assert new.startswith("scheduled-")
    assert left == sorted(["by-hand.tar", "scheduled-20240103T000000Z.tar", new])
    with tarfile.open(location / new) as tar:
        assert f"{new.removesuffix('.tar')}/nodes.parquet" in tar.getnames()

    misconfigured = await asyncio.to_thread(_backup, {"DATABASE_URL": database_url})
    assert misconfigured.returncode == 2
    unreachable = await asyncio.to_thread(
        _backup,
        {**settings, "DATABASE_URL": "postgresql://nobody@127.0.0.1:9/nothing"},
    )
    assert unreachable.returncode == 1
    assert "backup_failed" in unreachable.stdout + unreachable.stderr
    assert sorted(p.name for p in location.iterdir()) == left
