"""Admin CheckConsistency and Explore through the real search service (real PostgreSQL,
real embedder): a clean database passes every check; a database broken on purpose with
SQL fails the check that names the problem, with the offending ids and the remedy; Heal
puts the vector checks right again. Explore maps a seeded sample of one tenant's vectors
in 2-D, filtered by content type, sized by ``sample`` and repeatable by seed."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import grpc
import numpy as np
import pytest
from indexer_kit import running_search, search_env

from semantic.store.postgres.schema import load_migrations
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

CHECKS = [
    "schema_current",
    "alias_consistent",
    "nodes_have_vectors",
    "no_stale_vectors",
    "no_orphan_vectors",
    "spaces_tables_exist",
]
RECIPES = {
    "pasta": ("Fresh pasta at home", "Flour, eggs and a rolling pin make silky tagliatelle."),
    "bread": ("Sourdough bread", "A starter, flour, water and salt; a long slow fermentation."),
    "risotto": ("Mushroom risotto", "Toast arborio rice, add stock slowly, finish with butter."),
    "curry": ("Chickpea curry", "Onion, garlic, ginger, tomatoes, spices and simmered chickpeas."),
    "pancakes": ("Fluffy pancakes", "Whisk milk, eggs and flour; cook on a hot buttered pan."),
    "soup": ("Tomato soup", "Roast tomatoes with garlic, blend with stock and basil."),
}
GUIDES = {
    "tls": ("Renewing TLS certificates", "Automate certificate renewal with ACME before expiry."),
    "dns": ("DNS records explained", "A, AAAA, CNAME and MX records map names to servers."),
    "cache": ("Caching HTTP responses", "Cache-Control headers and ETags let proxies cache."),
    "ssh": ("Hardening SSH servers", "Disable password logins and use ed25519 keys only."),
    "vpn": ("Site-to-site VPN tunnels", "IPsec tunnels connect office networks over the internet."),
    "lb": ("Load balancer health checks", "Probe backends and drain unhealthy servers."),
}


@pytest.fixture
async def channel(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[grpc.aio.Channel]:
    env = search_env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as ch:
        yield ch


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


def _nodes(docs: dict[str, tuple[str, str]], content_type: str, tenant: str = "") -> list[cpb.Node]:
    return [
        cpb.Node(
            id=key,
            tenant=tenant,
            slug=f"{key}-page",
            content_type=content_type,
            title=title,
            body=body,
        )
        for key, (title, body) in docs.items()
    ]


async def _load(channel: grpc.aio.Channel, tenant: str = "") -> None:
    search = search_pb2_grpc.SearchStub(channel)
    nodes = _nodes(RECIPES, "recipe", tenant) + _nodes(GUIDES, "guide", tenant)
    reply = await search.Upsert(pb.UpsertRequest(nodes=nodes))
    assert {r.outcome for r in reply.results} == {pb.UPSERT_OUTCOME_CREATED}


async def _check(channel: grpc.aio.Channel, **fields: object) -> pb.CheckConsistencyResponse:
    admin = search_pb2_grpc.AdminStub(channel)
    return await admin.CheckConsistency(pb.CheckConsistencyRequest(**fields))  # type: ignore[arg-type]


def _by_name(reply: pb.CheckConsistencyResponse) -> dict[str, pb.ConsistencyCheck]:
    return {c.name: c for c in reply.checks}


async def _active_table(db: asyncpg.Connection) -> tuple[int, str]:
    space_id = await db.fetchval(
        "SELECT space_id FROM semantic.space_aliases WHERE name = 'active'"
    )
    return space_id, f"semantic.vectors_{int(space_id)}"


# --- CheckConsistency ----------------------------------------------------------------


async def test_a_clean_database_passes_every_check(
    channel: grpc.aio.Channel, db: asyncpg.Connection
) -> None:
    await _load(channel)
    reply = await _check(channel)
    assert [c.name for c in reply.checks] == CHECKS
    assert reply.ok, [(c.name, c.summary) for c in reply.checks if not c.ok]
    for check in reply.checks:
        assert (check.ok, check.count, list(check.examples)) == (True, 0, [])
        assert check.remedy == pb.CONSISTENCY_REMEDY_NONE
        assert check.summary
    shipped = load_migrations()
    assert reply.schema_version == shipped[-1].filename
    assert [m.name for m in reply.migrations] == [m.filename for m in shipped]
    for status, migration in zip(reply.migrations, shipped, strict=True):
        assert status.matches
        assert status.recorded_sha256 == status.shipped_sha256 == migration.checksum
        assert status.HasField("applied_at")
    space_id, _ = await _active_table(db)
    assert reply.space_id == str(space_id)
    assert reply.HasField("checked_at")


async def test_each_broken_invariant_fails_the_check_that_names_it_and_heal_repairs_vectors(
    channel: grpc.aio.Channel, db: asyncpg.Connection
) -> None:
    await _load(channel)
    await _load(channel, tenant="acme")
    space_id, table = await _active_table(db)
    # Nodes without vectors: two of the default tenant, one of another tenant.
    await db.execute(
        f"DELETE FROM {table}"
        " WHERE (tenant, node_id) IN (('', 'bread'), ('', 'dns'), ('acme', 'ssh'))"
    )
    # Stale vectors: the content changed after the vectors were made.
    await db.execute(
        "UPDATE semantic.nodes SET body = 'Knead the dough for ten minutes.',"
        " content_hash = md5(random()::text) WHERE tenant = '' AND id = 'pasta'"
    )
    # Orphans: vector rows of a node that does not exist.
    await db.execute(
        f"INSERT INTO {table} (tenant, node_id, name, chunk, content_hash, embedding)"
        f" SELECT tenant, 'ghost', name, chunk, content_hash, embedding FROM {table}"
        " WHERE tenant = '' AND node_id = 'tls'"
    )
    ghost_rows = await db.fetchval(f"SELECT count(*) FROM {table} WHERE node_id = 'ghost'")
    # A migration changed after it was applied.
    await db.execute(
        "UPDATE semantic.schema_migrations SET checksum = repeat('0', 64) WHERE version = 2"
    )

    reply = await _check(channel)
    assert not reply.ok
    checks = _by_name(reply)
    missing = checks["nodes_have_vectors"]
    assert (missing.ok, missing.count) == (False, 3)
    assert list(missing.examples) == ["bread", "dns", "acme/ssh"]
    assert missing.remedy == pb.CONSISTENCY_REMEDY_HEAL
    assert f"3 node(s) with text have no vector in space {space_id}" == missing.summary
    stale = checks["no_stale_vectors"]
    assert (stale.ok, stale.count, list(stale.examples)) == (False, 1, ["pasta"])
    assert stale.remedy == pb.CONSISTENCY_REMEDY_HEAL
    orphans = checks["no_orphan_vectors"]
    assert (orphans.ok, orphans.count, list(orphans.examples)) == (False, ghost_rows, ["ghost"])
    assert orphans.remedy == pb.CONSISTENCY_REMEDY_HEAL
    schema = checks["schema_current"]
    assert (schema.ok, schema.count, list(schema.examples)) == (False, 1, ["002_content.sql"])
    assert "checksum differs" in schema.summary
    assert schema.remedy == pb.CONSISTENCY_REMEDY_MIGRATE
    assert [m.matches for m in reply.migrations] == [m.version != 2 for m in load_migrations()]
    assert reply.migrations[1].recorded_sha256 == "0" * 64
    assert checks["alias_consistent"].ok
    assert checks["spaces_tables_exist"].ok

    # sample_limit cuts the examples, not the count.
    limited = _by_name(await _check(channel, sample_limit=1))["nodes_have_vectors"]
    assert (limited.count, list(limited.examples)) == (3, ["bread"])

    admin = search_pb2_grpc.AdminStub(channel)
    healed = await admin.Heal(pb.HealRequest(), timeout=120)
    assert (healed.missing, healed.stale, healed.orphans) == (3, 1, ghost_rows)
    assert healed.failed == 0
    after = _by_name(await _check(channel))
    for name in ("nodes_have_vectors", "no_stale_vectors", "no_orphan_vectors"):
        assert after[name].ok, after[name].summary
    assert not after["schema_current"].ok  # heal does not touch migrations
    stats = await search_pb2_grpc.SearchStub(channel).Stats(pb.StatsRequest())
    assert (stats.heal_backlog.missing, stats.heal_backlog.stale) == (0, 0)

    shipped = load_migrations()[1]
    await db.execute(
        "UPDATE semantic.schema_migrations SET checksum = $1 WHERE version = 2", shipped.checksum
    )
    assert (await _check(channel)).ok


async def test_a_broken_alias_and_a_missing_index_are_reported_with_their_remedy(
    channel: grpc.aio.Channel, db: asyncpg.Connection
) -> None:
    await _load(channel)
    space_id, table = await _active_table(db)
    await db.execute("UPDATE semantic.embedding_spaces SET state = 'ready' WHERE id = $1", space_id)
    await db.execute(f"DROP INDEX semantic.vectors_{space_id}_hnsw")
    checks = _by_name(await _check(channel))
    alias = checks["alias_consistent"]
    assert (alias.ok, alias.remedy) == (False, pb.CONSISTENCY_REMEDY_ROLLBACK)
    assert f"names space {space_id}" in alias.summary
    assert list(alias.examples) == [str(space_id)]
    tables = checks["spaces_tables_exist"]
    assert (tables.ok, tables.count, list(tables.examples)) == (False, 1, [str(space_id)])
    assert "no HNSW index" in tables.summary
    assert tables.remedy == pb.CONSISTENCY_REMEDY_REINDEX

    await db.execute(
        "UPDATE semantic.embedding_spaces SET state = 'active' WHERE id = $1", space_id
    )
    await db.execute(
        f"CREATE INDEX vectors_{space_id}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops)"
    )
    assert (await _check(channel)).ok


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"sample_limit": 101}, grpc.StatusCode.INVALID_ARGUMENT, "sample_limit"),
        ({"space_id": "abc"}, grpc.StatusCode.INVALID_ARGUMENT, "space_id"),
        ({"space_id": "999"}, grpc.StatusCode.NOT_FOUND, "999"),
    ],
)
async def test_a_bad_check_request_is_refused_naming_the_field(
    channel: grpc.aio.Channel, fields: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _check(channel, **fields)
    assert caught.value.code() is code
    assert words in (caught.value.details() or "")


# --- Explore ---------------------------------------------------------------------------


async def _explore(channel: grpc.aio.Channel, **fields: object) -> pb.ExploreResponse:
    admin = search_pb2_grpc.AdminStub(channel)
    return await admin.Explore(pb.ExploreRequest(**fields))  # type: ignore[arg-type]


async def test_explore_maps_every_vector_of_two_topics_apart(
    channel: grpc.aio.Channel, db: asyncpg.Connection
) -> None:
    await _load(channel)
    await _load(channel, tenant="acme")  # another tenant's vectors stay off the map
    space_id, table = await _active_table(db)
    expected = await db.fetchval(
        f"SELECT count(*) FROM {table} WHERE tenant = '' AND name = 'content'"
    )
    reply = await _explore(channel)
    assert reply.method == "pca"
    assert reply.space_id == str(space_id)
    assert reply.total_vectors == expected == len(reply.points)
    assert {p.node_id for p in reply.points} == set(RECIPES) | set(GUIDES)
    for point in reply.points:
        assert math.isfinite(point.x)
        assert math.isfinite(point.y)
        assert point.slug == f"{point.node_id}-page"
        assert point.content_type == ("recipe" if point.node_id in RECIPES else "guide")
        assert point.title == (RECIPES | GUIDES)[point.node_id][0]
    first, second = reply.explained_variance
    assert 0.0 <= second <= first <= 1.0
    assert first + second <= 1.0
    # Cooking and networking land in two separate regions of the map.
    xy = {p.node_id: np.array([p.x, p.y]) for p in reply.points}
    groups = [np.array([xy[k] for k in docs]) for docs in (RECIPES, GUIDES)]
    centres = [g.mean(axis=0) for g in groups]
    spread = np.mean(
        [np.linalg.norm(g - c, axis=1).mean() for g, c in zip(groups, centres, strict=True)]
    )
    assert np.linalg.norm(centres[0] - centres[1]) > spread


async def test_explore_filters_samples_and_repeats_by_seed(channel: grpc.aio.Channel) -> None:
    await _load(channel)
    recipes = await _explore(channel, content_types=["recipe"])
    assert {p.content_type for p in recipes.points} == {"recipe"}
    assert {p.node_id for p in recipes.points} == set(RECIPES)
    assert recipes.total_vectors == len(recipes.points)

    everything = await _explore(channel)
    small = await _explore(channel, sample=5, seed=7)
    assert len(small.points) == 5
    assert small.total_vectors == everything.total_vectors
    again = await _explore(channel, sample=5, seed=7)
    assert [(p.node_id, p.chunk_index, p.x, p.y) for p in again.points] == [
        (p.node_id, p.chunk_index, p.x, p.y) for p in small.points
    ]
    other = await _explore(channel, sample=5, seed=8)
    assert [p.node_id for p in other.points] != [p.node_id for p in small.points]

    nobody = await _explore(channel, tenant="empty-tenant")
    assert (len(nobody.points), nobody.total_vectors) == (0, 0)
    assert list(nobody.explained_variance) == [0.0, 0.0]
    none_named = await _explore(channel, vector_name="summary")
    assert none_named.total_vectors == 0


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({"sample": 5001}, grpc.StatusCode.INVALID_ARGUMENT, "sample"),
        (
            {"content_types": ["recipe", "Bad!"]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "content_types[1]",
        ),
        ({"vector_name": "a\x00b"}, grpc.StatusCode.INVALID_ARGUMENT, "vector_name"),
        ({"tenant": "no tenant"}, grpc.StatusCode.INVALID_ARGUMENT, "tenant"),
        ({"space_id": "999"}, grpc.StatusCode.NOT_FOUND, "999"),
    ],
)
async def test_a_bad_explore_request_is_refused_naming_the_field(
    channel: grpc.aio.Channel, fields: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _explore(channel, **fields)
    assert caught.value.code() is code
    assert words in (caught.value.details() or "")
