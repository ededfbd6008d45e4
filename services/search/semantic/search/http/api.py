"""The routes of ``/api/semantic/*``: each one a gRPC method of Search or Admin.

GET routes take query parameters for the common cases (``vector-search?q=``,
``nearest?slug=``, ``recommend?userId=``); POST routes take the whole request message as
protobuf-JSON. Responses are the response messages as protobuf-JSON. A problem names the
parameter the client sent (``k``), not the field it became (``top_k``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from google.protobuf import message_factory
from google.protobuf.message import Message
from starlette.responses import Response

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.domain import MAX_EXPANSION_DOCS
from semantic.search.http.gateway import Gateway, HttpProblem, MessageResponse
from semantic.search.http.problems import problem_for
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb

PREFIX = "/api/semantic"
U32 = 2**32 - 1
I64 = 2**63 - 1
_MODES: dict[str, pb.SearchMode.ValueType] = {
    "dense": pb.SEARCH_MODE_DENSE,
    "keyword": pb.SEARCH_MODE_KEYWORD,
    "hybrid": pb.SEARCH_MODE_HYBRID,
}
_FUSIONS: dict[str, pb.Fusion.ValueType] = {
    "rrf": pb.FUSION_RRF,
    "relative_score": pb.FUSION_RELATIVE_SCORE,
    "distribution": pb.FUSION_DISTRIBUTION,
}
SEARCH_RENAMES = {
    "text": "q",
    "top_k": "k",
    "filter.content_types": "type",
    "filter.tags_any": "tags_any",
    "filter.tags_all": "tags_all",
    "hybrid.fusion": "fusion",
}
NEAREST_RENAMES = {"top_k": "k", "content_types": "type"}
RECOMMEND_RENAMES = {"top_k": "k", "content_types": "type", "user_id": "userId"}

Tenant = Annotated[str, Query(description="Tenant; empty is the default tenant.")]
TopK = Annotated[
    int, Query(ge=0, le=U32, description="Number of hits; 0 means 10 (at most a setting).")
]
Types = Annotated[
    list[str], Query(alias="type", description="Only these content types (repeatable).")
]
IncludeBody = Annotated[bool, Query(description="Return each node's body and texts.")]
SpaceId = Annotated[str, Query(description="Embedding space; empty is the active space.")]
MinScore = Annotated[
    float | None, Query(description="Drop hits scoring below this (finite number).")
]


@dataclass(frozen=True)
class BodyRoute:
    """A POST route taking the whole request message as protobuf-JSON."""

    path: str
    service: str
    rpc: str
    request: type[Message]
    response: type[Message]
    summary: str
    example: Mapping[str, Any]


BODY_ROUTES: Sequence[BodyRoute] = (
    BodyRoute(
        "/search",
        "Search",
        "Search",
        pb.SearchRequest,
        pb.SearchResponse,
        "Search with the full request: filters, named-vector targets, hybrid tuning",
        {
            "text": "how to lower cholesterol",
            "mode": "SEARCH_MODE_HYBRID",
            "topK": 5,
            "filter": {"contentTypes": ["article"], "tagsAny": ["diet"]},
            "hybrid": {"fusion": "FUSION_RELATIVE_SCORE", "keywordWeight": 1.0},
        },
    ),
    BodyRoute(
        "/nearest",
        "Search",
        "Nearest",
        pb.NearestRequest,
        pb.NearestResponse,
        "The nodes nearest to a node, with the full request",
        {"slug": "refund-policy", "topK": 5, "contentTypes": ["page"]},
    ),
    BodyRoute(
        "/recommend",
        "Search",
        "Recommend",
        pb.RecommendRequest,
        pb.RecommendResponse,
        "Recommendations with the full request: examples, diversity, weights",
        {"userId": "user-42", "topK": 5, "excludeSeen": True},
    ),
    BodyRoute(
        "/nodes",
        "Search",
        "Upsert",
        pb.UpsertRequest,
        pb.UpsertResponse,
        "Create or update nodes (optionally with their vectors)",
        {
            "nodes": [
                {
                    "id": "page-1",
                    "slug": "refund-policy",
                    "contentType": "page",
                    "title": "Refund policy",
                    "body": "Ask for your money back within 30 days.",
                    "tags": ["billing"],
                    "version": "1",
                }
            ]
        },
    ),
    BodyRoute(
        "/track",
        "Search",
        "Track",
        pb.TrackRequest,
        pb.TrackResponse,
        "Record user interactions",
        {
            "events": [
                {
                    "eventId": "e-1",
                    "userId": "user-42",
                    "nodeId": "page-1",
                    "action": "USER_ACTION_VIEW",
                    "occurredAt": "2026-12-01T10:00:00Z",
                }
            ]
        },
    ),
    BodyRoute(
        "/relations",
        "Search",
        "Relate",
        pb.RelateRequest,
        pb.RelateResponse,
        "Create or update relations between nodes",
        {
            "edges": [
                {
                    "sourceId": "fix-12",
                    "relation": {"nodeId": "fix-7", "type": "prerequisite", "strength": 0.9},
                }
            ]
        },
    ),
    BodyRoute(
        "/relations/remove",
        "Search",
        "Unrelate",
        pb.UnrelateRequest,
        pb.UnrelateResponse,
        "Remove relations between nodes",
        {"edges": [{"sourceId": "fix-12", "targetId": "fix-7", "type": "prerequisite"}]},
    ),
    BodyRoute(
        "/related",
        "Search",
        "Related",
        pb.RelatedRequest,
        pb.RelatedResponse,
        "Follow relations from a node, 1 to 3 steps",
        {"id": "fix-12", "types": ["prerequisite", "follows"], "depth": 2, "minStrength": 0.5},
    ),
    BodyRoute(
        "/feedback",
        "Search",
        "Feedback",
        pb.FeedbackRequest,
        pb.FeedbackResponse,
        "Record that nodes were applied and whether that worked",
        {
            "items": [
                {
                    "feedbackId": "3f1c2b8e-5c1d-4a7e-9a0b-1c2d3e4f5a6b",
                    "nodeId": "fix-12",
                    "outcome": "FEEDBACK_OUTCOME_SUCCESS",
                    "minutesSaved": 25,
                    "note": "fixed the flaky retry",
                }
            ]
        },
    ),
    BodyRoute(
        "/rules",
        "Search",
        "WriteRules",
        pb.WriteRulesRequest,
        pb.WriteRulesResponse,
        "Create or update guardian rules of a node",
        {
            "nodeId": "fix-12",
            "rules": [
                {
                    "id": "no-eval",
                    "pattern": "\\beval\\(",
                    "kind": "RULE_KIND_REGEX",
                    "severity": "RULE_SEVERITY_ERROR",
                    "action": "require review",
                    "message": "eval runs arbitrary code; parse the value instead",
                    "scope": {"metadata": [{"key": "file_type", "anyOf": ["py", "js"]}]},
                }
            ],
        },
    ),
    BodyRoute(
        "/rules/remove",
        "Search",
        "RemoveRules",
        pb.RemoveRulesRequest,
        pb.RemoveRulesResponse,
        "Remove guardian rules of a node",
        {"nodeId": "fix-12", "ruleIds": ["no-eval"]},
    ),
    BodyRoute(
        "/check",
        "Search",
        "Check",
        pb.CheckRequest,
        pb.CheckResponse,
        "Check a text (a file's contents) against the guardian rules",
        {
            "text": "def load(raw):\n    return eval(raw)\n",
            "scope": {"tags": ["backend"], "metadata": {"layer": "api", "file_type": "py"}},
            "severities": ["RULE_SEVERITY_ERROR", "RULE_SEVERITY_CRITICAL"],
        },
    ),
    BodyRoute(
        "/admin/heal",
        "Admin",
        "Heal",
        pb.HealRequest,
        pb.HealResponse,
        "Embed what is missing or stale in a space",
        {"onlyMissing": False, "dryRun": True},
    ),
    BodyRoute(
        "/admin/reindex",
        "Admin",
        "Reindex",
        pb.ReindexRequest,
        pb.ReindexResponse,
        "Fill a new space for another model (activated when complete)",
        {"modelId": "all-minilm-l6-v2-int8"},
    ),
    BodyRoute(
        "/admin/activate",
        "Admin",
        "ActivateSpace",
        pb.ActivateSpaceRequest,
        pb.ActivateSpaceResponse,
        "Make a space the active one",
        {"spaceId": "2"},
    ),
    BodyRoute(
        "/admin/rollback",
        "Admin",
        "Rollback",
        pb.RollbackRequest,
        pb.RollbackResponse,
        "Activate the previously active space again",
        {},
    ),
)


ADMIN_EXAMPLES: Mapping[str, Mapping[str, Any]] = {
    "CheckConsistency": {"sampleLimit": 10},
    "Explore": {"tenant": "", "contentTypes": ["page", "quiz"], "sample": 500, "seed": 1},
    "ListDeadLetters": {"limit": 50, "reason": "max_deliver"},
    "ReplayDeadLetters": {"seqs": ["7", "9"]},
    "DiscardDeadLetters": {"all": True, "reason": "decode_error"},
    "ExplainRecommendation": {"request": {"userId": "user-42", "topK": 5}, "maxCandidates": 50},
    "Snapshot": {"name": "before-upgrade", "tenants": ["acme"], "space": "active"},
}
"""Request examples of the Admin RPCs routed by name (the OpenAPI document shows them)."""


def admin_routes() -> list[BodyRoute]:
    """``POST /admin/<rpc in kebab case>`` for every Admin RPC without a route above."""
    routed = {r.rpc for r in BODY_ROUTES if r.service == "Admin"} | {
        "HealthReport",
        "ListSpaces",
        "ListSnapshots",
    }
    out = []
    for method in pb.DESCRIPTOR.services_by_name["Admin"].methods:
        if method.name in routed:
            continue
        kebab = re.sub(r"(?<!^)(?=[A-Z])", "-", method.name).lower()
        out.append(
            BodyRoute(
                f"/admin/{kebab}",
                "Admin",
                method.name,
                message_factory.GetMessageClass(method.input_type),
                message_factory.GetMessageClass(method.output_type),
                f"Admin {method.name}",
                ADMIN_EXAMPLES.get(method.name, {}),
            )
        )
    return out


def body_routes() -> list[BodyRoute]:
    """Every POST route: the table above and the Admin RPCs it does not name."""
    return [*BODY_ROUTES, *admin_routes()]


def api_router(gateway: Gateway) -> APIRouter:
    """Every ``/api/semantic`` route, calling ``gateway``."""
    router = APIRouter(prefix=PREFIX)
    for route in body_routes():
        router.add_api_route(
            route.path,
            _body_endpoint(gateway, route),
            methods=["POST"],
            summary=route.summary,
            operation_id=f"{route.rpc}{'Body' if route.rpc in _GET_RPCS else ''}",
            response_class=MessageResponse,
            openapi_extra={"x-grpc-method": f"semantic.v1.{route.service}/{route.rpc}"},
            tags=[route.service],
        )
    _add_get_routes(router, gateway)
    return router


_GET_RPCS = {"Search", "Nearest", "Recommend"}


def _body_endpoint(gateway: Gateway, route: BodyRoute) -> Any:
    async def endpoint(request: Request) -> Response:
        message = await gateway.body(request, route.request())
        result = await gateway.call(request, route.service, route.rpc, message)
        return MessageResponse(result)

    endpoint.__name__ = f"post_{route.rpc.lower()}"
    return endpoint


def _add_get_routes(router: APIRouter, gateway: Gateway) -> None:
    @router.get(
        "/vector-search",
        response_class=MessageResponse,
        summary="Search by text (dense, keyword or hybrid)",
        operation_id="VectorSearch",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Search"},
    )
    async def vector_search(
        request: Request,
        *,
        q: Annotated[str, Query(description="Query text.", examples=["refund"])] = "",
        tenant: Tenant = "",
        mode: Annotated[str, Query(description="dense, keyword or hybrid; default hybrid.")] = "",
        fusion: Annotated[
            str,
            Query(
                description="Hybrid mode: rrf, relative_score or distribution; default the "
                "server's (setting SEMANTIC_SEARCH_FUSION)."
            ),
        ] = "",
        expansion_docs: Annotated[
            int | None,
            Query(
                ge=0,
                le=MAX_EXPANSION_DOCS,
                description="Hybrid mode: first-pass hits the query vector is expanded with "
                "(0: off); default the server's (setting SEMANTIC_SEARCH_EXPANSION_DOCS).",
            ),
        ] = None,
        k: TopK = 0,
        offset: Annotated[int, Query(ge=0, le=U32, description="Hits to skip.")] = 0,
        types: Types = [],  # noqa: B006 - FastAPI copies defaults
        tags_any: Annotated[list[str], Query(description="At least one tag.")] = [],  # noqa: B006
        tags_all: Annotated[list[str], Query(description="Every tag.")] = [],  # noqa: B006
        min_score: MinScore = None,
        include_body: IncludeBody = False,
        space_id: SpaceId = "",
    ) -> Response:
        message = pb.SearchRequest(
            tenant=tenant,
            text=q,
            mode=_mode(mode, request),
            hybrid=pb.HybridParams(fusion=_fusion(fusion, request)),
            top_k=k,
            offset=offset,
            include_body=include_body,
            space_id=space_id,
        )
        message.filter.content_types.extend(types)
        message.filter.tags_any.extend(tags_any)
        message.filter.tags_all.extend(tags_all)
        if min_score is not None:
            message.min_score = min_score
        if expansion_docs is not None:
            message.hybrid.expansion_docs = expansion_docs
        result = await gateway.call(request, "Search", "Search", message, SEARCH_RENAMES)
        return MessageResponse(result)

    @router.get(
        "/nearest",
        response_class=MessageResponse,
        summary="The nodes nearest to a node, by id or slug",
        operation_id="Nearest",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Nearest"},
    )
    async def nearest(
        request: Request,
        *,
        slug: Annotated[str, Query(description="Slug of the source node.")] = "",
        id: Annotated[str, Query(description="Id of the source node.")] = "",
        tenant: Tenant = "",
        k: TopK = 0,
        types: Types = [],  # noqa: B006
        vector_name: Annotated[str, Query(description="Named vector; default content.")] = "",
        min_score: MinScore = None,
        include_body: IncludeBody = False,
        space_id: SpaceId = "",
    ) -> Response:
        if id and slug:
            raise HttpProblem(
                problem_for(
                    InvalidArgument("id", "give the id or the slug, not both"), request.url.path
                )
            )
        message = pb.NearestRequest(
            tenant=tenant,
            top_k=k,
            content_types=types,
            vector_name=vector_name,
            include_body=include_body,
            space_id=space_id,
        )
        if id:
            message.id = id
        elif slug:
            message.slug = slug
        if min_score is not None:
            message.min_score = min_score
        result = await gateway.call(request, "Search", "Nearest", message, NEAREST_RENAMES)
        return MessageResponse(result)

    @router.get(
        "/recommend",
        response_class=MessageResponse,
        summary="Recommendations for a user",
        operation_id="Recommend",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Recommend"},
    )
    async def recommend(
        request: Request,
        *,
        user_id: Annotated[str, Query(alias="userId", description="The user.")] = "",
        tenant: Tenant = "",
        k: TopK = 0,
        types: Types = [],  # noqa: B006
        exclude_seen: Annotated[bool, Query(description="Also leave out seen nodes.")] = False,
        archetype: Annotated[str, Query(description="Archetype to use instead.")] = "",
        include_body: IncludeBody = False,
        space_id: SpaceId = "",
    ) -> Response:
        message = pb.RecommendRequest(
            tenant=tenant,
            user_id=user_id,
            top_k=k,
            content_types=types,
            exclude_seen=exclude_seen,
            archetype=archetype,
            include_body=include_body,
            space_id=space_id,
        )
        result = await gateway.call(request, "Search", "Recommend", message, RECOMMEND_RENAMES)
        return MessageResponse(result)

    @router.get(
        "/nodes/{node_id}",
        response_class=MessageResponse,
        summary="One node by id",
        operation_id="GetNode",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Get"},
    )
    async def get_node(
        request: Request,
        *,
        node_id: Annotated[str, Path(description="Node id.")],
        tenant: Tenant = "",
        include_vectors: Annotated[bool, Query(description="Return its vectors.")] = False,
        space_id: SpaceId = "",
        include_rules: Annotated[bool, Query(description="Return its guardian rules.")] = False,
    ) -> Response:
        message = pb.GetRequest(
            tenant=tenant,
            ids=[node_id],
            include_vectors=include_vectors,
            space_id=space_id,
            include_rules=include_rules,
        )
        result = await gateway.call(request, "Search", "Get", message, {"ids[0]": "node_id"})
        assert isinstance(result, pb.GetResponse)
        if not result.nodes:
            raise HttpProblem(problem_for(NotFound("node", node_id), request.url.path))
        return MessageResponse(result.nodes[0])

    @router.delete(
        "/nodes/{node_id}",
        response_class=MessageResponse,
        summary="Delete one node (idempotent; the outcome says what happened)",
        operation_id="DeleteNode",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Delete"},
    )
    async def delete_node(
        request: Request,
        *,
        node_id: Annotated[str, Path(description="Node id.")],
        tenant: Tenant = "",
        version: Annotated[
            int, Query(ge=0, le=I64, description="Delete only up to this version; 0: any.")
        ] = 0,
    ) -> Response:
        message = pb.DeleteRequest(tenant=tenant, ids=[node_id], version=version)
        result = await gateway.call(request, "Search", "Delete", message, {"ids[0]": "node_id"})
        return MessageResponse(result)

    @router.get(
        "/stats",
        response_class=MessageResponse,
        summary="Counts of nodes, vectors and spaces",
        operation_id="Stats",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Stats"},
    )
    async def stats(
        request: Request,
        *,
        tenant: Tenant = "",
        all_tenants: Annotated[bool, Query(description="Count every tenant (admin).")] = False,
    ) -> Response:
        message = pb.StatsRequest(tenant=tenant, all_tenants=all_tenants)
        return MessageResponse(await gateway.call(request, "Search", "Stats", message))

    @router.get(
        "/admin/health",
        response_class=MessageResponse,
        summary="Health of every component",
        operation_id="HealthReport",
        tags=["Admin"],
        openapi_extra={"x-grpc-method": "semantic.v1.Admin/HealthReport"},
    )
    async def health(request: Request) -> Response:
        message = pb.HealthReportRequest()
        return MessageResponse(await gateway.call(request, "Admin", "HealthReport", message))

    @router.get(
        "/admin/spaces",
        response_class=MessageResponse,
        summary="Every embedding space with its counts",
        operation_id="ListSpaces",
        tags=["Admin"],
        openapi_extra={"x-grpc-method": "semantic.v1.Admin/ListSpaces"},
    )
    async def spaces(request: Request) -> Response:
        message = pb.ListSpacesRequest()
        return MessageResponse(await gateway.call(request, "Admin", "ListSpaces", message))

    @router.get(
        "/admin/snapshots",
        response_class=MessageResponse,
        summary="The snapshots stored at the configured location, newest first",
        operation_id="ListSnapshots",
        tags=["Admin"],
        openapi_extra={"x-grpc-method": "semantic.v1.Admin/ListSnapshots"},
    )
    async def snapshots(request: Request) -> Response:
        message = pb.ListSnapshotsRequest()
        return MessageResponse(await gateway.call(request, "Admin", "ListSnapshots", message))


def _mode(text: str, request: Request) -> pb.SearchMode.ValueType:
    if not text:
        return pb.SEARCH_MODE_UNSPECIFIED
    mode = _MODES.get(text.lower())
    if mode is None:
        problem = InvalidArgument("mode", f"must be one of {', '.join(_MODES)}; got {text!r}")
        raise HttpProblem(problem_for(problem, request.url.path))
    return mode


def _fusion(text: str, request: Request) -> pb.Fusion.ValueType:
    if not text:
        return pb.FUSION_UNSPECIFIED
    fusion = _FUSIONS.get(text.lower())
    if fusion is None:
        problem = InvalidArgument("fusion", f"must be one of {', '.join(_FUSIONS)}; got {text!r}")
        raise HttpProblem(problem_for(problem, request.url.path))
    return fusion


RESPONSES: Mapping[str, type[Message]] = {
    **{f"{PREFIX}{route.path}:post": route.response for route in body_routes()},
    f"{PREFIX}/vector-search:get": pb.SearchResponse,
    f"{PREFIX}/nearest:get": pb.NearestResponse,
    f"{PREFIX}/recommend:get": pb.RecommendResponse,
    f"{PREFIX}/nodes/{{node_id}}:get": cpb.Node,
    f"{PREFIX}/nodes/{{node_id}}:delete": pb.DeleteResponse,
    f"{PREFIX}/stats:get": pb.StatsResponse,
    f"{PREFIX}/admin/health:get": pb.HealthReportResponse,
    f"{PREFIX}/admin/spaces:get": pb.ListSpacesResponse,
    f"{PREFIX}/admin/snapshots:get": pb.ListSnapshotsResponse,
}
"""The response message of every operation, by ``path:method`` (for the OpenAPI document)."""
REQUESTS: Mapping[str, tuple[type[Message], Mapping[str, Any]]] = {
    f"{PREFIX}{route.path}:post": (route.request, route.example) for route in body_routes()
}
"""The request message and its example of every POST operation."""
