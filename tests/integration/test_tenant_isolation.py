"""Tenant rules on every RPC of the search process, through the real service (real
PostgreSQL, a real embedder that checks tokens for LoadModel).

A token with a tenant claim is held to that tenant: asking for another one is
PERMISSION_DENIED and reads or writes nothing there, asking for none gets its own, and
nothing that spans every tenant (Stats with all_tenants, every Admin RPC but Explore,
which takes a tenant) is open to it.
A token without the claim may use any tenant its roles allow. The cases are parametrized
over the RPCs and a test checks that they cover every method of the service descriptors
whose request carries a tenant, so a new RPC is not left out.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message
from indexer_kit import running_search

from semantic.common.auth import (
    EVERY_TENANT_METHODS,
    METHOD_ROLES,
    PER_TENANT_ADMIN_METHODS,
    Role,
    mint_token,
)
from semantic.tools.devstack import EmbeddedPostgres
from semantic.tools.devstack.health import wait_serving
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

SECRET = "tenant-isolation-secret-0123456789-abcdefgh"
AUDIENCE = "semantic"
MINE, THEIRS = "acme", "globex"
SEARCH = pb.DESCRIPTOR.services_by_name["Search"]
ADMIN = pb.DESCRIPTOR.services_by_name["Admin"]


def _auth(role: Role, tenant: str | None = None, subject: str = "svc") -> list[tuple[str, str]]:
    token = mint_token(SECRET, subject=subject, roles=[role], tenant=tenant, audience=AUDIENCE)
    return [("authorization", f"Bearer {token}")]


def _node(tenant: str, node_id: str, title: str) -> cpb.Node:
    return cpb.Node(
        id=node_id, tenant=tenant, content_type="page", title=title, body=f"{title} and prices"
    )


@pytest.fixture(scope="module")
def jwt_embedder(fp32_model_dir: Path, service_starter: Callable[..., Any]) -> Iterator[str]:
    """An embedder that checks tokens with the search service's key."""
    service = service_starter(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
            "SEMANTIC_AUTH_MODE": "jwt",
            "SEMANTIC_AUTH_JWT_SECRET": SECRET,
            "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
        },
    )
    yield service.address
    assert service.stop() == 0


@pytest.fixture(scope="module")
async def channel(
    pg_server: EmbeddedPostgres, jwt_embedder: str, fp32_model_dir: Path
) -> AsyncIterator[grpc.aio.Channel]:
    """The search service with JWT auth on a database of this module, seeded with a node
    "doc" in both tenants (different titles) and a node "scratch" in the other tenant."""
    await wait_serving(jwt_embedder, name="embedder")
    name = f"t_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    env = {
        "DATABASE_URL": pg_server.url(name),
        "SEMANTIC_GRPC_HOST": "127.0.0.1",
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_EMBEDDER_ADDRESS": jwt_embedder,
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
    }
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            async with running_search(env, monkeypatch) as ch:
                search = search_pb2_grpc.SearchStub(ch)
                seed = [
                    _node(MINE, "doc", "Acme pricing"),
                    _node(THEIRS, "doc", "Globex pricing"),
                    _node(THEIRS, "scratch", "Globex scratch pricing"),
                    _node(THEIRS, "other", "Globex other pricing"),
                ]
                await search.Upsert(pb.UpsertRequest(nodes=seed), metadata=_auth(Role.WRITER))
                yield ch
    finally:
        pg_server.drop_database(name)


@pytest.fixture
def search(channel: grpc.aio.Channel) -> search_pb2_grpc.SearchStub:
    return search_pb2_grpc.SearchStub(channel)


# --- one request per RPC that takes a tenant ------------------------------------------


def _upsert(tenant: str) -> pb.UpsertRequest:
    return pb.UpsertRequest(nodes=[_node(tenant, "doc", "Hijacked title")])


def _delete(tenant: str) -> pb.DeleteRequest:
    return pb.DeleteRequest(tenant=tenant, ids=["scratch"])


def _get(tenant: str) -> pb.GetRequest:
    return pb.GetRequest(tenant=tenant, ids=["doc"])


def _search(tenant: str) -> pb.SearchRequest:
    return pb.SearchRequest(tenant=tenant, text="pricing", mode=pb.SEARCH_MODE_HYBRID)


def _nearest(tenant: str) -> pb.NearestRequest:
    return pb.NearestRequest(tenant=tenant, id="doc")


def _recommend(tenant: str) -> pb.RecommendRequest:
    return pb.RecommendRequest(tenant=tenant, positive=[pb.RecommendExample(id="doc")], top_k=5)


def _track(tenant: str, event_id: str = "") -> pb.TrackRequest:
    event = epb.UserEvent(
        event_id=event_id or uuid.uuid4().hex,
        user_id="svc",
        tenant=tenant,
        node_id="doc",
        action=epb.USER_ACTION_VIEW,
    )
    return pb.TrackRequest(events=[event])


def _stats(tenant: str) -> pb.StatsRequest:
    return pb.StatsRequest(tenant=tenant)


def _relate(tenant: str) -> pb.RelateRequest:
    relation = cpb.Relation(node_id="other", type="follows")
    return pb.RelateRequest(tenant=tenant, edges=[pb.Edge(source_id="doc", relation=relation)])


def _unrelate(tenant: str) -> pb.UnrelateRequest:
    return pb.UnrelateRequest(tenant=tenant, edges=[pb.EdgeKey(source_id="doc", target_id="x")])


def _related(tenant: str) -> pb.RelatedRequest:
    return pb.RelatedRequest(tenant=tenant, id="doc")


def _feedback(tenant: str) -> pb.FeedbackRequest:
    item = epb.FeedbackItem(feedback_id=f"fb-{tenant}", node_id="doc")
    item.outcome = epb.FEEDBACK_OUTCOME_SUCCESS
    return pb.FeedbackRequest(tenant=tenant, items=[item])


def _write_rules(tenant: str) -> pb.WriteRulesRequest:
    rule = cpb.Rule(id="no-discounts", pattern="discount", severity=cpb.RULE_SEVERITY_ERROR)
    return pb.WriteRulesRequest(tenant=tenant, node_id="doc", rules=[rule])


def _remove_rules(tenant: str) -> pb.RemoveRulesRequest:
    return pb.RemoveRulesRequest(tenant=tenant, node_id="doc", rule_ids=["no-discounts"])


def _check(tenant: str) -> pb.CheckRequest:
    return pb.CheckRequest(tenant=tenant, text="a discount on every price")


CASES: dict[str, Callable[[str], Message]] = {
    "Upsert": _upsert,
    "Delete": _delete,
    "Get": _get,
    "Search": _search,
    "Nearest": _nearest,
    "Recommend": _recommend,
    "Track": _track,
    "Stats": _stats,
    "Relate": _relate,
    "Unrelate": _unrelate,
    "Related": _related,
    "Feedback": _feedback,
    "WriteRules": _write_rules,
    "RemoveRules": _remove_rules,
    "Check": _check,
}


def _least_role(method: str) -> Role:
    return METHOD_ROLES[f"/{SEARCH.full_name}/{method}"]


async def _call(stub: Any, method: str, request: Message, metadata: Any) -> Any:
    return await getattr(stub, method)(request, metadata=metadata, timeout=30)


def _has_tenant(message: Descriptor, seen: frozenset[str] = frozenset()) -> bool:
    """Whether ``message`` has a ``tenant`` field, directly or in a nested message."""
    if message.full_name in seen:
        return False
    for field in message.fields:
        if field.name == "tenant":
            return True
        if field.message_type is not None and _has_tenant(
            field.message_type, seen | {message.full_name}
        ):
            return True
    return False


def test_the_cases_cover_every_rpc_whose_request_carries_a_tenant() -> None:
    with_tenant = {
        (service.name, method.name)
        for service in (SEARCH, ADMIN)
        for method in service.methods
        if _has_tenant(method.input_type)
    }
    # Admin Explore and ExplainRecommendation (its nested RecommendRequest) take a tenant
    # too; their cases are in "an admin RPC held to one tenant" and test_recommend_debug.
    assert with_tenant == {("Search", name) for name in CASES} | {
        ("Admin", "Explore"),
        ("Admin", "ExplainRecommendation"),
    }


def test_every_admin_rpc_but_the_per_tenant_ones_counts_as_acting_on_every_tenant() -> None:
    admin = {f"/{ADMIN.full_name}/{method.name}" for method in ADMIN.methods}
    per_tenant = {f"/{ADMIN.full_name}/{name}" for name in ("Explore", "ExplainRecommendation")}
    assert per_tenant == PER_TENANT_ADMIN_METHODS
    assert admin - PER_TENANT_ADMIN_METHODS <= EVERY_TENANT_METHODS
    assert not PER_TENANT_ADMIN_METHODS & EVERY_TENANT_METHODS  # they take a tenant instead
    search = {f"/{SEARCH.full_name}/{method.name}" for method in SEARCH.methods}
    assert not search & EVERY_TENANT_METHODS  # they take a tenant instead


# --- a token held to one tenant ---------------------------------------------------------


async def _their_state(search: search_pb2_grpc.SearchStub) -> tuple[Any, ...]:
    """What the other tenant holds, read with a token without a tenant claim."""
    unpinned = _auth(Role.ADMIN)
    got = await search.Get(
        pb.GetRequest(tenant=THEIRS, ids=["doc", "scratch", "other"]), metadata=unpinned
    )
    stats = await search.Stats(pb.StatsRequest(tenant=THEIRS), metadata=unpinned)
    return (
        sorted((n.id, n.title, n.version, n.content_hash) for n in got.nodes),
        stats.nodes_total,
    )


@pytest.mark.parametrize("method", list(CASES))
async def test_a_token_pinned_to_one_tenant_is_refused_another_and_changes_nothing_there(
    search: search_pb2_grpc.SearchStub, method: str
) -> None:
    before = await _their_state(search)
    for role in (_least_role(method), Role.ADMIN):  # no role lifts the tenant claim
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(search, method, CASES[method](THEIRS), _auth(role, tenant=MINE))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
        assert f"limited to tenant '{MINE}'" in (refused.value.details() or "")
    assert await _their_state(search) == before


async def test_an_upsert_naming_another_tenant_writes_none_of_its_nodes(
    search: search_pb2_grpc.SearchStub,
) -> None:
    nodes = [_node(MINE, "mixed-mine", "Mine"), _node(THEIRS, "mixed-theirs", "Theirs")]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.Upsert(pb.UpsertRequest(nodes=nodes), metadata=_auth(Role.WRITER, MINE))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    for tenant, node_id in ((MINE, "mixed-mine"), (THEIRS, "mixed-theirs")):
        got = await search.Get(
            pb.GetRequest(tenant=tenant, ids=[node_id]), metadata=_auth(Role.READER)
        )
        assert list(got.missing_ids) == [node_id]


async def test_a_refused_track_records_nothing(search: search_pb2_grpc.SearchStub) -> None:
    event_id = uuid.uuid4().hex
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.Track(_track(THEIRS, event_id), metadata=_auth(Role.WRITER, MINE))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    # The same event id is new to the other tenant: the refused call stored nothing.
    reply = await search.Track(_track(THEIRS, event_id), metadata=_auth(Role.WRITER))
    assert (reply.accepted, reply.duplicates) == (1, 0)


async def test_a_pinned_token_asking_for_no_tenant_reads_only_its_own(
    search: search_pb2_grpc.SearchStub,
) -> None:
    mine = _auth(Role.READER, tenant=MINE)
    got = await search.Get(pb.GetRequest(ids=["doc", "scratch"]), metadata=mine)
    assert [(n.tenant, n.title) for n in got.nodes] == [(MINE, "Acme pricing")]
    assert list(got.missing_ids) == ["scratch"]
    hits = await search.Search(
        pb.SearchRequest(text="pricing", mode=pb.SEARCH_MODE_HYBRID, top_k=10), metadata=mine
    )
    assert hits.hits
    assert {h.node.tenant for h in hits.hits} == {MINE}
    stats = await search.Stats(pb.StatsRequest(), metadata=mine)
    theirs = await search.Stats(pb.StatsRequest(tenant=THEIRS), metadata=_auth(Role.READER))
    assert stats.nodes_total < theirs.nodes_total  # acme has fewer nodes than globex
    # Vector and node counts are the tenant's own; table sizes (every tenant's rows) are
    # not shown to a pinned token.
    assert stats.active_space.nodes == stats.nodes_total
    assert stats.active_space.nodes < theirs.active_space.nodes
    assert stats.active_space.vectors < theirs.active_space.vectors
    assert not stats.relations
    assert theirs.relations


async def test_feedback_asking_for_no_tenant_goes_to_the_tokens_own(
    search: search_pb2_grpc.SearchStub,
) -> None:
    """Feedback with the tenant left empty is the pinned token's tenant's, as every RPC:
    it counts on acme's "doc", and "scratch" (globex's alone) is unknown."""
    mine = _auth(Role.WRITER, tenant=MINE)
    items = []
    for node_id in ("doc", "scratch"):
        item = epb.FeedbackItem(feedback_id=uuid.uuid4().hex, node_id=node_id)
        item.outcome = epb.FEEDBACK_OUTCOME_SUCCESS
        items.append(item)
    reply = await search.Feedback(pb.FeedbackRequest(items=items), metadata=mine)
    assert (reply.recorded, list(reply.unknown_node_items)) == (1, [1])
    assert set(reply.feedback) == {"doc"}
    # The default tenant holds no "doc": nothing was written there.
    default = await search.Feedback(
        pb.FeedbackRequest(items=[items[0]]), metadata=_auth(Role.WRITER)
    )
    assert (default.recorded, list(default.unknown_node_items)) == (0, [0])


# --- all tenants at once --------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["", MINE, THEIRS])
async def test_stats_of_all_tenants_is_refused_to_a_pinned_admin(
    search: search_pb2_grpc.SearchStub, tenant: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.Stats(
            pb.StatsRequest(tenant=tenant, all_tenants=True), metadata=_auth(Role.ADMIN, MINE)
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert f"limited to tenant '{MINE}'" in (refused.value.details() or "")


async def test_stats_of_all_tenants_needs_an_admin_without_a_tenant_claim(
    search: search_pb2_grpc.SearchStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await search.Stats(pb.StatsRequest(all_tenants=True), metadata=_auth(Role.READER))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    every = await search.Stats(pb.StatsRequest(all_tenants=True), metadata=_auth(Role.ADMIN))
    per_tenant = [
        (await search.Stats(pb.StatsRequest(tenant=t), metadata=_auth(Role.ADMIN))).nodes_total
        for t in (MINE, THEIRS)
    ]
    assert every.nodes_total == sum(per_tenant) > 0


@pytest.mark.parametrize(
    "method",
    [
        m.name
        for m in ADMIN.methods
        if f"/{ADMIN.full_name}/{m.name}" not in PER_TENANT_ADMIN_METHODS
    ],
)
async def test_every_admin_rpc_acting_on_every_tenant_is_refused_to_a_pinned_admin(
    channel: grpc.aio.Channel, method: str
) -> None:
    admin = search_pb2_grpc.AdminStub(channel)
    request = pb.DESCRIPTOR.services_by_name["Admin"].methods_by_name[method].input_type
    empty = getattr(pb, request.name)()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _call(admin, method, empty, _auth(Role.ADMIN, tenant=MINE))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "acts on every tenant" in (refused.value.details() or "")


# --- an admin RPC held to one tenant: Explore ---------------------------------------------


async def _explore(channel: grpc.aio.Channel, tenant: str, metadata: Any) -> pb.ExploreResponse:
    admin = search_pb2_grpc.AdminStub(channel)
    return await admin.Explore(pb.ExploreRequest(tenant=tenant, seed=4), metadata=metadata)


async def test_explore_with_a_pinned_token_maps_only_its_own_tenant(
    channel: grpc.aio.Channel,
) -> None:
    pinned = _auth(Role.ADMIN, tenant=MINE)
    mine = await _explore(channel, "", pinned)
    assert mine.points
    titles = {p.title for p in mine.points}
    assert "Acme pricing" in titles
    assert not any(t.startswith("Globex") for t in titles)
    # The same map as an unpinned admin asking for that tenant by name.
    named = await _explore(channel, MINE, _auth(Role.ADMIN))
    assert [(p.node_id, p.x, p.y) for p in named.points] == [
        (p.node_id, p.x, p.y) for p in mine.points
    ]
    theirs = await _explore(channel, THEIRS, _auth(Role.ADMIN))
    assert any(p.title.startswith("Globex") for p in theirs.points)


async def test_explore_of_another_tenant_is_refused_to_a_pinned_token(
    channel: grpc.aio.Channel,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _explore(channel, THEIRS, _auth(Role.ADMIN, tenant=MINE))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert f"limited to tenant '{MINE}'" in (refused.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as refused:  # and the role still counts
        await _explore(channel, MINE, _auth(Role.WRITER, tenant=MINE))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


# --- a token without a tenant claim -------------------------------------------------------


@pytest.mark.parametrize("method", list(CASES))
async def test_a_token_without_a_tenant_claim_may_use_any_tenant_its_role_allows(
    search: search_pb2_grpc.SearchStub, method: str
) -> None:
    role = _least_role(method)
    for tenant in (MINE, THEIRS):
        request = CASES[method](tenant)
        if method == "Upsert":
            request = pb.UpsertRequest(nodes=[_node(tenant, f"new-{tenant}", "Fresh pricing")])
        if method == "Delete":
            request = pb.DeleteRequest(tenant=tenant, ids=[f"gone-{uuid.uuid4().hex}"])
        await _call(search, method, request, _auth(role))
    if role is Role.WRITER:  # the role still counts
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _call(search, method, CASES[method](THEIRS), _auth(Role.READER))
        assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_reads_with_a_tenant_get_that_tenants_data(
    search: search_pb2_grpc.SearchStub,
) -> None:
    theirs = await search.Get(_get(THEIRS), metadata=_auth(Role.READER, THEIRS))
    assert [(n.tenant, n.title) for n in theirs.nodes] == [(THEIRS, "Globex pricing")]
    nearest = await search.Nearest(_nearest(THEIRS), metadata=_auth(Role.READER))
    assert nearest.hits
    assert {h.node.tenant for h in nearest.hits} == {THEIRS}


async def test_reindex_from_a_model_directory_passes_the_callers_token_to_the_embedder(
    channel: grpc.aio.Channel, int8_model_dir: Path, jwt_embedder: str
) -> None:
    """The embedder checks LoadModel's token with the same key: the admin's token is what
    search sends it, so the load succeeds for an admin and nothing else reaches it."""
    admin = search_pb2_grpc.AdminStub(channel)
    reply = await admin.Reindex(
        pb.ReindexRequest(model_dir=str(int8_model_dir), manual_activation=True),
        metadata=_auth(Role.ADMIN),
        timeout=60,
    )
    assert reply.space.model_id.endswith(":int8")
