"""An indexer batch ends exactly as its events applied one at a time, in order.

Random short sequences of content events over a few nodes and slugs (upserts and deletes,
named by id or by slug, versions with ties and repeats, slugs renamed and reused) are
applied twice against a real PostgreSQL: once event by event, in one tenant, and once as
one batch through the processor, in another. Both tenants must end with the same nodes
(id, slug, version, title) and the same tombstones. A batch that fails as a whole is
applied event by event, as the consumer isolates it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from indexer_kit import write_paths

from semantic.core.domain import NodeRecord
from semantic.indexer.events import ContentChange
from semantic.indexer.processor import ChangeProcessor, segments

pytestmark = pytest.mark.integration

SEQUENCES = 80
IDS = ("a", "b", "c", "s1")  # "s1" is also a slug: an id another node's slug may name
SLUGS = ("s1", "s2")


def _event(rng: random.Random, number: int) -> dict[str, Any]:
    by_slug = rng.random() < 0.35
    return {
        "upsert": rng.random() < 0.7,
        "id": "" if by_slug else rng.choice(IDS),
        "slug": rng.choice(SLUGS) if by_slug else None,
        "node_slug": rng.choice((None, *SLUGS)),
        "version": rng.choice((0, 1, 2, 2, 3, 4)) if rng.random() < 0.1 else rng.randint(1, 4),
        "title": f"title {number}",
    }


def _change(event: dict[str, Any], tenant: str, number: int) -> ContentChange:
    node = None
    if event["upsert"]:
        node = NodeRecord(
            tenant=tenant,
            id=event["id"],
            content_type="page",
            slug=event["slug"] or event["node_slug"],
            title=event["title"],
            body="a short body",
            version=event["version"],
        )
    return ContentChange(
        event_id=f"{tenant}-{number}",
        upsert=event["upsert"],
        tenant=tenant,
        id=event["id"],
        slug=event["slug"],
        version=event["version"],
        node=node,
        occurred_at=None,
        source="tests",
    )


@pytest.fixture
async def processor(
    database_url: str,
    embedder_address: str,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> AsyncIterator[tuple[ChangeProcessor, asyncpg.Pool]]:
    async with write_paths(database_url, embedder_address, service_starter) as paths:
        yield paths.processors[0], paths.pools[0]


async def _one_by_one(processor: ChangeProcessor, changes: list[ContentChange]) -> None:
    for change in changes:
        try:
            await processor.apply([change])
        except Exception:
            continue


async def _state(pool: asyncpg.Pool, tenant: str) -> tuple[list[Any], list[Any]]:
    nodes = await pool.fetch(
        "SELECT id, slug, version, title FROM semantic.nodes WHERE tenant = $1 ORDER BY id",
        tenant,
    )
    tombs = await pool.fetch(
        "SELECT id, version FROM semantic.node_tombstones WHERE tenant = $1 ORDER BY id", tenant
    )
    return [tuple(r) for r in nodes], [tuple(r) for r in tombs]


async def test_a_batch_ends_as_its_events_applied_one_at_a_time(
    processor: tuple[ChangeProcessor, asyncpg.Pool],
) -> None:
    apply, pool = processor
    rng = random.Random(20261207)
    cut = 0
    for sequence in range(SEQUENCES):
        events = [_event(rng, n) for n in range(rng.randint(2, 6))]
        alone, together = f"one{sequence}", f"batch{sequence}"
        await _one_by_one(apply, [_change(e, alone, n) for n, e in enumerate(events)])
        batch = [_change(e, together, n) for n, e in enumerate(events)]
        cut += len(segments(batch)) > 1
        try:
            await apply.apply(batch)
        except Exception:
            await _one_by_one(apply, batch)
        assert await _state(pool, together) == await _state(pool, alone), events
    assert cut >= SEQUENCES // 4  # the sequences do exercise the cuts


def _named(key: str, version: int, *, upsert: bool = True, slug: str | None = None) -> Any:
    """An event for ``segments``: ``key`` an id, or ``slug:x`` for a node named by slug."""
    by_slug = key.startswith("slug:")
    node_slug = key[5:] if by_slug else slug
    node = NodeRecord(tenant="", id="", content_type="page", slug=node_slug) if upsert else None
    return ContentChange(
        event_id=f"{key}-{version}",
        upsert=upsert,
        tenant="",
        id="" if by_slug else key,
        slug=key[5:] if by_slug else None,
        version=version,
        node=node,
        occurred_at=None,
        source="tests",
    )


def test_segments_cut_only_where_order_could_matter() -> None:
    def sizes(*changes: ContentChange) -> list[int]:
        return [len(s) for s in segments(list(changes))]

    # repeated versions of nodes named by id (keeping their slug): one transaction
    assert sizes(_named("a", 1, slug="s"), _named("a", 2, slug="s"), _named("b", 1)) == [3]
    # nodes named by slug, each its own: one transaction
    assert sizes(_named("slug:x", 1), _named("slug:y", 1), _named("slug:x", 2)) == [3]
    # a slug after an id (which may free or take it), and the other way round
    assert sizes(_named("a", 1), _named("slug:x", 2, upsert=False)) == [1, 1]
    assert sizes(_named("slug:x", 1), _named("a", 1)) == [1, 1]
    # one slug written by two nodes
    assert sizes(_named("a", 1, slug="s"), _named("b", 1, slug="s")) == [1, 1]
    # unversioned events of one node keep their order
    assert sizes(_named("a", 0), _named("a", 1)) == [1, 1]
    assert sizes(_named("a", 1), _named("a", 0)) == [1, 1]
    assert sizes(_named("a", 0), _named("b", 0)) == [2]
    # a slug deleted, then named again: it names another node by then
    assert sizes(_named("slug:x", 2, upsert=False), _named("slug:x", 2)) == [1, 1]


async def test_a_delete_by_a_slug_no_node_holds_spares_the_node_with_that_id(
    processor: tuple[ChangeProcessor, asyncpg.Pool],
) -> None:
    apply, pool = processor
    holder = _change(
        {
            "upsert": True,
            "id": "s9",
            "slug": None,
            "node_slug": "other",
            "version": 1,
            "title": "a node whose id is a slug",
        },
        "spare",
        0,
    )
    await apply.apply([holder])
    gone = {"upsert": False, "id": "", "slug": "s9", "node_slug": None, "version": 5, "title": ""}
    outcome = await apply.apply([_change(gone, "spare", 1)])
    assert outcome.outcomes["not_found"] == 1
    nodes, tombs = await _state(pool, "spare")
    assert nodes == [("s9", "other", 1, "a node whose id is a slug")]
    assert tombs == []
    # Nobody has that id: the delete leaves its tombstone, and an older upsert by the slug
    # arriving later stays out.
    alone = {**gone, "slug": "s8"}
    await apply.apply([_change(alone, "spare", 2)])
    late = {"upsert": True, "id": "", "slug": "s8", "node_slug": None, "version": 3, "title": "x"}
    assert (await apply.apply([_change(late, "spare", 3)])).outcomes["stale"] == 1
    assert ("s8", 5) in (await _state(pool, "spare"))[1]


@pytest.mark.parametrize(
    "order",
    [
        # publish order first; then orders two consumer loops or replicas can apply them in
        (0, 1),
        (1, 0),
    ],
)
async def test_a_delete_by_slug_wins_over_an_older_upsert_by_id_in_any_order(
    processor: tuple[ChangeProcessor, asyncpg.Pool], order: tuple[int, int]
) -> None:
    """Published: upsert id=P slug=S v1, then delete slug=S v2. Applied one at a time in
    either order, P ends deleted (it survived when the delete came first: no node held S
    yet, and the upsert by id did not know the slug was deleted)."""
    apply, pool = processor
    tenant = f"swap{''.join(map(str, order))}"
    upsert = {"upsert": True, "id": "P", "slug": None, "node_slug": "s", "version": 1}
    delete = {"upsert": False, "id": "", "slug": "s", "node_slug": None, "version": 2}
    events = [{**upsert, "title": "t"}, {**delete, "title": ""}]
    for number in order:
        await apply.apply([_change(events[number], tenant, number)])
    nodes, _ = await _state(pool, tenant)
    assert nodes == []


async def test_a_slug_deleted_stays_deleted_for_an_older_upsert_by_slug(
    processor: tuple[ChangeProcessor, asyncpg.Pool],
) -> None:
    """Published: upsert id=D slug=S v1, upsert slug=S v2, delete slug=S v3. Applied: the
    first, the delete, then the slug-only upsert, which by then found no node holding S
    and created one whose id is S."""
    apply, pool = processor
    tenant = "slugged"
    events = [
        {"upsert": True, "id": "D", "slug": None, "node_slug": "s", "version": 1, "title": "1"},
        {"upsert": True, "id": "", "slug": "s", "node_slug": None, "version": 2, "title": "2"},
        {"upsert": False, "id": "", "slug": "s", "node_slug": None, "version": 3, "title": ""},
    ]
    for number in (0, 2, 1):
        await apply.apply([_change(events[number], tenant, number)])
    nodes, tombs = await _state(pool, tenant)
    assert nodes == []
    assert ("D", 3) in tombs
