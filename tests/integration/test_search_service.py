"""The search service through gRPC: idempotent versioned writes, the three search modes,
filters, nearest, stats, admin spaces, and clear errors. Real PostgreSQL, real embedder."""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import numpy as np
import pytest
from indexer_kit import running_search, search_env

from semantic.common.auth import mint_token
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

DOCS = {
    "cache": ("Caching HTTP responses", "Use Cache-Control headers and ETags to cache responses."),
    "pasta": ("Fresh pasta at home", "Flour, eggs and a rolling pin make silky tagliatelle."),
    "tls": ("Renewing TLS certificates", "Automate certificate renewal with ACME before expiry."),
    "bread": ("Sourdough bread", "A starter, flour, water and salt; long fermentation."),
    "index": ("Database indexes", "B-tree indexes speed up lookups; HNSW indexes find vectors."),
}


SECRET = "test-secret-0123456789-abcdefghijklmnop"


def _env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


@pytest.fixture
async def stub(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[search_pb2_grpc.SearchStub]:
    env = _env(database_url, embedder_address, fp32_model_dir)
    async with running_search(env, monkeypatch) as channel:
        yield search_pb2_grpc.SearchStub(channel)


@pytest.fixture
async def secured(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[search_pb2_grpc.SearchStub]:
    env = {
        **_env(database_url, embedder_address, fp32_model_dir),
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": "semantic",
    }
    async with running_search(env, monkeypatch) as channel:
        yield search_pb2_grpc.SearchStub(channel)


def _auth(roles: list[str], tenant: str | None = None) -> list[tuple[str, str]]:
    token = mint_token(SECRET, subject="svc", roles=roles, tenant=tenant, audience="semantic")
    return [("authorization", f"Bearer {token}")]


async def test_tenant_claim_forces_the_tenant_on_writes_and_reads(secured) -> None:  # type: ignore[no-untyped-def]
    node = cpb.Node(id="doc", content_type="page", title="Acme pricing", body="Plans and prices")
    await secured.Upsert(pb.UpsertRequest(nodes=[node]), metadata=_auth(["writer"], "acme"))
    mine = await secured.Get(pb.GetRequest(ids=["doc"]), metadata=_auth(["reader"], "acme"))
    assert [n.tenant for n in mine.nodes] == ["acme"]
    theirs = await secured.Get(pb.GetRequest(ids=["doc"]), metadata=_auth(["reader"], "globex"))
    assert list(theirs.missing_ids) == ["doc"]
    hits = await secured.Search(
        pb.SearchRequest(text="pricing", mode=pb.SEARCH_MODE_KEYWORD),
        metadata=_auth(["reader"], "globex"),
    )
    assert list(hits.hits) == []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secured.Get(
            pb.GetRequest(tenant="acme", ids=["doc"]), metadata=_auth(["reader"], "globex")
        )
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_roles_and_tokens_are_enforced_by_the_service(secured) -> None:  # type: ignore[no-untyped-def]
    node = cpb.Node(id="doc", content_type="page", title="t")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secured.Upsert(pb.UpsertRequest(nodes=[node]), metadata=_auth(["reader"]))
    assert caught.value.code() is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await secured.Stats(pb.StatsRequest())
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    stats = await secured.Stats(pb.StatsRequest(), metadata=_auth(["reader"]))
    assert stats.nodes_total == 0


def _node(key: str, version: int = 1, **extra: object) -> cpb.Node:
    title, body = DOCS[key]
    node = cpb.Node(id=key, slug=f"{key}-page", content_type="article", title=title, body=body)
    node.version = version
    for name, value in extra.items():
        if name == "metadata":
            node.metadata.update(value)  # type: ignore[arg-type]
        elif name == "tags":
            node.tags.extend(value)  # type: ignore[arg-type]
        else:
            setattr(node, name, value)
    return node


async def _load(stub: search_pb2_grpc.SearchStub) -> None:
    nodes = [_node(k, metadata={"rank": i, "lang": "en"}, tags=["kb"]) for i, k in enumerate(DOCS)]
    nodes[1].content_type = "recipe"
    nodes[3].content_type = "recipe"
    reply = await stub.Upsert(pb.UpsertRequest(nodes=nodes))
    assert [r.outcome for r in reply.results] == [pb.UPSERT_OUTCOME_CREATED] * len(DOCS)


async def test_resending_the_same_node_changes_nothing(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    again = await stub.Upsert(
        pb.UpsertRequest(nodes=[_node("cache", metadata={"rank": 0, "lang": "en"}, tags=["kb"])])
    )
    assert again.results[0].outcome == pb.UPSERT_OUTCOME_UNCHANGED
    assert again.results[0].vectors_written == 0


async def test_input_limits_come_from_the_settings(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **_env(database_url, embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_MAX_TAGS": "2",
        "SEMANTIC_SEARCH_MAX_QUERY_CHARS": "20",
    }
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as tags:
            await stub.Upsert(pb.UpsertRequest(nodes=[_node("tls", tags=["a", "b", "c"])]))
        assert tags.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nodes[0].tags" in (tags.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as query:
            await stub.Search(pb.SearchRequest(text="x" * 21, mode=pb.SEARCH_MODE_KEYWORD))
        assert query.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "text" in (query.value.details() or "")
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("tls", tags=["a", "b"])]))


async def test_get_answers_in_request_order(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    got = await stub.Get(pb.GetRequest(ids=["tls", "absent", "cache", "tls"], slugs=["pasta-page"]))
    assert [n.id for n in got.nodes] == ["tls", "cache", "tls", "pasta"]
    assert list(got.missing_ids) == ["absent"]


async def test_older_version_never_overwrites_a_newer_one(stub) -> None:  # type: ignore[no-untyped-def]
    await stub.Upsert(pb.UpsertRequest(nodes=[_node("tls", version=5)]))
    old = _node("tls", version=3)
    old.body = "an outdated body"
    reply = await stub.Upsert(pb.UpsertRequest(nodes=[old]))
    assert reply.results[0].outcome == pb.UPSERT_OUTCOME_STALE
    got = await stub.Get(pb.GetRequest(ids=["tls"]))
    assert got.nodes[0].body == DOCS["tls"][1]
    assert got.nodes[0].version == 5


async def test_metadata_update_never_rewrites_vector_rows(stub, database_url: str) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    conn = await asyncpg.connect(database_url)
    try:
        table = "semantic.vectors_" + str(
            await conn.fetchval("SELECT space_id FROM semantic.space_aliases WHERE name = 'active'")
        )
        before = await conn.fetch(f"SELECT ctid, xmin FROM {table} WHERE node_id = 'pasta'")
        reply = await stub.Upsert(
            pb.UpsertRequest(
                nodes=[
                    _node(
                        "pasta",
                        version=2,
                        content_type="recipe",
                        metadata={"rank": 9},
                        tags=["new"],
                    )
                ]
            )
        )
        assert reply.results[0].outcome == pb.UPSERT_OUTCOME_METADATA_UPDATED
        after = await conn.fetch(f"SELECT ctid, xmin FROM {table} WHERE node_id = 'pasta'")
    finally:
        await conn.close()
    assert before
    assert [tuple(r) for r in before] == [tuple(r) for r in after]


async def test_delete_leaves_a_tombstone_that_blocks_older_upserts(stub) -> None:  # type: ignore[no-untyped-def]
    await stub.Upsert(pb.UpsertRequest(nodes=[_node("bread", version=4)]))
    deleted = await stub.Delete(pb.DeleteRequest(slugs=["bread-page"], version=6))
    assert deleted.deleted == 1
    late = await stub.Upsert(pb.UpsertRequest(nodes=[_node("bread", version=5)]))
    assert late.results[0].outcome == pb.UPSERT_OUTCOME_STALE
    newer = await stub.Upsert(pb.UpsertRequest(nodes=[_node("bread", version=7)]))
    assert newer.results[0].outcome == pb.UPSERT_OUTCOME_CREATED


async def test_a_versioned_delete_by_a_slug_no_node_holds_blocks_an_older_upsert_by_it(  # type: ignore[no-untyped-def]
    stub,
) -> None:
    deleted = await stub.Delete(pb.DeleteRequest(slugs=["late-page"], version=6))
    assert [(r.id, r.slug, r.outcome) for r in deleted.results] == [
        ("", "late-page", pb.DELETE_OUTCOME_NOT_FOUND)
    ]
    assert deleted.deleted == 0
    title, body = DOCS["bread"]
    by_slug = cpb.Node(slug="late-page", content_type="article", title=title, body=body)
    by_slug.version = 5  # older than the delete: an upsert by that slug creates no node
    late = await stub.Upsert(pb.UpsertRequest(nodes=[by_slug]))
    assert late.results[0].outcome == pb.UPSERT_OUTCOME_STALE
    assert not (await stub.Get(pb.GetRequest(slugs=["late-page"]))).nodes
    by_slug.version = 7
    newer = await stub.Upsert(pb.UpsertRequest(nodes=[by_slug]))
    assert newer.results[0].outcome == pb.UPSERT_OUTCOME_CREATED
    # The id a slug would create, held by a node with another slug: not this delete's.
    await stub.Upsert(pb.UpsertRequest(nodes=[_node("pasta", version=1)]))
    other = await stub.Delete(pb.DeleteRequest(slugs=["pasta"], version=9))
    assert [(r.id, r.slug, r.outcome) for r in other.results] == [
        ("", "pasta", pb.DELETE_OUTCOME_NOT_FOUND)
    ]
    assert [n.id for n in (await stub.Get(pb.GetRequest(ids=["pasta"]))).nodes] == ["pasta"]
    # Unversioned, nothing is remembered: an upsert by the slug creates the node.
    await stub.Delete(pb.DeleteRequest(slugs=["free-page"]))
    free = cpb.Node(slug="free-page", content_type="article", title=title, body=body)
    free.version = 1
    created = await stub.Upsert(pb.UpsertRequest(nodes=[free]))
    assert created.results[0].outcome == pb.UPSERT_OUTCOME_CREATED


async def test_a_versioned_delete_by_slug_tombstones_the_slug_whatever_id_comes_later(  # type: ignore[no-untyped-def]
    stub,
) -> None:
    """Applied out of publish order (two consumer loops, two replicas), events naming one
    page by id and by slug must end as in order. A delete naming a slug tombstones the
    slug: a later write carrying it at that version or older is stale, whatever its id."""
    title, body = DOCS["bread"]
    # Published: upsert id=P slug=S v1, then delete slug=S v2. Applied the other way round.
    await stub.Delete(pb.DeleteRequest(slugs=["swapped"], version=2))
    first = cpb.Node(id="P", slug="swapped", content_type="article", title=title, body=body)
    first.version = 1
    late = await stub.Upsert(pb.UpsertRequest(nodes=[first]))
    assert late.results[0].outcome == pb.UPSERT_OUTCOME_STALE
    assert not (await stub.Get(pb.GetRequest(ids=["P"], slugs=["swapped"]))).nodes
    first.version = 3  # newer than the delete: the page is back
    again = await stub.Upsert(pb.UpsertRequest(nodes=[first]))
    assert again.results[0].outcome == pb.UPSERT_OUTCOME_CREATED

    # Published: upsert id=D slug=T v1, upsert slug=T v2, delete slug=T v3. Applied: the
    # first, the delete (it finds D), then the slug-only upsert, which found no node by then
    # and created one whose id is the slug.
    owner = cpb.Node(id="D", slug="taken", content_type="article", title=title, body=body)
    owner.version = 1
    await stub.Upsert(pb.UpsertRequest(nodes=[owner]))
    gone = await stub.Delete(pb.DeleteRequest(slugs=["taken"], version=3))
    assert [(r.id, r.outcome) for r in gone.results] == [("D", pb.DELETE_OUTCOME_DELETED)]
    by_slug = cpb.Node(slug="taken", content_type="article", title=title, body="v2")
    by_slug.version = 2
    stale = await stub.Upsert(pb.UpsertRequest(nodes=[by_slug]))
    assert stale.results[0].outcome == pb.UPSERT_OUTCOME_STALE
    assert not (await stub.Get(pb.GetRequest(slugs=["taken"]))).nodes
    # A delete by id names no slug: another node may take the slug at any version.
    await stub.Upsert(pb.UpsertRequest(nodes=[_node("bread", version=4)]))
    await stub.Delete(pb.DeleteRequest(ids=["bread"], version=9))
    reuse = cpb.Node(id="fresh", slug="bread-page", content_type="article", title=title, body=body)
    reuse.version = 1
    fresh = await stub.Upsert(pb.UpsertRequest(nodes=[reuse]))
    assert fresh.results[0].outcome == pb.UPSERT_OUTCOME_CREATED


async def test_a_creation_time_given_on_upsert_is_kept_and_filtered_on(stub) -> None:  # type: ignore[no-untyped-def]
    published = datetime(2020, 5, 1, 12, 0, tzinfo=UTC)
    node = _node("bread", version=1)
    node.created_at.FromDatetime(published)
    await stub.Upsert(pb.UpsertRequest(nodes=[node]))
    await stub.Upsert(pb.UpsertRequest(nodes=[_node("tls", version=1)]))  # no time: now

    async def created() -> datetime:
        got = await stub.Get(pb.GetRequest(ids=["bread"]))
        return got.nodes[0].created_at.ToDatetime(tzinfo=UTC)

    assert await created() == published
    in_2020 = cpb.Filter()
    in_2020.created.start.FromDatetime(datetime(2020, 1, 1, tzinfo=UTC))
    in_2020.created.end.FromDatetime(datetime(2021, 1, 1, tzinfo=UTC))
    found = await stub.Search(
        pb.SearchRequest(text="bread", mode=pb.SEARCH_MODE_KEYWORD, filter=in_2020, top_k=5)
    )
    assert [h.node.id for h in found.hits] == ["bread"]
    newer = _node("bread", version=2, tags=["kept"])  # a later version without a time
    await stub.Upsert(pb.UpsertRequest(nodes=[newer]))
    assert await created() == published
    moved = _node("bread", version=3)
    moved.created_at.FromDatetime(datetime(2019, 1, 1, tzinfo=UTC))
    reply = await stub.Upsert(pb.UpsertRequest(nodes=[moved]))
    assert reply.results[0].outcome == pb.UPSERT_OUTCOME_METADATA_UPDATED
    assert await created() == datetime(2019, 1, 1, tzinfo=UTC)


async def test_named_targets_are_explained_with_their_weights(stub) -> None:  # type: ignore[no-untyped-def]
    """Each target with its weight; one the node has no vector for counts 0, as it did in
    the score (the weighted mean); a client vector without a span has no span."""
    axis = np.eye(384, dtype=np.float32)
    node = cpb.Node(id="cv", content_type="page", title="client vectors")
    for name, vector in (("content", axis[0]), ("alpha", axis[1])):
        node.vectors.add(name=name, vector=cpb.Vector(values=vector.tolist()))
    await stub.Upsert(pb.UpsertRequest(nodes=[node]))
    query = (0.6 * axis[0] + 0.8 * axis[1]).astype(np.float32)
    request = pb.SearchRequest(
        vector=cpb.Vector(values=query.tolist()), mode=pb.SEARCH_MODE_DENSE, top_k=1
    )
    for name, weight in (("content", 3.0), ("alpha", 1.0), ("beta", 2.0)):
        request.targets.add(name=name, weight=weight)
    (hit,) = (await stub.Search(request)).hits
    explained = [(t.name, round(t.similarity, 4), t.weight) for t in hit.explanation.targets]
    assert explained == [("content", 0.6, 3.0), ("alpha", 0.8, 1.0), ("beta", 0.0, 2.0)]
    assert hit.score == pytest.approx((3 * 0.6 + 0.8) / 6, abs=1e-5)
    assert not hit.chunk.HasField("span")
    assert hit.chunk.text == ""


@pytest.mark.parametrize(
    "mode", [pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD, pb.SEARCH_MODE_HYBRID]
)
async def test_each_mode_finds_the_matching_document(stub, mode: int) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    reply = await stub.Search(
        pb.SearchRequest(text="how do I renew certificates", mode=mode, top_k=3)  # type: ignore[arg-type]
    )
    assert reply.hits[0].node.id == "tls"
    explanation = reply.hits[0].explanation
    if mode != pb.SEARCH_MODE_KEYWORD:
        assert explanation.dense_rank == 1
        assert reply.hits[0].chunk.text
    if mode != pb.SEARCH_MODE_DENSE:
        assert explanation.keyword_rank == 1


async def test_hybrid_search_fuses_with_the_configured_rrf_k(
    database_url: str, embedder_address: str, fp32_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {
        **_env(database_url, embedder_address, fp32_model_dir),
        "SEMANTIC_SEARCH_FUSION": "rrf",
        "SEMANTIC_SEARCH_RRF_K": "5",
    }
    text, hybrid = "how do I renew certificates", pb.SEARCH_MODE_HYBRID
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await _load(stub)
        configured = await stub.Search(pb.SearchRequest(text=text, mode=hybrid, top_k=3))
        asked = await stub.Search(
            pb.SearchRequest(text=text, mode=hybrid, top_k=3, hybrid=pb.HybridParams(rrf_k=7))
        )
    top = configured.hits[0].explanation
    assert (top.dense_rank, top.keyword_rank) == (1, 1)
    assert top.fused_score == pytest.approx(1 / 6 + 1 / 6)  # the service's k
    assert asked.hits[0].explanation.fused_score == pytest.approx(1 / 8 + 1 / 8)  # the request's


async def test_filters_restrict_the_results(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    flt = cpb.Filter(content_types=["recipe"])
    reply = await stub.Search(
        pb.SearchRequest(text="web caching", mode=pb.SEARCH_MODE_DENSE, filter=flt)
    )
    assert {h.node.id for h in reply.hits} == {"pasta", "bread"}
    ranged = cpb.Filter(
        metadata=[cpb.MetadataCondition(key="rank", number_range=cpb.NumberRange(gte=3))]
    )
    reply = await stub.Search(
        pb.SearchRequest(text="anything", mode=pb.SEARCH_MODE_DENSE, filter=ranged)
    )
    assert {h.node.id for h in reply.hits} == {"bread", "index"}


async def test_pagination_and_min_score(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    full = await stub.Search(pb.SearchRequest(text="bread", mode=pb.SEARCH_MODE_DENSE, top_k=5))
    second = await stub.Search(
        pb.SearchRequest(text="bread", mode=pb.SEARCH_MODE_DENSE, top_k=2, offset=2)
    )
    assert [h.node.id for h in second.hits] == [h.node.id for h in full.hits[2:4]]
    cut = full.hits[1].score
    strict = await stub.Search(
        pb.SearchRequest(text="bread", mode=pb.SEARCH_MODE_DENSE, top_k=5, min_score=cut)
    )
    assert all(h.score >= cut for h in strict.hits)
    assert len(strict.hits) == 2


async def test_vector_query_and_client_vectors(stub) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    vector = rng.normal(size=384).astype("<f4")
    node = cpb.Node(id="v1", content_type="fix", title="pushed", body="")
    node.vectors.append(cpb.NamedVector(name="code", vector=cpb.Vector(packed=vector.tobytes())))
    await stub.Upsert(pb.UpsertRequest(nodes=[node]))
    reply = await stub.Search(
        pb.SearchRequest(
            vector=cpb.Vector(values=vector.tolist()), targets=[pb.VectorTarget(name="code")]
        )
    )
    assert reply.hits[0].node.id == "v1"
    assert reply.hits[0].score == pytest.approx(1.0, abs=1e-5)


async def test_new_client_vectors_for_the_same_text_are_a_new_content(stub) -> None:  # type: ignore[no-untyped-def]
    """The newest version wins with its own vectors: the same text with other client
    vectors is UPDATED (not METADATA_UPDATED, keeping the old ones), the same vectors
    again are UNCHANGED, and a version without them has its texts embedded instead."""
    rng = np.random.default_rng(2)
    first, second = (rng.normal(size=384).astype("<f4") for _ in range(2))

    def node(version: int, vector: np.ndarray | None) -> cpb.Node:
        made = cpb.Node(id="cv1", content_type="fix", title="same", body="text", version=version)
        if vector is not None:
            made.vectors.append(
                cpb.NamedVector(name="code", vector=cpb.Vector(packed=vector.tobytes()))
            )
        return made

    async def upsert(version: int, vector: np.ndarray | None) -> int:
        reply = await stub.Upsert(pb.UpsertRequest(nodes=[node(version, vector)]))
        return reply.results[0].outcome

    async def code_vectors() -> list[np.ndarray]:
        reply = await stub.Get(pb.GetRequest(ids=["cv1"], include_vectors=True))
        return [
            np.frombuffer(v.vector.packed, "<f4") if v.vector.packed else np.array(v.vector.values)
            for v in reply.nodes[0].vectors
            if v.name == "code"
        ]

    assert await upsert(1, first) == pb.UPSERT_OUTCOME_CREATED
    assert await upsert(2, second) == pb.UPSERT_OUTCOME_UPDATED
    (stored,) = await code_vectors()
    np.testing.assert_allclose(stored, second, rtol=1e-6)
    assert await upsert(2, second) == pb.UPSERT_OUTCOME_UNCHANGED
    assert await upsert(2, first) == pb.UPSERT_OUTCOME_STALE  # one version, one content
    assert await upsert(3, None) == pb.UPSERT_OUTCOME_UPDATED
    assert await code_vectors() == []


async def test_upsert_by_slug_alone_creates_then_updates_that_node(stub) -> None:  # type: ignore[no-untyped-def]
    """Node.id may be empty when the slug is set: a new node takes the slug as its id
    (as a content event by slug), the node that holds the slug is updated."""

    def node(body: str, version: int, node_id: str = "") -> cpb.Node:
        return cpb.Node(
            id=node_id, slug="by-slug", content_type="page", title="T", body=body, version=version
        )

    created = (await stub.Upsert(pb.UpsertRequest(nodes=[node("one", 1)]))).results[0]
    assert created.outcome == pb.UPSERT_OUTCOME_CREATED
    assert created.id == "by-slug"
    updated = (await stub.Upsert(pb.UpsertRequest(nodes=[node("two", 2)]))).results[0]
    assert (updated.id, updated.outcome) == (created.id, pb.UPSERT_OUTCOME_UPDATED)
    got = await stub.Get(pb.GetRequest(slugs=["by-slug"]))
    assert [(n.id, n.body) for n in got.nodes] == [(created.id, "two")]
    for twice in ([node("x", 3), node("y", 3)], [node("x", 3), node("y", 3, created.id)]):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Upsert(pb.UpsertRequest(nodes=twice))
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (caught.value.details() or "").startswith("nodes[1]")
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # neither id nor slug
        await stub.Upsert(pb.UpsertRequest(nodes=[cpb.Node(content_type="page", title="T")]))
    assert (caught.value.details() or "").startswith("nodes[0].id")


async def test_nearest_by_slug_excludes_itself(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    reply = await stub.Nearest(pb.NearestRequest(slug="bread-page", top_k=2))
    ids = [h.node.id for h in reply.hits]
    assert "bread" not in ids
    assert ids[0] == "pasta"
    assert reply.source_id == "bread"


async def test_nearest_unknown_slug_is_not_found(stub) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Nearest(pb.NearestRequest(slug="no-such-page"))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert "no-such-page" in (caught.value.details() or "")


async def test_stats_counts_nodes_and_vectors(stub) -> None:  # type: ignore[no-untyped-def]
    await _load(stub)
    stats = await stub.Stats(pb.StatsRequest())
    assert stats.nodes_total == 5
    assert {c.content_type: c.nodes for c in stats.nodes_by_content_type} == {
        "article": 3,
        "recipe": 2,
    }
    assert stats.active_space.vectors >= 5
    assert stats.active_space.nodes == 5
    assert [s.nodes for s in stats.spaces] == [5]
    assert stats.heal_backlog.missing == 0
    assert {r.kind for r in stats.relations} == {"table", "index"}
    assert (stats.users, stats.user_events) == (0, 0)
    events = [
        epb.UserEvent(event_id=f"e{i}", user_id=user, node_id="tls", action=epb.USER_ACTION_VIEW)
        for i, user in enumerate(["u1", "u1", "u2"])
    ]
    await stub.Track(pb.TrackRequest(events=events))
    elsewhere = _node("pasta")
    elsewhere.tenant = "other"
    await stub.Upsert(pb.UpsertRequest(nodes=[elsewhere]))
    other = epb.UserEvent(
        event_id="o1", user_id="u1", tenant="other", node_id="pasta", action=epb.USER_ACTION_VIEW
    )
    await stub.Track(pb.TrackRequest(events=[other]))  # another tenant: not counted
    stats = await stub.Stats(pb.StatsRequest())
    assert (stats.users, stats.user_events) == (2, 3)
    every = await stub.Stats(pb.StatsRequest(all_tenants=True))
    assert (every.users, every.user_events) == (3, 4)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.UpsertRequest(nodes=[cpb.Node(id="x")]), "nodes[0].content_type"),
        (pb.UpsertRequest(nodes=[cpb.Node(content_type="page")]), "nodes[0].id"),
        (
            pb.UpsertRequest(
                nodes=[
                    cpb.Node(
                        id="x",
                        content_type="page",
                        vectors=[cpb.NamedVector(name="c", vector=cpb.Vector(values=[1, 2]))],
                    )
                ]
            ),
            "nodes[0].vectors[0].vector",
        ),
    ],
)
async def test_bad_upsert_is_invalid_argument_naming_the_field(stub, request_, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Upsert(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}: ")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.SearchRequest(), "text"),
        (pb.SearchRequest(text="x", top_k=100_000), "top_k"),
        (
            pb.SearchRequest(vector=cpb.Vector(values=[1.0] * 384), mode=pb.SEARCH_MODE_KEYWORD),
            "mode",
        ),
        (pb.SearchRequest(vector=cpb.Vector(values=[1.0, 2.0])), "vector"),
        (
            pb.SearchRequest(
                text="x",
                filter=cpb.Filter(
                    metadata=[cpb.MetadataCondition(key="", number_range=cpb.NumberRange(gte=1))]
                ),
            ),
            "filter.metadata[0]",
        ),
    ],
)
async def test_bad_search_is_invalid_argument_naming_the_field(stub, request_, field) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Search(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(field), caught.value.details()
