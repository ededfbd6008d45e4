"""Portable snapshots: `semantic export` then `semantic import` against real PostgreSQL, the
search service (the write path fills the source) and the real embedder (the re-embed case).

Round trip into a fresh database (every table equal, dense search equal, a second import
changes nothing, the .tar form too), one point in time under a concurrent writer, merge
keeps newer nodes, replace restores, refused inputs leave the database unchanged, and a
snapshot of another model is re-embedded."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from db_kit import fresh_database
from indexer_kit import running_search, search_env

from semantic.store.postgres.checksums import table_checksums
from semantic.store.postgres.schema import bootstrap_schema
from semantic.tools.cli.main import main
from semantic.tools.cli.snapshot import run_export
from semantic.tools.devstack import EmbeddedPostgres
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

LONG = " ".join(f"Sentence {i} about sourdough fermentation and oven spring." for i in range(40))


def _nodes(version: int = 1) -> list[cpb.Node]:
    nodes = []
    for tenant in ("", "acme"):
        for i, (title, body) in enumerate(
            [
                ("Sourdough starter care", LONG),
                ("Renewing TLS certificates", "ACME clients renew certificates automatically."),
                ("Growing tomatoes", "Tomatoes like sun and regular watering."),
            ]
        ):
            node = cpb.Node(
                id=f"n{i}", tenant=tenant, slug=f"slug-{i}", content_type="page" if i else "recipe",
                title=title, body=body, tags=["a", f"t{i}"], version=version,
                texts={"summary": f"{title} in short"},
            )  # fmt: skip
            node.metadata.update({"rank": i, "lang": "en"})
            if i < 2:  # n0 follows n1, n1 is a prerequisite of n2
                kind = "follows" if i == 0 else "prerequisite"
                node.relations.items.add(
                    node_id=f"n{i + 1}", type=kind, strength=0.5 + i / 4, description=f"r{i}"
                )
            if i != 1:  # guardian rules: two on n0, one on n2
                node.rules.items.add(id=f"rule-{i}", pattern=title.split()[0], action="review")
            if i == 0:
                rule = node.rules.items.add(
                    id="oven", pattern=r"oven\s+spring", kind=cpb.RULE_KIND_REGEX, active=False
                )
                rule.scope.tags_any.append("baking")
                rule.scope.metadata.add(key="layer").equals.string_value = "kitchen"
            nodes.append(node)
    return nodes


async def _fill(search: search_pb2_grpc.SearchStub) -> None:
    await search.Upsert(pb.UpsertRequest(nodes=_nodes()))
    events = [
        epb.UserEvent(event_id=str(uuid.uuid4()), user_id=f"u{k}", tenant=tenant,
                      node_id=f"n{k % 3}", action=epb.USER_ACTION_VIEW, archetype="baker")
        for tenant in ("", "acme") for k in range(4)
    ]  # fmt: skip
    await search.Track(pb.TrackRequest(events=events))
    await search.Delete(pb.DeleteRequest(ids=["n2"], tenant="acme", version=5))


async def _dense(search: search_pb2_grpc.SearchStub) -> list[tuple[str, float]]:
    reply = await search.Search(
        pb.SearchRequest(text="bread fermentation", mode=pb.SEARCH_MODE_DENSE, top_k=5)
    )
    return [(h.node.id, round(h.score, 5)) for h in reply.hits]


async def _checksums(url: str) -> dict[str, tuple[int, str]]:
    conn = await asyncpg.connect(url)
    try:
        return await table_checksums(conn)
    finally:
        await conn.close()


def _vectors(checksums: dict[str, tuple[int, str]]) -> tuple[int, str]:
    """The one space's vector table checksum (keyed by model identity, not space id)."""
    (key,) = [k for k in checksums if k.startswith("vectors:")]
    return checksums[key]


async def _main(*argv: str) -> int:
    """The CLI in a thread (it runs its own event loop)."""
    return await asyncio.to_thread(main, list(argv))


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code = await _main(*argv, "--json")
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    return code, json.loads(lines[-1]) if lines else {}


def _leftovers(folder: Path) -> list[Path]:
    return list(folder.glob(".snap*"))


@pytest.fixture
def second_url(pg_server: EmbeddedPostgres) -> Iterator[str]:
    """A second empty database on the session server."""
    yield from fresh_database(pg_server)


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


async def test_round_trip_into_a_fresh_database_and_a_second_import_changes_nothing(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        await _fill(search)
        before = await _dense(search)
    source = await _checksums(database_url)
    assert _vectors(source)[0] > 2 * 4  # several chunks and named vectors per node
    assert source["node_tombstones"][0] == 1
    assert source["users"][0] == 8
    assert source["relations"][0] == 3  # acme's n1 -> n2 went with n2
    assert source["rules"][0] == 5  # acme's rule on n2 went with n2

    monkeypatch.setenv("DATABASE_URL", database_url)
    code, exported = await _cli(capsys, "export", "--out", str(tmp_path / "snap"))
    assert code == 0
    assert exported["files"]["nodes.parquet"] == 5
    assert await _main("export", "--out", str(tmp_path / "snap.tar")) == 0
    capsys.readouterr()
    nodes = pq.read_table(tmp_path / "snap" / "nodes.parquet")
    assert sorted(nodes.column("id").to_pylist()) == ["n0", "n0", "n1", "n1", "n2"]
    assert _leftovers(tmp_path) == []  # the temporary folders are gone

    await bootstrap_schema(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    code, first = await _cli(capsys, "import", str(tmp_path / "snap"))
    assert code == 0, first
    assert first["nodes"]["created"] == 5
    assert not first["heal_needed"]
    assert await _checksums(second_url) == source
    code, again = await _cli(capsys, "import", str(tmp_path / "snap.tar"))
    assert code == 0
    assert again["changed"] == 0
    assert again["nodes"]["unchanged"] == 5
    assert await _checksums(second_url) == source

    async with running_search({**env, "DATABASE_URL": second_url}, monkeypatch) as channel:
        assert await _dense(search_pb2_grpc.SearchStub(channel)) == before

    # A snapshot written before relations and rules existed (no such files) imports,
    # changing none.
    older = tmp_path / "snap"
    manifest = json.loads((older / "manifest.json").read_text())
    for name in ("relations.parquet", "rules.parquet"):
        (older / name).unlink()
        del manifest["files"][name]
    (older / "manifest.json").write_text(json.dumps(manifest))
    code, old_format = await _cli(capsys, "import", str(older))
    assert code == 0, old_format
    assert old_format["changed"] == 0
    assert await _checksums(second_url) == source


async def test_an_export_sees_one_point_in_time_under_a_concurrent_writer(
    env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    monkeypatch.setenv("DATABASE_URL", database_url)
    writer = await asyncpg.connect(database_url)
    wrote: list[str] = []

    async def midway(file: str, rows: int) -> None:
        if file == "nodes.parquet" and not wrote:  # after the first batch of one row
            await writer.execute("UPDATE semantic.nodes SET title = 'changed', version = 99")
            await writer.execute("DELETE FROM semantic.user_events")
            wrote.append(file)

    args = argparse.Namespace(
        out=tmp_path / "snap", tenant=None, content_type=None, space="all", batch_size=1,
        json=True,
    )  # fmt: skip
    try:
        assert await run_export(args, hook=midway) == 0
    finally:
        await writer.close()
    assert wrote
    nodes = pq.read_table(tmp_path / "snap" / "nodes.parquet").to_pylist()
    assert len(nodes) == 5
    assert {n["version"] for n in nodes} == {1}
    assert "changed" not in {n["title"] for n in nodes}
    assert pq.read_table(tmp_path / "snap" / "user_events.parquet").num_rows == 8


async def test_merge_keeps_newer_nodes_and_replace_restores_the_snapshot(
    env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        await _fill(search)
        monkeypatch.setenv("DATABASE_URL", database_url)
        assert (await _cli(capsys, "export", "--out", str(tmp_path / "snap")))[0] == 0
        snapshot = await _checksums(database_url)
        newer = _nodes(version=2)[0]
        newer.title = "Sourdough, revised"
        del newer.relations.items[:]
        newer.relations.items.add(node_id="n2", type="conflicts")
        del newer.rules.items[:]
        newer.rules.items.add(id="revised", pattern="revised")
        await search.Upsert(
            pb.UpsertRequest(nodes=[newer, cpb.Node(id="later", title="x", content_type="page")])
        )
    code, merged = await _cli(capsys, "import", str(tmp_path / "snap"))
    assert code == 0
    assert merged["nodes"]["kept"] == 1
    assert merged["changed"] == 0
    conn = await asyncpg.connect(database_url)
    try:
        assert (
            await conn.fetchval("SELECT title FROM semantic.nodes WHERE tenant = '' AND id = 'n0'")
            == "Sourdough, revised"
        )
        relations = await conn.fetch(
            "SELECT target_id, type FROM semantic.relations WHERE tenant = '' AND source_id = 'n0'"
        )
        assert [tuple(r) for r in relations] == [("n2", "conflicts")]  # the newer node's own
        rules = await conn.fetch(
            "SELECT rule_id FROM semantic.rules WHERE tenant = '' AND node_id = 'n0'"
        )
        assert [r["rule_id"] for r in rules] == ["revised"]  # the newer node's own
        code, replaced = await _cli(capsys, "import", str(tmp_path / "snap"), "--mode", "replace")
        assert code == 0
        assert replaced["nodes"]["created"] == 5
        assert await conn.fetchval("SELECT count(*) FROM semantic.nodes WHERE id = 'later'") == 0
    finally:
        await conn.close()
    assert await _checksums(database_url) == snapshot


@pytest.mark.parametrize(
    "damage",
    [
        "tampered",
        "truncated",
        "wrong-format",
        "bad-tar",
        "row-twice",
        "no-version",
        "rows-miscounted",
        "version-as-text",
        "format-version-true",
        "manifest-key-twice",
        "vector-twice",
        "undeclared-tenant",
    ],
)
async def test_a_damaged_snapshot_is_refused_and_nothing_is_written(
    *,
    damage: str,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    monkeypatch.setenv("DATABASE_URL", database_url)
    snap = tmp_path / "snap"
    assert await _main("export", "--out", str(snap)) == 0
    target = snap
    if damage == "tampered":
        data = bytearray((snap / "nodes.parquet").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (snap / "nodes.parquet").write_bytes(bytes(data))
    elif damage == "truncated":
        data = (snap / "vectors-1.parquet").read_bytes()
        (snap / "vectors-1.parquet").write_bytes(data[: len(data) // 2])
    elif damage == "row-twice":  # a well-formed file (manifest updated) with a key twice
        nodes = pq.read_table(snap / "nodes.parquet")
        pq.write_table(pa.concat_tables([nodes, nodes.slice(0, 1)]), snap / "nodes.parquet")
        data = (snap / "nodes.parquet").read_bytes()
        manifest = json.loads((snap / "manifest.json").read_text())
        manifest["files"]["nodes.parquet"] = {
            "rows": nodes.num_rows + 1,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        (snap / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "wrong-format":
        manifest = json.loads((snap / "manifest.json").read_text())
        manifest["format"] = "something-else"
        (snap / "manifest.json").write_text(json.dumps(manifest))
    elif damage in ("no-version", "rows-miscounted", "version-as-text"):
        # Files the manifest vouches for (sizes and checksums re-signed) that break a rule.
        nodes = pq.read_table(snap / "nodes.parquet")
        rows = nodes.num_rows
        if damage == "no-version":  # every node would come back unversioned
            nodes = nodes.drop_columns(["version"])
        elif damage == "rows-miscounted":
            rows += 1
        else:
            at = nodes.schema.get_field_index("version")
            nodes = nodes.set_column(at, "version", nodes["version"].cast(pa.string()))
        pq.write_table(nodes, snap / "nodes.parquet")
        _resign(snap, "nodes.parquet", rows)
    elif damage == "vector-twice":  # ON CONFLICT DO NOTHING would drop it without a word
        vectors = pq.read_table(snap / "vectors-1.parquet")
        pq.write_table(pa.concat_tables([vectors, vectors.slice(0, 1)]), snap / "vectors-1.parquet")
        _resign(snap, "vectors-1.parquet", vectors.num_rows + 1)
    elif damage == "undeclared-tenant":  # rows of a tenant the manifest does not list
        manifest = json.loads((snap / "manifest.json").read_text())
        manifest["tenants"] = ["someone-else"]
        (snap / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "format-version-true":  # true == 1 in Python
        text = (snap / "manifest.json").read_text()
        (snap / "manifest.json").write_text(
            text.replace('"format_version": 1', '"format_version": true')
        )
    elif damage == "manifest-key-twice":
        text = (snap / "manifest.json").read_text().rstrip().removesuffix("}")
        (snap / "manifest.json").write_text(text + ', "format": "semantic-snapshot"}')
    else:
        target = tmp_path / "snap.tar"
        target.write_bytes(b"not a tar archive at all" * 100)
    await bootstrap_schema(second_url)
    before = await _checksums(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    capsys.readouterr()
    assert await _main("import", str(target)) != 0
    err = capsys.readouterr().err
    assert "import failed" in err
    named = {
        "row-twice": "nodes.parquet holds one row twice",
        "no-version": "nodes.parquet has no version column",
        "rows-miscounted": "the manifest says",
        "version-as-text": "nodes.parquet holds a value its column cannot take",
        "format-version-true": "format_version True is not supported",
        "manifest-key-twice": "given twice",
        "vector-twice": "vectors-1.parquet holds one row twice",
        "undeclared-tenant": "holds rows of a tenant its manifest does not list",
    }
    assert named.get(damage, "import failed") in err
    assert "Traceback" not in err
    assert await _checksums(second_url) == before


def _resign(snap: Path, name: str, rows: int) -> None:
    """The manifest's entry for ``name`` made to match the file again (rows as given)."""
    manifest = json.loads((snap / "manifest.json").read_text())
    data = (snap / name).read_bytes()
    manifest["files"][name] = {
        "rows": rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    (snap / "manifest.json").write_text(json.dumps(manifest))


async def test_a_snapshot_of_another_model_is_imported_and_re_embedded(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    embedder_address: str,
    fp32_model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _main("export", "--out", str(tmp_path / "snap")) == 0
    copy = tmp_path / "other-model"
    shutil.copytree(tmp_path / "snap", copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["spaces"][0]["model_sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    # The target serves the real model (its search service ran once), with no content yet.
    async with running_search({**env, "DATABASE_URL": second_url}, monkeypatch):
        pass
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DATABASE_URL", second_url)
    capsys.readouterr()
    code, report = await _cli(capsys, "import", str(copy))
    assert code == 0, report
    assert report["spaces"] == {"1": None}
    assert report["heal_needed"]
    assert report["heal"]["reembedded"] == 5
    assert report["heal"]["failed"] == 0
    source, target = await _checksums(database_url), await _checksums(second_url)
    assert target["nodes"] == source["nodes"]
    assert _vectors(target)[0] == _vectors(source)[0]


async def test_a_failure_midway_leaves_the_database_as_it_was(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A well-formed snapshot whose user events break a NOT NULL rule: the nodes, postings
    and vectors loaded before it are rolled back with everything else."""
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    monkeypatch.setenv("DATABASE_URL", database_url)
    snap = tmp_path / "snap"
    assert await _main("export", "--out", str(snap)) == 0
    events = pq.read_table(snap / "user_events.parquet")
    broken = events.set_column(
        events.schema.get_field_index("user_id"),
        "user_id",
        pa.array([None] * events.num_rows, type=pa.string()),
    )
    pq.write_table(broken, snap / "user_events.parquet")
    manifest = json.loads((snap / "manifest.json").read_text())
    data = (snap / "user_events.parquet").read_bytes()
    manifest["files"]["user_events.parquet"].update(
        bytes=len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    (snap / "manifest.json").write_text(json.dumps(manifest))
    await bootstrap_schema(second_url)
    before = await _checksums(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    capsys.readouterr()
    assert await _main("import", str(snap)) == 1
    assert "NotNullViolation" in capsys.readouterr().err
    assert await _checksums(second_url) == before


async def test_one_tenant_exported_and_replaced_leaves_the_others_alone(
    *,
    env: dict[str, str],
    database_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_search(env, monkeypatch) as channel:
        search = search_pb2_grpc.SearchStub(channel)
        await _fill(search)
        monkeypatch.setenv("DATABASE_URL", database_url)
        code, exported = await _cli(
            capsys, "export", "--out", str(tmp_path / "acme.tar"), "--tenant", "acme"
        )
        assert code == 0
        assert exported["files"]["nodes.parquet"] == 2
        await search.Delete(pb.DeleteRequest(ids=["n0", "n1"], tenant="acme", version=9))
        await search.Delete(pb.DeleteRequest(ids=["n1"], tenant="", version=9))
    code, replaced = await _cli(capsys, "import", str(tmp_path / "acme.tar"), "--mode", "replace")
    assert code == 0
    assert replaced["nodes"]["created"] == 2
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT tenant, id FROM semantic.nodes ORDER BY 1, 2")
        tombstones = await conn.fetch("SELECT tenant, id, version FROM semantic.node_tombstones")
    finally:
        await conn.close()
    assert [(r["tenant"], r["id"]) for r in rows] == [
        ("", "n0"), ("", "n2"), ("acme", "n0"), ("acme", "n1"),
    ]  # fmt: skip
    assert {(r["tenant"], r["id"], r["version"]) for r in tombstones} == {
        ("", "n1", 9), ("acme", "n2", 5),
    }  # fmt: skip
    assert (await _cli(capsys, "import", str(tmp_path / "acme.tar"), "--mode", "replace"))[0] == 0
    code, merged = await _cli(capsys, "import", str(tmp_path / "acme.tar"))
    assert code == 0
    assert merged["changed"] == 0


async def _hnsw(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT pg_get_indexdef(c.oid) AS d FROM pg_index i"
            " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam"
            " WHERE a.amname = 'hnsw' ORDER BY 1"
        )
        return [r["d"] for r in rows]
    finally:
        await conn.close()


async def test_a_restore_into_an_empty_space_builds_its_index_after_the_rows(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from semantic.store.postgres import snapshot_load

    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
        before = await _dense(search_pb2_grpc.SearchStub(channel))
    source = await _checksums(database_url)
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _main("export", "--out", str(tmp_path / "snap")) == 0
    monkeypatch.setattr(snapshot_load, "BULK_ROWS", 1)  # the bulk path at this small size

    await bootstrap_schema(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    code, summary = await _cli(capsys, "import", str(tmp_path / "snap"))
    assert code == 0, summary
    assert await _checksums(second_url) == source
    assert await _hnsw(second_url) == await _hnsw(database_url)  # the same index again
    async with running_search({**env, "DATABASE_URL": second_url}, monkeypatch) as channel:
        assert await _dense(search_pb2_grpc.SearchStub(channel)) == before

    # A snapshot written before relations and rules existed (no such files) imports,
    # changing none.
    older = tmp_path / "snap"
    manifest = json.loads((older / "manifest.json").read_text())
    for name in ("relations.parquet", "rules.parquet"):
        (older / name).unlink()
        del manifest["files"][name]
    (older / "manifest.json").write_text(json.dumps(manifest))
    code, old_format = await _cli(capsys, "import", str(older))
    assert code == 0, old_format
    assert old_format["changed"] == 0
    assert await _checksums(second_url) == source


async def test_a_half_precision_space_is_restored_at_half_precision(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    half_env = {**env, "SEMANTIC_VECTOR_INDEX_PRECISION": "half"}
    async with running_search(half_env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
        before = await _dense(search_pb2_grpc.SearchStub(channel))
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _main("export", "--out", str(tmp_path / "snap")) == 0
    manifest = json.loads((tmp_path / "snap" / "manifest.json").read_text())
    assert [s["index_precision"] for s in manifest["spaces"]] == ["half"]

    await bootstrap_schema(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    code, summary = await _cli(capsys, "import", str(tmp_path / "snap"))
    assert code == 0, summary
    indexes = await _hnsw(second_url)
    assert indexes == await _hnsw(database_url)
    assert all("halfvec" in d for d in indexes)
    # The importing deployment's own setting (float32 here) does not change the space.
    async with running_search({**env, "DATABASE_URL": second_url}, monkeypatch) as channel:
        assert await _dense(search_pb2_grpc.SearchStub(channel)) == before


async def test_a_ready_space_is_restored_ready_never_switched_to(
    *,
    env: dict[str, str],
    database_url: str,
    second_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A space kept READY for a rollback comes back READY: not BUILDING, which a heal
    loop would finish and activate, switching the model the snapshot had active."""
    async with running_search(env, monkeypatch) as channel:
        await _fill(search_pb2_grpc.SearchStub(channel))
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "INSERT INTO semantic.embedding_spaces (model_id, model_sha256, dim, state)"
            " VALUES ('older-model', 'abc', 384, 'ready') RETURNING id"
        )
        await conn.execute(
            f"CREATE TABLE semantic.vectors_{int(row['id'])}"
            " (LIKE semantic.vectors_1 INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
    finally:
        await conn.close()
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert await _main("export", "--space", "all", "--out", str(tmp_path / "snap")) == 0
    await bootstrap_schema(second_url)
    monkeypatch.setenv("DATABASE_URL", second_url)
    code, imported = await _cli(capsys, "import", str(tmp_path / "snap"))
    assert code == 0, imported
    conn = await asyncpg.connect(second_url)
    try:
        states = {
            r["model_id"]: r["state"]
            for r in await conn.fetch("SELECT model_id, state FROM semantic.embedding_spaces")
        }
        active = await conn.fetchval(
            "SELECT s.model_id FROM semantic.space_aliases a"
            " JOIN semantic.embedding_spaces s ON s.id = a.space_id WHERE a.name = 'active'"
        )
    finally:
        await conn.close()
    assert states["older-model"] == "ready"
    assert active != "older-model"
    assert states[active] == "active"
