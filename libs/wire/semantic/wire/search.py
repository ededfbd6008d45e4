"""The Search and Nearest messages: requests to core queries (validated) and results to
responses, for every transport."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core import domain
from semantic.core.service import SearchResult
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire import feedback as wire_feedback

_MODES = {
    pb.SEARCH_MODE_DENSE: domain.Mode.DENSE,
    pb.SEARCH_MODE_KEYWORD: domain.Mode.KEYWORD,
    pb.SEARCH_MODE_HYBRID: domain.Mode.HYBRID,
}
MODE_OUT = {v: k for k, v in _MODES.items()}
_FUSIONS = {
    pb.FUSION_RRF: domain.Fusion.RRF,
    pb.FUSION_RELATIVE_SCORE: domain.Fusion.RELATIVE_SCORE,
    pb.FUSION_DISTRIBUTION: domain.Fusion.DISTRIBUTION,
}
FUSION_OUT = {v: k for k, v in _FUSIONS.items()}


def top_k(value: int, limits: convert.Limits) -> int:
    """A request's ``top_k``: 0 is the default (10); above the limit is refused."""
    if value == 0:
        return 10
    if value > limits.max_top_k:
        raise InvalidArgument("top_k", f"must be between 1 and {limits.max_top_k}")
    return value


def search_query(
    request: pb.SearchRequest,
    tenant: str,
    limits: convert.Limits,
    hybrid_defaults: domain.HybridParams,
) -> domain.SearchQuery:
    """A ``SearchRequest`` as the core's query, every field validated (``InvalidArgument``
    names the first bad one); ``hybrid_defaults``: what a hybrid search gets for what the
    request leaves unset."""
    kind = request.WhichOneof("query")
    text = request.text if kind == "text" else None
    vector = None
    if kind is None or (kind == "text" and not request.text.strip()):
        raise InvalidArgument("text", "give query text or a query vector")
    if text is not None:
        validation.text(text, "text", limits.max_query_chars)
    if kind == "vector":
        vector = convert.vector_from_proto(request.vector, "vector")
    if request.mode == pb.SEARCH_MODE_UNSPECIFIED:
        mode = domain.Mode.HYBRID if text else domain.Mode.DENSE
    elif request.mode in _MODES:
        mode = _MODES[request.mode]
    else:
        raise InvalidArgument("mode", f"unknown value {request.mode}")
    if mode is not domain.Mode.DENSE and text is None:
        raise InvalidArgument("mode", f"{mode.value} search needs query text, not a vector")
    if request.offset + top_k(request.top_k, limits) > limits.max_offset:
        raise InvalidArgument("offset", f"offset + top_k must be at most {limits.max_offset}")
    targets = convert.targets_from_proto(request.targets, limits)
    hybrid = request.hybrid
    defaults = hybrid_defaults
    params = domain.HybridParams(
        rrf_k=validation.integer(hybrid.rrf_k, "hybrid.rrf_k", minimum=1)
        if hybrid.HasField("rrf_k")
        else defaults.rrf_k,
        dense_weight=validation.number(
            hybrid.dense_weight, "hybrid.dense_weight", minimum=0, maximum=domain.MAX_WEIGHT
        )
        if hybrid.HasField("dense_weight")
        else 1.0,
        keyword_weight=validation.number(
            hybrid.keyword_weight, "hybrid.keyword_weight", minimum=0, maximum=domain.MAX_WEIGHT
        )
        if hybrid.HasField("keyword_weight")
        else 1.0,
        candidates=validation.integer(
            hybrid.candidates,
            "hybrid.candidates",
            minimum=1,
            maximum=domain.MAX_HYBRID_CANDIDATES,
        )
        if hybrid.HasField("candidates")
        else defaults.candidates,
        fusion=fusion(hybrid.fusion, defaults.fusion),
        expansion_docs=validation.integer(
            hybrid.expansion_docs,
            "hybrid.expansion_docs",
            minimum=0,
            maximum=domain.MAX_EXPANSION_DOCS,
        )
        if hybrid.HasField("expansion_docs")
        else defaults.expansion_docs,
        expansion_weight=validation.number(
            hybrid.expansion_weight, "hybrid.expansion_weight", minimum=0
        )
        if hybrid.HasField("expansion_weight")
        else defaults.expansion_weight,
    )
    return domain.SearchQuery(
        tenant=tenant,
        mode=mode,
        text=text,
        vector=vector,
        targets=tuple(targets) or (domain.VectorTarget(),),
        hybrid=params,
        filter=convert.filter_from_proto(request.filter, "filter", limits),
        top_k=top_k(request.top_k, limits),
        offset=request.offset,
        min_score=convert.min_score(request),
        include_body=request.include_body,
        modifiers=wire_feedback.modifiers_from_proto(request.modifiers),
        default_modifiers=not request.skip_default_modifiers,
    )


def fusion(value: pb.Fusion.ValueType, default: domain.Fusion) -> domain.Fusion:
    """``HybridParams.fusion``: unset is the server default; an unknown value is refused."""
    if value == pb.FUSION_UNSPECIFIED:
        return default
    if value not in _FUSIONS:
        raise InvalidArgument("hybrid.fusion", f"unknown value {value}")
    return _FUSIONS[value]


def check_source(request: pb.NearestRequest | pb.RelatedRequest, what: str) -> None:
    """The starting node of a Nearest or Related: its id or its slug, valid."""
    source = request.WhichOneof("source")
    if source is None or not getattr(request, source):
        raise InvalidArgument("id", f"give the id or the slug of the {what}")
    if source == "id":
        validation.node_id(request.id, "id")
    else:
        validation.slug(request.slug, "slug")


_EXPLAINED = (
    "dense_rank",
    "dense_score",
    "keyword_rank",
    "keyword_score",
    "fused_score",
    "dense_normalized",
    "keyword_normalized",
    "dense_part",
    "keyword_part",
)


def fill_hits(
    result: SearchResult,
    include_body: bool,
    into: Any,
    targets: Sequence[domain.VectorTarget] = (),
) -> None:
    """Append the result's hits to ``into`` (a response's ``hits``); ``targets``: the
    query's named vectors, each explained with its weight (a dense hit without a vector of
    one of them: similarity 0, as it counted).

    Every hit of every query comes through here: each message is written in place (a
    submessage given to a constructor is copied, which made this three times slower); the
    explanation is present only when it says something."""
    weights = {t.name: float(t.weight) for t in targets}
    for hit in result.hits:
        node = hit.node
        assert node is not None
        message = into.add(score=hit.score)
        convert.fill_node(message.node, node, include_body=include_body)
        chunk = hit.chunk
        if chunk is not None:
            match = message.chunk
            match.vector_name = chunk.vector_name
            match.chunk_index = chunk.chunk_index
            if chunk.span_end > chunk.span_start:  # unknown (a client vector without one): unset
                match.text = node.text_for(chunk.vector_name)[chunk.span_start : chunk.span_end]
                match.span.start = chunk.span_start
                match.span.end = chunk.span_end
            match.similarity = chunk.similarity
        explanation = message.explanation
        for name in _EXPLAINED:
            value = getattr(hit, name)
            if value is not None:
                setattr(explanation, name, value)
        scores = hit.target_scores
        if scores:
            for name in weights or scores:
                explanation.targets.add(
                    name=name, similarity=scores.get(name, 0.0), weight=weights.get(name, 1.0)
                )
        wire_feedback.explain(hit, explanation)
