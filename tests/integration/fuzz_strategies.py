"""Hypothesis strategies for every RPC of Embedder, Search and Admin (and the realistic
events that fuzz_events publishes), with the settings profiles that bound them.

The RPCs are enumerated from the generated descriptors (:func:`rpc_methods`), and
:func:`request_strategies` must name each one: a new RPC without a strategy fails
``tests/unit/test_fuzz_strategies.py``. A request strategy mixes a hand-made realistic
request (valid most of the time, so the code behind validation runs) with a request built
field by field from the descriptor (fuzz_values.messages: realistic or hostile values);
:func:`raw_request_strategy` adds bytes that no message class can produce (fuzz_wire).

Profiles (environment variable SEMANTIC_FUZZ_PROFILE):
  ci    the default, used by `make test`: few examples per RPC, derandomized (the same
        examples every run, so a red CI is reproducible and never flaky) and no example
        database;
  fuzz  `make fuzz`: a long random campaign; failures are saved in .hypothesis/ (git-
        ignored) and replayed first on the next run.
SEMANTIC_FUZZ_EXAMPLES=N replaces the profile's examples per RPC (a shorter campaign).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from typing import Any

import jwt
from fuzz_values import (
    CONTENT_TYPES,
    Pools,
    class_of,
    messages,
    packed,
    prose,
    structs,
    uuids,
    vector_floats,
    vector_messages,
)
from fuzz_wire import raw_requests
from google.protobuf import timestamp_pb2
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import embedder_pb2 as epb
from semantic.v1 import events_pb2 as evpb
from semantic.v1 import search_pb2 as spb

PROFILE_ENV = "SEMANTIC_FUZZ_PROFILE"
EXAMPLES_ENV = "SEMANTIC_FUZZ_EXAMPLES"
_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example]
settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=False,
    suppress_health_check=_QUIET,
)
settings.register_profile(
    "fuzz", max_examples=3000, deadline=None, print_blob=True, suppress_health_check=_QUIET
)
SERVICES = {"Embedder": epb, "Search": spb, "Admin": spb}


def fuzz_settings(share: float = 1.0) -> settings:
    """The active profile, its example budget (or SEMANTIC_FUZZ_EXAMPLES when set) scaled
    by ``share``: costly RPCs get less."""
    base = settings.get_profile(os.environ.get(PROFILE_ENV, "ci"))
    budget = int(os.environ.get(EXAMPLES_ENV) or base.max_examples)
    return settings(base, max_examples=max(1, round(budget * share)))


def rpc_methods() -> list[MethodDescriptor]:
    """Every RPC of the contract's services, from the generated descriptors."""
    return [
        method
        for name, module in SERVICES.items()
        for method in module.DESCRIPTOR.services_by_name[name].methods
    ]


def method_path(method: MethodDescriptor) -> str:
    """``/semantic.v1.Search/Upsert``: the path gRPC calls."""
    return f"/{method.containing_service.full_name}/{method.name}"


# --- realistic requests -------------------------------------------------------------------


def timestamps(past_only: bool = True) -> st.SearchStrategy[timestamp_pb2.Timestamp]:
    """A realistic time: up to a year before now (or, if not ``past_only``, a bit after)."""
    high = 0 if past_only else 3_600
    return st.integers(-365 * 86_400, high).map(
        lambda delta: timestamp_pb2.Timestamp(seconds=int(time.time()) + delta)
    )


@st.composite
def nodes(draw: st.DrawFn, pools: Pools, *, client_vectors: bool = True) -> cpb.Node:
    """A realistic node: known id or slug, content type, real text, tags, metadata."""
    node = cpb.Node(
        id=draw(st.sampled_from(pools.ids)),
        tenant=draw(st.sampled_from(pools.tenants)),
        content_type=draw(st.sampled_from(CONTENT_TYPES)),
        title=draw(st.one_of(st.just(""), prose())),
        body=draw(prose()),
        tags=draw(st.lists(st.sampled_from(pools.tags), max_size=3)),
        version=draw(st.one_of(st.just(0), st.integers(1, 20))),
    )
    if draw(st.booleans()):
        node.slug = draw(st.sampled_from(pools.slugs))
        if draw(st.booleans()):
            node.id = ""
    node.metadata.update(draw(structs()))
    if draw(st.booleans()):
        node.created_at.CopyFrom(draw(timestamps()))
    if draw(st.booleans()):
        node.texts["problem"] = draw(prose())
    if client_vectors and draw(st.booleans()):
        node.vectors.add(name="code", vector=cpb.Vector(packed=packed(draw(vector_floats()))))
    if draw(st.integers(0, 3)) == 0:
        node.rules.items.extend(draw(st.lists(rules(pools), max_size=3)))
    return node


RULE_PATTERNS = (
    "eval(",
    r"\beval\(",
    r"(a+)+$",
    r"password\s*=\s*['\"]",
    "TODO",
    r"(\w+)\1",  # a backreference: RE2 refuses it
    "x*",  # matches the empty text: refused
    "é",
    "",
)


@st.composite
def rules(draw: st.DrawFn, pools: Pools) -> cpb.Rule:
    """A realistic guardian rule: literal or regex (sometimes one RE2 refuses), a scope on
    tags and metadata, any severity (sometimes out of range)."""
    rule = cpb.Rule(
        id=draw(st.sampled_from(("no-eval", "secrets.1", "todo", "Bad Id", ""))),
        pattern=draw(st.sampled_from(RULE_PATTERNS)),
        kind=draw(st.integers(0, 3)),
        case_insensitive=draw(st.booleans()),
        severity=draw(st.integers(0, 5)),
        action=draw(st.sampled_from(("", "require review", "block"))),
        message=draw(st.one_of(st.just(""), prose())),
    )
    if draw(st.booleans()):
        rule.active = draw(st.booleans())
    rule.scope.tags_any.extend(draw(st.lists(st.sampled_from(pools.tags), max_size=2)))
    if draw(st.booleans()):
        condition = rule.scope.metadata.add(key=draw(st.sampled_from(pools.metadata_keys)))
        test = draw(st.sampled_from(("equals", "contains", "any_of", "none")))
        if test == "equals":
            condition.equals.string_value = draw(st.sampled_from(("api", "py", "en")))
        elif test == "contains":
            condition.contains.number_value = draw(st.sampled_from((1.0, float("nan"))))
        elif test == "any_of":
            condition.any_of.extend(draw(st.lists(st.sampled_from(("py", "js", 2.0)), max_size=3)))
    return rule


@st.composite
def check_scopes(draw: st.DrawFn, pools: Pools) -> spb.CheckScope:
    """What a checked text is: tags and metadata (realistic or hostile)."""
    scope = spb.CheckScope(tags=draw(st.lists(st.sampled_from(pools.tags), max_size=2)))
    values = st.one_of(
        st.sampled_from(("api", "py", "src/api/x.py", "")),
        st.floats(allow_nan=True),
        st.lists(st.sampled_from(("py", "js")), max_size=2),
    )
    keys = st.sampled_from(("layer", "file_type", "path", *pools.metadata_keys))
    scope.metadata.update(draw(st.dictionaries(keys, values, max_size=3)))
    return scope


@st.composite
def filters(draw: st.DrawFn, pools: Pools) -> cpb.Filter:
    """A realistic filter: content types, tags, metadata conditions, ids, time ranges."""
    f = cpb.Filter(
        content_types=draw(st.lists(st.sampled_from(CONTENT_TYPES), max_size=2)),
        tags_any=draw(st.lists(st.sampled_from(pools.tags), max_size=2)),
        tags_none=draw(st.lists(st.sampled_from(pools.tags), max_size=1)),
        exclude_ids=draw(st.lists(st.sampled_from(pools.ids), max_size=2)),
    )
    for _ in range(draw(st.integers(0, 3))):
        condition = f.metadata.add(key=draw(st.sampled_from(pools.metadata_keys)))
        test = draw(st.sampled_from(("equals", "any_of", "range", "time", "exists")))
        if test == "equals":
            condition.equals.string_value = draw(st.sampled_from(("en", "de", "Ada")))
        elif test == "any_of":
            condition.any_of.extend(draw(st.lists(st.sampled_from(("en", 1.0, 2.0)), max_size=3)))
        elif test == "range":
            condition.number_range.gte = draw(st.floats(0, 5))
            condition.number_range.lt = draw(st.floats(5, 10))
        elif test == "time":
            condition.time_range.start.CopyFrom(draw(timestamps()))
        else:
            condition.exists = draw(st.booleans())
        condition.negate = draw(st.booleans())
    if draw(st.booleans()):
        f.created.start.CopyFrom(draw(timestamps()))
    return f


@st.composite
def search_requests(draw: st.DrawFn, pools: Pools) -> spb.SearchRequest:
    request = spb.SearchRequest(
        tenant=draw(st.sampled_from(pools.tenants)),
        mode=draw(st.sampled_from(list(spb.SearchMode.values()))),
        top_k=draw(st.integers(0, 20)),
        offset=draw(st.integers(0, 5)),
        include_body=draw(st.booleans()),
    )
    if draw(st.booleans()):
        request.text = draw(prose())
    else:
        request.vector.packed = packed(draw(vector_floats()))
    for name in draw(st.lists(st.sampled_from(pools.vector_names), max_size=2, unique=True)):
        request.targets.add(name=name, weight=draw(st.floats(0, 2)))
    if draw(st.booleans()):
        request.hybrid.rrf_k = draw(st.integers(1, 100))
        request.hybrid.candidates = draw(st.integers(1, 200))
    if draw(st.booleans()):
        # Every fusion, unset, and a value no server knows (INVALID_ARGUMENT: hybrid.fusion).
        request.hybrid.fusion = draw(st.sampled_from([*spb.Fusion.values(), 7]))
        if draw(st.booleans()):
            request.hybrid.dense_weight = draw(st.floats(0, 2))
            request.hybrid.keyword_weight = draw(st.floats(0, 2))
    if draw(st.booleans()):
        request.filter.CopyFrom(draw(filters(pools)))
    if draw(st.booleans()):
        request.min_score = draw(st.floats(-1, 1))
    if draw(st.booleans()):
        request.modifiers.extend(draw(st.lists(score_modifiers(pools), max_size=3)))
        request.include_feedback = draw(st.booleans())
    return request


@st.composite
def user_events(draw: st.DrawFn, pools: Pools) -> evpb.UserEvent:
    """A realistic interaction; event ids sometimes repeat (duplicates)."""
    event = evpb.UserEvent(
        event_id=draw(st.one_of(uuids(), st.sampled_from(("dup-1", "dup-2")))),
        user_id=draw(st.sampled_from(pools.users)),
        tenant=draw(st.sampled_from(pools.tenants)),
        action=draw(st.sampled_from(list(evpb.UserAction.values())[1:])),
        source="tests",
    )
    if draw(st.booleans()):
        event.node_id = draw(st.sampled_from(pools.ids))
    else:
        event.slug = draw(st.sampled_from(pools.slugs))
    if draw(st.booleans()):
        event.occurred_at.CopyFrom(draw(timestamps()))
    if draw(st.booleans()):
        event.weight = draw(st.floats(-100, 100))
    if draw(st.booleans()):
        event.archetype = draw(st.sampled_from(pools.archetypes))
    if draw(st.booleans()):
        event.context.update({"page": "/home", "position": float(draw(st.integers(0, 9)))})
    return event


@st.composite
def feedback_items(draw: st.DrawFn, pools: Pools) -> evpb.FeedbackItem:
    """A realistic feedback report; ids sometimes repeat (duplicates)."""
    item = evpb.FeedbackItem(
        feedback_id=draw(st.one_of(uuids(), st.sampled_from(("fb-1", "fb-2")))),
        outcome=draw(st.integers(0, 3)),
        note=draw(st.text(max_size=20)),
    )
    if draw(st.booleans()):
        item.node_id = draw(st.sampled_from(pools.ids))
    else:
        item.slug = draw(st.sampled_from(pools.slugs))
    if draw(st.booleans()):
        item.minutes_saved = draw(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))))
    if draw(st.booleans()):
        item.occurred_at.CopyFrom(draw(timestamps()))
    return item


@st.composite
def score_modifiers(draw: st.DrawFn, pools: Pools) -> spb.ScoreModifier:
    """A modifier on a metadata field, a feedback signal, a tag or a metadata value,
    with weights and bounds that are sometimes not finite or crossed."""
    modifier = spb.ScoreModifier(
        op=draw(st.integers(0, 3)),
        weight=draw(st.one_of(st.floats(-2, 2), st.just(float("inf")))),
        center=draw(st.floats(-1, 1)),
    )
    kind = draw(st.integers(0, 3))
    if kind == 0:
        modifier.metadata_key = draw(st.sampled_from(("rank", "price", "lang", "a.b", "")))
    elif kind == 1:
        modifier.feedback = draw(st.integers(0, 5))
    elif kind == 2:
        modifier.tag = draw(st.sampled_from((*pools.tags, "")))
    else:
        modifier.metadata_contains.key = draw(st.sampled_from(("layers", "lang")))
        modifier.metadata_contains.value.number_value = draw(st.integers(0, 4))
    if draw(st.booleans()):
        modifier.min = draw(st.floats(-1, 2))
    if draw(st.booleans()):
        modifier.max = draw(st.floats(-1, 3))
    if draw(st.booleans()):
        modifier.missing = draw(st.floats(-1, 1))
    return modifier


@st.composite
def content_events(draw: st.DrawFn, pools: Pools) -> evpb.ContentEvent:
    """A realistic content change (text only, as events carry no vectors)."""
    version = draw(st.integers(1, 30))
    node = draw(nodes(pools, client_vectors=False))
    node.version = draw(st.sampled_from((0, version)))
    event = evpb.ContentEvent(
        event_id=draw(st.one_of(uuids(), st.sampled_from(("dup-1", "dup-2")))),
        op=draw(st.sampled_from((evpb.CONTENT_OP_UPSERT,) * 3 + (evpb.CONTENT_OP_DELETE,))),
        version=version,
        source=draw(st.sampled_from(("cms", "shop", ""))),
    )
    event.node.CopyFrom(node)  # not in the constructor: that re-parses (depth-limited)
    if draw(st.booleans()):
        event.occurred_at.CopyFrom(draw(timestamps()))
    return event


def _example(pools: Pools) -> st.SearchStrategy[spb.RecommendExample]:
    return st.one_of(
        st.sampled_from(pools.ids).map(lambda i: spb.RecommendExample(id=i)),
        st.sampled_from(pools.slugs).map(lambda s: spb.RecommendExample(slug=s)),
        vector_floats().map(lambda v: spb.RecommendExample(vector=cpb.Vector(packed=packed(v)))),
    )


@st.composite
def recommend_requests(draw: st.DrawFn, pools: Pools) -> spb.RecommendRequest:
    request = spb.RecommendRequest(
        tenant=draw(st.sampled_from(pools.tenants)),
        user_id=draw(st.one_of(st.just(""), st.sampled_from(pools.users))),
        top_k=draw(st.integers(0, 20)),
        exclude_seen=draw(st.booleans()),
        strategy=draw(st.sampled_from(list(spb.RecommendStrategy.values()))),
        positive=draw(st.lists(_example(pools), max_size=3)),
        negative=draw(st.lists(_example(pools), max_size=2)),
    )
    if draw(st.booleans()):
        request.diversity.max_share_per_content_type = draw(st.floats(0.1, 1))
        request.diversity.mmr_lambda = draw(st.floats(0, 1))
    if draw(st.booleans()):
        request.filter.CopyFrom(draw(filters(pools)))
    if draw(st.booleans()):
        request.modifiers.extend(draw(st.lists(score_modifiers(pools), max_size=2)))
    return request


def _upsert(items: list[cpb.Node]) -> spb.UpsertRequest:
    request = spb.UpsertRequest()
    for node in items:  # CopyFrom: a list in the constructor re-parses (depth-limited)
        request.nodes.add().CopyFrom(node)
    return request


def _embed(pools: Pools) -> st.SearchStrategy[epb.EmbedRequest]:
    return st.builds(
        epb.EmbedRequest,
        texts=st.lists(prose(), min_size=1, max_size=8),
        input_type=st.sampled_from(list(epb.InputType.values())),
        model_id=st.one_of(st.just(""), st.sampled_from(pools.model_ids)),
        truncation=st.sampled_from(list(epb.Truncation.values())),
        normalization=st.sampled_from(list(epb.Normalization.values())),
    )


# Hand-made strategies used beside the generic builder wherever these types appear.
OVERRIDES: dict[str, Callable[[Descriptor, Pools, int], st.SearchStrategy[Message]]] = {
    "semantic.v1.Vector": lambda d, p, depth: vector_messages(class_of(d)),
    "semantic.v1.Node": lambda d, p, depth: nodes(p),
    "semantic.v1.Filter": lambda d, p, depth: filters(p),
    "semantic.v1.UserEvent": lambda d, p, depth: user_events(p),
    "semantic.v1.EmbedRequest": lambda d, p, depth: _embed(p),
}


def generic(cls: type[Message], pools: Pools) -> st.SearchStrategy[Message]:
    """Any request of ``cls`` built from its descriptor."""
    return messages(cls.DESCRIPTOR, pools, overrides=OVERRIDES)


def request_strategies(pools: Pools) -> dict[str, st.SearchStrategy[Any]]:
    """Method path -> its requests: a message, or a list of them for a client stream."""

    def either(realistic: st.SearchStrategy[Any], cls: type[Message]) -> st.SearchStrategy[Any]:
        return st.one_of(realistic, generic(cls, pools))

    ids = st.lists(st.sampled_from(pools.ids), max_size=4)
    slugs = st.lists(st.sampled_from(pools.slugs), max_size=2)
    tenant = st.sampled_from(pools.tenants)
    return {
        "/semantic.v1.Embedder/Embed": either(_embed(pools), epb.EmbedRequest),
        "/semantic.v1.Embedder/EmbedStream": st.lists(
            either(
                st.builds(epb.EmbedStreamRequest, request_id=uuids(), embed=_embed(pools)),
                epb.EmbedStreamRequest,
            ),
            max_size=4,
        ),
        "/semantic.v1.Embedder/Info": generic(epb.InfoRequest, pools),
        "/semantic.v1.Embedder/LoadModel": generic(epb.LoadModelRequest, pools),
        "/semantic.v1.Search/Upsert": either(
            st.lists(nodes(pools), min_size=1, max_size=4).map(_upsert),
            spb.UpsertRequest,
        ),
        "/semantic.v1.Search/Delete": either(
            st.builds(
                spb.DeleteRequest, tenant=tenant, ids=ids, slugs=slugs, version=st.integers(0, 30)
            ),
            spb.DeleteRequest,
        ),
        "/semantic.v1.Search/Get": either(
            st.builds(
                spb.GetRequest, tenant=tenant, ids=ids, slugs=slugs, include_vectors=st.booleans()
            ),
            spb.GetRequest,
        ),
        "/semantic.v1.Search/Search": either(search_requests(pools), spb.SearchRequest),
        "/semantic.v1.Search/Nearest": either(
            st.builds(
                spb.NearestRequest,
                tenant=tenant,
                id=st.sampled_from(pools.ids),
                top_k=st.integers(0, 20),
                filter=filters(pools),
                modifiers=st.lists(score_modifiers(pools), max_size=3),
                include_feedback=st.booleans(),
            ),
            spb.NearestRequest,
        ),
        "/semantic.v1.Search/Recommend": either(recommend_requests(pools), spb.RecommendRequest),
        "/semantic.v1.Search/Track": either(
            st.builds(
                spb.TrackRequest, events=st.lists(user_events(pools), min_size=1, max_size=5)
            ),
            spb.TrackRequest,
        ),
        "/semantic.v1.Search/Stats": generic(spb.StatsRequest, pools),
        "/semantic.v1.Search/Relate": either(
            st.builds(
                spb.RelateRequest,
                tenant=tenant,
                edges=st.lists(
                    st.builds(
                        spb.Edge,
                        source_id=st.sampled_from(pools.ids),
                        relation=st.builds(
                            cpb.Relation,
                            node_id=st.sampled_from(pools.ids),
                            type=st.sampled_from(["follows", "prerequisite", "conflicts", "X"]),
                            strength=st.one_of(st.floats(-0.5, 1.5), st.just(float("nan"))),
                            description=st.text(max_size=20),
                        ),
                    ),
                    max_size=4,
                ),
            ),
            spb.RelateRequest,
        ),
        "/semantic.v1.Search/Unrelate": generic(spb.UnrelateRequest, pools),
        "/semantic.v1.Search/Feedback": either(
            st.builds(
                spb.FeedbackRequest,
                tenant=tenant,
                items=st.lists(feedback_items(pools), max_size=4),
            ),
            spb.FeedbackRequest,
        ),
        "/semantic.v1.Search/Related": either(
            st.builds(
                spb.RelatedRequest,
                tenant=tenant,
                id=st.sampled_from(pools.ids),
                types=st.lists(st.sampled_from(["follows", "prerequisite", "Bad"]), max_size=2),
                direction=st.integers(0, 4),
                depth=st.integers(0, 5),
                min_strength=st.one_of(st.floats(-1, 2), st.just(float("nan"))),
                limit=st.integers(0, 2000),
                include_discovered=st.booleans(),
            ),
            spb.RelatedRequest,
        ),
        "/semantic.v1.Search/WriteRules": either(
            st.builds(
                spb.WriteRulesRequest,
                tenant=tenant,
                node_id=st.sampled_from(pools.ids),
                rules=st.lists(rules(pools), max_size=3),
                replace=st.booleans(),
            ),
            spb.WriteRulesRequest,
        ),
        "/semantic.v1.Search/RemoveRules": either(
            st.builds(
                spb.RemoveRulesRequest,
                tenant=tenant,
                node_id=st.sampled_from(pools.ids),
                rule_ids=st.lists(st.sampled_from(("no-eval", "todo", "Bad")), max_size=3),
            ),
            spb.RemoveRulesRequest,
        ),
        "/semantic.v1.Search/Check": either(
            st.builds(
                spb.CheckRequest,
                tenant=tenant,
                text=st.one_of(prose(), st.text(max_size=200)),
                scope=check_scopes(pools),
                severities=st.lists(st.integers(0, 5), max_size=2),
                max_violations=st.integers(0, 5000),
                include_inactive=st.booleans(),
                budget_ms=st.integers(0, 10_000),
            ),
            spb.CheckRequest,
        ),
        "/semantic.v1.Admin/HealthReport": generic(spb.HealthReportRequest, pools),
        "/semantic.v1.Admin/Heal": either(
            st.builds(
                spb.HealRequest,
                only_missing=st.booleans(),
                limit=st.integers(1, 20),
                dry_run=st.booleans(),
            ),
            spb.HealRequest,
        ),
        "/semantic.v1.Admin/Reindex": generic(spb.ReindexRequest, pools),
        "/semantic.v1.Admin/ActivateSpace": generic(spb.ActivateSpaceRequest, pools),
        "/semantic.v1.Admin/Rollback": generic(spb.RollbackRequest, pools),
        "/semantic.v1.Admin/ListSpaces": generic(spb.ListSpacesRequest, pools),
        "/semantic.v1.Admin/ListDeadLetters": generic(spb.ListDeadLettersRequest, pools),
        "/semantic.v1.Admin/ReplayDeadLetters": generic(spb.ReplayDeadLettersRequest, pools),
        "/semantic.v1.Admin/DiscardDeadLetters": generic(spb.DiscardDeadLettersRequest, pools),
        "/semantic.v1.Admin/ExplainRecommendation": either(
            st.builds(
                spb.ExplainRecommendationRequest,
                request=recommend_requests(pools),
                max_candidates=st.integers(0, 600),
            ),
            spb.ExplainRecommendationRequest,
        ),
        "/semantic.v1.Admin/CheckConsistency": either(
            st.builds(spb.CheckConsistencyRequest, sample_limit=st.integers(0, 100)),
            spb.CheckConsistencyRequest,
        ),
        "/semantic.v1.Admin/Explore": either(
            st.builds(
                spb.ExploreRequest,
                tenant=tenant,
                content_types=st.lists(st.sampled_from(CONTENT_TYPES), max_size=3),
                vector_name=st.sampled_from(pools.vector_names),
                sample=st.integers(0, 50),
                seed=st.integers(0, 2**32 - 1),
            ),
            spb.ExploreRequest,
        ),
        "/semantic.v1.Admin/Snapshot": either(
            st.builds(
                spb.SnapshotRequest,
                name=st.sampled_from(["", "nightly", "before-upgrade.1", "Bad Name", "../x"]),
                tenants=st.lists(tenant, max_size=2),
                content_types=st.lists(st.sampled_from(CONTENT_TYPES), max_size=2),
                space=st.sampled_from(["", "active", "all", "1", "99", "x", "-1"]),
            ),
            spb.SnapshotRequest,
        ),
        "/semantic.v1.Admin/ListSnapshots": generic(spb.ListSnapshotsRequest, pools),
    }


def raw_request_strategy(
    method: MethodDescriptor, requests: st.SearchStrategy[Any]
) -> st.SearchStrategy[Any]:
    """Undecodable (or oddly decodable) bytes for ``method``'s request type; a list of
    them for a client stream."""
    if method.client_streaming:
        first = requests.map(lambda items: items[0] if items else epb.EmbedStreamRequest())
        return st.lists(raw_requests(method.input_type, first), min_size=1, max_size=3)
    return raw_requests(method.input_type, requests)


# --- credentials ---------------------------------------------------------------------------


def garbage_credentials(secret: str, audience: str) -> st.SearchStrategy[list[tuple[str, str]]]:
    """gRPC metadata that must never authenticate: no header, junk, other schemes,
    JWT-shaped junk, ``alg: none``, tokens signed with another key, and tokens signed
    with the right key but expired, not yet valid or for another audience."""
    printable = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=300)
    segment = st.binary(max_size=60).map(
        lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    )
    now = int(time.time())
    claims = {"sub": "fuzz", "roles": ["admin"], "aud": audience, "iat": now, "exp": now + 3600}
    signed = {
        "none": jwt.encode(claims, None, algorithm="none"),
        "other key": jwt.encode(claims, "another-secret-" + "x" * 32, algorithm="HS256"),
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, secret),
        "not yet valid": jwt.encode({**claims, "nbf": now + 3600}, secret),
        "other audience": jwt.encode({**claims, "aud": "elsewhere"}, secret),
        "roles only": jwt.encode({"roles": ["admin"]}, "k" * 40),
    }
    values = st.one_of(
        printable,
        printable.map(lambda v: f"Bearer {v}"),
        st.tuples(segment, segment, segment).map(lambda parts: "Bearer " + ".".join(parts)),
        st.sampled_from(
            (
                "Bearer",
                "Bearer ",
                "bearer",
                "Bearer null",
                "Bearer a.b.c",
                "Bearer ..",
                "Basic dXNlcjpwYXNzd29yZA==",
                "Token abc",
                "Bearer " + "A" * 4000,
            )
        ),
        st.sampled_from(sorted(signed.values())).map(lambda t: f"Bearer {t}"),
        st.sampled_from(sorted(signed.values()))
        .map(lambda t: t[:-3] + "abc")
        .map("Bearer {}".format),
    )
    return st.one_of(
        st.just([]),
        values.map(lambda v: [("authorization", v)]),
        st.lists(values, min_size=2, max_size=2).map(lambda vs: [("authorization", v) for v in vs]),
    )
