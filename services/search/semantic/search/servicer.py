"""gRPC servicers of semantic.v1.Search and semantic.v1.Admin: protobuf <-> core calls."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from semantic.common import validation
from semantic.common.auth import Role, current_principal, enforce_tenant, require_every_tenant
from semantic.common.errors import DependencyUnavailable, InvalidArgument
from semantic.core import domain
from semantic.core.nodes import DeleteOutcome, Outcome, VectorRow
from semantic.core.relations import RelationService
from semantic.core.rule_service import RuleService
from semantic.core.service import SearchService
from semantic.core.spaces import Space
from semantic.search.recommend.service import Recommendations
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc
from semantic.wire import convert
from semantic.wire import feedback as wire_feedback
from semantic.wire import relations as wire_relations
from semantic.wire import rules as wire_rules
from semantic.wire import search as wire_search

_OUTCOMES = {
    Outcome.CREATED: pb.UPSERT_OUTCOME_CREATED,
    Outcome.UPDATED: pb.UPSERT_OUTCOME_UPDATED,
    Outcome.METADATA_UPDATED: pb.UPSERT_OUTCOME_METADATA_UPDATED,
    Outcome.UNCHANGED: pb.UPSERT_OUTCOME_UNCHANGED,
    Outcome.STALE: pb.UPSERT_OUTCOME_STALE,
}
_DELETES = {
    DeleteOutcome.DELETED: pb.DELETE_OUTCOME_DELETED,
    DeleteOutcome.NOT_FOUND: pb.DELETE_OUTCOME_NOT_FOUND,
    DeleteOutcome.STALE: pb.DELETE_OUTCOME_STALE,
}
_STATES = {
    "building": pb.SPACE_STATE_BUILDING,
    "ready": pb.SPACE_STATE_READY,
    "active": pb.SPACE_STATE_ACTIVE,
    "retired": pb.SPACE_STATE_RETIRED,
    "failed": pb.SPACE_STATE_FAILED,
}
_PRECISIONS = {"float32": pb.INDEX_PRECISION_FLOAT32, "half": pb.INDEX_PRECISION_HALF}


def space_id_from(text: str, field: str = "space_id") -> int | None:
    """'' -> None (the active space); ASCII digits -> that space."""
    return validation.space_id(text, field)


def space_to_proto(
    space: Space, vectors: int | None = None, nodes: int | None = None
) -> pb.EmbeddingSpace:
    """An embedding space as protobuf (with its vectors and the nodes having one, when
    counted)."""
    message = pb.EmbeddingSpace(
        id=str(space.id),
        model_id=space.model_id,
        model_sha256=space.model_sha256,
        dim=space.dim,
        version=space.version,
        state=_STATES.get(space.state, pb.SPACE_STATE_UNSPECIFIED),
        vectors=vectors or 0,
        nodes=nodes or 0,
        index_precision=_PRECISIONS.get(space.index_precision, pb.INDEX_PRECISION_UNSPECIFIED),
    )
    message.created_at.FromDatetime(space.created_at)
    if space.activated_at is not None:
        message.activated_at.FromDatetime(space.activated_at)
    return message


class SearchServicer(search_pb2_grpc.SearchServicer):
    """semantic.v1.Search: writes, search, nearest, stats, Recommend and Track."""

    def __init__(
        self,
        limits: convert.Limits,
        hybrid: domain.HybridParams,
        service: SearchService | None = None,
        *,
        max_related: int = 1000,
        check_limits: wire_rules.CheckLimits | None = None,
    ) -> None:
        """``hybrid``: the fusion a hybrid search gets for what its request leaves unset."""
        self._limits = limits
        self._hybrid = hybrid
        self._ready = service
        self._recommend: Recommendations | None = None
        self._relations: RelationService | None = None
        self._rules: RuleService | None = None
        self._max_related = max_related
        self._check_limits = check_limits or wire_rules.CheckLimits(
            max_tags=limits.max_tags, max_metadata_bytes=limits.max_metadata_bytes
        )

    def attach(
        self,
        service: SearchService,
        recommendations: Recommendations | None = None,
        relations: RelationService | None = None,
        rules: RuleService | None = None,
    ) -> None:
        """Start answering (calls before this get UNAVAILABLE)."""
        self._ready = service
        self._recommend = recommendations
        self._relations = relations
        self._rules = rules

    @property
    def _guardian(self) -> RuleService:
        if self._rules is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._rules

    @property
    def _related(self) -> RelationService:
        if self._relations is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._relations

    async def _with_relations(self, tenant: str, nodes: list[cpb.Node]) -> None:
        """Fill the nodes' ``relations`` (outgoing and incoming, to nodes that exist)."""
        found = await self._related.of_nodes(tenant, list(dict.fromkeys(n.id for n in nodes)))
        wire_relations.attach(nodes, found)

    @property
    def _service(self) -> SearchService:
        if self._ready is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._ready

    async def Upsert(self, request: pb.UpsertRequest, context: Any) -> pb.UpsertResponse:
        validation.count(len(request.nodes), "nodes", self._limits.max_nodes, minimum=1)
        space = await self._service.space(space_id_from(request.space_id))
        converted = []
        for i, node in enumerate(request.nodes):
            tenant = enforce_tenant(validation.tenant(node.tenant, f"nodes[{i}].tenant"))
            converted.append(
                convert.node_from_proto(node, f"nodes[{i}]", tenant, space.dim, self._limits)
            )
        convert.distinct_nodes([record for record, _ in converted])  # before ids are resolved
        records = await self._service.with_ids([record for record, _ in converted])
        supplied: dict[tuple[str, str], list[VectorRow]] = {}
        for record, (_, vectors) in zip(records, converted, strict=True):
            if vectors:
                supplied.setdefault((record.tenant, record.id), []).extend(vectors)
        convert.distinct_nodes(records)  # a slug resolved to a node also given by id
        results = await self._service.upsert(records, supplied, space.id)
        return pb.UpsertResponse(
            results=[
                pb.UpsertResult(
                    id=r.id,
                    slug=r.slug or "",
                    outcome=_OUTCOMES[r.outcome],
                    version=r.version,
                    content_hash=r.content_hash,
                    vectors_written=r.vectors_written,
                )
                for r in results
            ]
        )

    async def Delete(self, request: pb.DeleteRequest, context: Any) -> pb.DeleteResponse:
        if not request.ids and not request.slugs:
            raise InvalidArgument("ids", "give at least one id or slug")
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        convert.check_keys(request.ids, request.slugs, self._limits.max_nodes, distinct=True)
        validation.integer(request.version, "version")
        results = await self._service.delete(
            tenant, list(request.ids), list(request.slugs), request.version
        )
        return pb.DeleteResponse(
            results=[
                pb.DeleteResult(id=i, slug=s or "", outcome=_DELETES[o]) for i, s, o in results
            ],
            deleted=sum(1 for *_, o in results if o is DeleteOutcome.DELETED),
        )

    async def Get(self, request: pb.GetRequest, context: Any) -> pb.GetResponse:
        if not request.ids and not request.slugs:
            raise InvalidArgument("ids", "give at least one id or slug")
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        convert.check_keys(request.ids, request.slugs, self._limits.max_get, distinct=False)
        nodes, vectors = await self._service.get(
            tenant,
            list(request.ids),
            list(request.slugs),
            with_vectors=request.include_vectors,
            space_id=space_id_from(request.space_id),
        )
        found_ids = {n.id for n in nodes}
        found_slugs = {n.slug for n in nodes}
        response = pb.GetResponse(
            nodes=[convert.node_to_proto(n, vectors=vectors.get(n.id, ())) for n in nodes],
            missing_ids=[i for i in request.ids if i not in found_ids],
            missing_slugs=[s for s in request.slugs if s not in found_slugs],
        )
        if request.include_relations and nodes:
            await self._with_relations(tenant, list(response.nodes))
        if request.include_feedback and nodes:
            await self._with_feedback(tenant, list(response.nodes))
        if request.include_rules and nodes:
            found = await self._guardian.of_nodes(tenant, [n.id for n in nodes])
            wire_rules.attach(list(response.nodes), found)
        return response

    async def _with_feedback(self, tenant: str, nodes: list[cpb.Node]) -> None:
        """Fill the nodes' ``feedback`` (counters and confidence)."""
        ids = list(dict.fromkeys(n.id for n in nodes))
        wire_feedback.attach(nodes, await self._service.feedback_of(tenant, ids))

    async def Feedback(self, request: pb.FeedbackRequest, context: Any) -> pb.FeedbackResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        items = wire_feedback.feedback_request_from_proto(request, tenant, datetime.now(UTC))
        result = await self._service.record_feedback(items)
        response = pb.FeedbackResponse(
            recorded=result.recorded,
            duplicates=result.duplicates,
            unknown_node_items=result.unknown,
        )
        for node_id, value in result.feedback.items():
            wire_feedback.node_feedback_to_proto(value, response.feedback[node_id])
        return response

    async def Search(self, request: pb.SearchRequest, context: Any) -> pb.SearchResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        query = wire_search.search_query(request, tenant, self._limits, self._hybrid)
        result = await self._service.search(query, space_id_from(request.space_id))
        response = pb.SearchResponse(
            space_id=str(result.space.id),
            mode=wire_search.MODE_OUT[result.mode],
            query_tokens=result.query_tokens,
            query_truncated=result.query_truncated,
            degraded=result.degraded,
            fusion=wire_search.FUSION_OUT[result.fusion]
            if result.fusion
            else pb.FUSION_UNSPECIFIED,
            expanded_with=result.expanded_with,
        )
        wire_search.fill_hits(result, query.include_body, response.hits, query.targets)
        if request.include_relations and response.hits and not result.degraded:
            await self._with_relations(tenant, [h.node for h in response.hits])
        if request.include_feedback and response.hits and not result.degraded:
            await self._with_feedback(tenant, [h.node for h in response.hits])
        return response

    async def Nearest(self, request: pb.NearestRequest, context: Any) -> pb.NearestResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        wire_search.check_source(request, "source node")
        if request.vector_name:
            validation.name(request.vector_name, "vector_name")
        flt = convert.filter_from_proto(request.filter, "filter", self._limits)
        flt = convert.with_content_types(flt, request.content_types, "content_types")
        source_id, result = await self._service.nearest(
            tenant,
            node_id=request.id or None,
            slug=request.slug or None,
            vector_name=request.vector_name or domain.DEFAULT_VECTOR,
            top_k=wire_search.top_k(request.top_k, self._limits),
            flt=flt,
            min_score=convert.min_score(request),
            space_id=space_id_from(request.space_id),
            modifiers=wire_feedback.modifiers_from_proto(request.modifiers),
            default_modifiers=not request.skip_default_modifiers,
        )
        response = pb.NearestResponse(
            source_id=source_id,
            space_id=str(result.space.id),
            degraded=result.degraded,
        )
        wire_search.fill_hits(result, request.include_body, response.hits)
        if request.include_relations and response.hits and not result.degraded:
            await self._with_relations(tenant, [h.node for h in response.hits])
        if request.include_feedback and response.hits and not result.degraded:
            await self._with_feedback(tenant, [h.node for h in response.hits])
        return response

    async def Relate(self, request: pb.RelateRequest, context: Any) -> pb.RelateResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        edges = wire_relations.edges_from_proto(request, self._limits.max_nodes)
        created, updated = await self._related.relate(tenant, edges)
        return pb.RelateResponse(created=created, updated=updated)

    async def Unrelate(self, request: pb.UnrelateRequest, context: Any) -> pb.UnrelateResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        keys = wire_relations.keys_from_proto(request, self._limits.max_nodes)
        return pb.UnrelateResponse(removed=await self._related.unrelate(tenant, keys))

    async def Related(self, request: pb.RelatedRequest, context: Any) -> pb.RelatedResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        wire_search.check_source(request, "node")
        query = wire_relations.walk_from_proto(request, tenant, self._max_related)
        start, hits = await self._related.related(query, request.id or None, request.slug or None)
        return wire_relations.related_to_proto(
            start, hits, lambda n: convert.node_to_proto(n, include_body=request.include_body)
        )

    async def WriteRules(
        self, request: pb.WriteRulesRequest, context: Any
    ) -> pb.WriteRulesResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        node_id, rules, replace = wire_rules.write_from_proto(request, self._limits.max_rules)
        done = await self._guardian.write(tenant, node_id, rules, replace=replace)
        return pb.WriteRulesResponse(
            created=done.created, updated=done.updated, removed=done.removed
        )

    async def RemoveRules(
        self, request: pb.RemoveRulesRequest, context: Any
    ) -> pb.RemoveRulesResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        node_id, ids = wire_rules.remove_from_proto(request, self._limits.max_rules)
        return pb.RemoveRulesResponse(removed=await self._guardian.remove(tenant, node_id, ids))

    async def Check(self, request: pb.CheckRequest, context: Any) -> pb.CheckResponse:
        tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        query = wire_rules.check_from_proto(request, tenant, self._check_limits)
        return wire_rules.check_to_proto(await self._guardian.check(query))

    async def Stats(self, request: pb.StatsRequest, context: Any) -> pb.StatsResponse:
        tenant: str | None = None
        if request.all_tenants:
            require_every_tenant(Role.ADMIN)  # a tenant claim never counts other tenants
        else:
            tenant = enforce_tenant(validation.tenant(request.tenant, "tenant"))
        # Table sizes count every tenant's rows: only for a caller who may see them all.
        stats = await self._service.stats(tenant, sizes=current_principal().tenant is None)
        response = pb.StatsResponse(
            nodes_by_content_type=[
                pb.ContentTypeCount(content_type=t, nodes=n) for t, n in stats.nodes_by_type.items()
            ],
            nodes_total=sum(stats.nodes_by_type.values()),
            nodes_by_tenant=[
                pb.TenantCount(tenant=t, nodes=n) for t, n in stats.nodes_by_tenant.items()
            ],
            spaces=[
                space_to_proto(s, stats.vectors.get(s.id), stats.space_nodes.get(s.id))
                for s in stats.spaces
            ],
            relations=[pb.RelationSize(name=n, kind=k, bytes=b) for n, k, b in stats.relations],
            heal_backlog=pb.HealBacklog(missing=stats.missing, stale=stats.stale),
            users=stats.users,
            user_events=stats.user_events,
        )
        if stats.active is not None:
            active = stats.active.id
            response.active_space.CopyFrom(
                space_to_proto(
                    stats.active, stats.vectors.get(active), stats.space_nodes.get(active)
                )
            )
        response.computed_at.FromDatetime(datetime.now(UTC))
        return response

    async def Recommend(self, request: pb.RecommendRequest, context: Any) -> pb.RecommendResponse:
        return await self._recommendations.recommend(request, space_id_from(request.space_id))

    async def Track(self, request: pb.TrackRequest, context: Any) -> pb.TrackResponse:
        return await self._recommendations.track(request)

    @property
    def _recommendations(self) -> Recommendations:
        if self._recommend is None:
            raise DependencyUnavailable("search", "still starting up")
        return self._recommend
