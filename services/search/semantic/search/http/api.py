"""The routes of ``/api/semantic/*``: each one a gRPC method of Search or Admin.

GET routes take query parameters for the common cases (``vector-search?q=``,
``nearest?slug=``, ``recommend?userId=``); POST routes take the whole request message as
protobuf-JSON. Responses are the response messages as protobuf-JSON. A problem names the
parameter the client sent (``k``), not the field it became (``top_k``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import unquote_to_bytes

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi._compat import field_annotation_is_sequence
from google.protobuf.message import Message
from starlette.responses import Response

from semantic.common.errors import InvalidArgument, NotFound
from semantic.core.domain import MAX_EXPANSION_DOCS
from semantic.search.http.body_routes import BodyRoute, body_routes
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
_KEYS = {"ids": "id", "slugs": "slug"}
"""The query form of Get and Delete: a problem names ``id``/``slug`` as sent."""
RECOMMEND_RENAMES = {"top_k": "k", "content_types": "type", "user_id": "userId"}

Tenant = Annotated[str, Query(description="Tenant; empty is the default tenant.")]
TopK = Annotated[
    int, Query(ge=0, le=U32, description="Number of hits; 0 means 10 (at most a setting).")
]
Types = Annotated[
    list[str], Query(alias="type", description="Only these content types (repeatable).")
]
Ids = Annotated[list[str], Query(alias="id", description="Node ids (repeatable).")]
Slugs = Annotated[list[str], Query(alias="slug", description="Slugs (repeatable).")]
IncludeBody = Annotated[bool, Query(description="Return each node's body and texts.")]
SpaceId = Annotated[str, Query(description="Embedding space; empty is the active space.")]
MinScore = Annotated[
    float | None, Query(description="Drop hits scoring below this (finite number).")
]


def api_router(gateway: Gateway) -> APIRouter:
    """Every ``/api/semantic`` route, calling ``gateway``."""
    router = APIRouter(prefix=PREFIX, dependencies=[Depends(_known_parameters)])
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
        # The caller first: a body is read and parsed only for one allowed to send it.
        caller = gateway.caller(request, f"/semantic.v1.{route.service}/{route.rpc}")
        message = await gateway.body(request, route.request())
        result = await gateway.call(request, route.service, route.rpc, message, caller=caller)
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
        "/nodes",
        response_class=MessageResponse,
        summary="Nodes by id or slug, given as query parameters (any id, `.` and `..` too)",
        operation_id="GetNodes",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Get"},
    )
    async def get_nodes(
        request: Request,
        *,
        ids: Ids = [],  # noqa: B006
        slugs: Slugs = [],  # noqa: B006
        tenant: Tenant = "",
        include_vectors: Annotated[bool, Query(description="Return their vectors.")] = False,
        space_id: SpaceId = "",
        include_rules: Annotated[bool, Query(description="Return their guardian rules.")] = False,
    ) -> Response:
        message = pb.GetRequest(
            tenant=tenant,
            ids=ids,
            slugs=slugs,
            include_vectors=include_vectors,
            space_id=space_id,
            include_rules=include_rules,
        )
        return MessageResponse(await gateway.call(request, "Search", "Get", message, _KEYS))

    @router.delete(
        "/nodes",
        response_class=MessageResponse,
        summary="Delete nodes by id or slug, given as query parameters (idempotent)",
        operation_id="DeleteNodes",
        tags=["Search"],
        openapi_extra={"x-grpc-method": "semantic.v1.Search/Delete"},
    )
    async def delete_nodes(
        request: Request,
        *,
        ids: Ids = [],  # noqa: B006
        slugs: Slugs = [],  # noqa: B006
        tenant: Tenant = "",
        version: Annotated[
            int, Query(ge=0, le=I64, description="Delete only up to this version; 0: any.")
        ] = 0,
    ) -> Response:
        message = pb.DeleteRequest(tenant=tenant, ids=ids, slugs=slugs, version=version)
        return MessageResponse(await gateway.call(request, "Search", "Delete", message, _KEYS))

    @router.get(
        "/nodes/{node_id:path}",
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
        "/nodes/{node_id:path}",
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


def _known_parameters(request: Request) -> None:
    """Query parameters as the route takes them, else 400 naming the parameter: one the
    route does not take (a typo, ``topK`` for ``k``, must not be ignored, as a body field
    the message does not have is not), a single-valued one given twice (which one would
    count is the framework's choice), and a path or parameter whose percent-escapes are not
    UTF-8 (they would be read as U+FFFD: ``/nodes/%FF`` is not the node "\ufffd")."""
    _utf8(request)
    _no_body(request)
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias: param for param in dependant.query_params}
    for name in request.query_params:
        param = known.get(name)
        if param is None:
            takes = ", ".join(sorted(known)) or "none"
            problem = InvalidArgument(name, f"unknown query parameter (this route takes: {takes})")
            raise HttpProblem(problem_for(problem, request.url.path))
        given = len(request.query_params.getlist(name))
        if given > 1 and not field_annotation_is_sequence(param.field_info.annotation):
            problem = InvalidArgument(name, f"given {given} times; it takes one value")
            raise HttpProblem(problem_for(problem, request.url.path))


def _no_body(request: Request) -> None:
    """400 for a body sent to a GET, HEAD or DELETE route: they read the query only, so a
    body (``{"version": "9"}`` on a DELETE, meant as a condition) would be ignored."""
    if request.method not in ("GET", "HEAD", "DELETE"):
        return
    length = request.headers.get("content-length", "0").strip()
    if length not in ("", "0") or "transfer-encoding" in request.headers:
        problem = InvalidArgument(
            "body", f"{request.method} takes no body: its parameters go in the query string"
        )
        raise HttpProblem(problem_for(problem, request.url.path))


def _utf8(request: Request) -> None:
    """400 when the path or a query parameter's percent-escapes are not UTF-8."""
    raw_path = request.scope.get("raw_path") or b""
    try:
        unquote_to_bytes(raw_path).decode("utf-8")
    except UnicodeDecodeError as exc:
        problem = InvalidArgument("path", f"percent-escapes are not UTF-8 ({exc.reason})")
        raise HttpProblem(problem_for(problem, request.url.path)) from exc
    for pair in (request.scope.get("query_string") or b"").split(b"&"):
        name, _, value = pair.partition(b"=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace(b"+", b" ")).decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = unquote_to_bytes(name).decode("utf-8", "replace")
                problem = InvalidArgument(shown, f"percent-escapes are not UTF-8 ({exc.reason})")
                raise HttpProblem(problem_for(problem, request.url.path)) from exc


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
    f"{PREFIX}/nodes:get": pb.GetResponse,
    f"{PREFIX}/nodes:delete": pb.DeleteResponse,
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
