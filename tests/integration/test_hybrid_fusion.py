"""Hybrid fusions on the real stack (search service, PostgreSQL, the real model): each fusion
chosen per request over HTTP and gRPC, explained per side, the "money back" query, and query
expansion.

Two tenants hold the same small site; only the refund page differs. In tenant ``says`` it
says "money back"; in tenant ``paraphrases`` it does not ("Return any item within 30
days."), so it is the best dense match for "money back" and no keyword match at all, while
a money quiz, a back-pain article and a back-to-school offer match a word each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from http_kit import HttpSearch, start_http_search

from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

API = "/api/semantic"
SITE = {
    "quiz": ("Money quiz", "How much money do you spend on coffee? Take the quiz.", "quiz"),
    "savings": (
        "Ten ways to save money",
        "Small habits that keep money in your pocket.",
        "article",
    ),
    "school": ("Back to school sale", "Notebooks, pens and backpacks at half price.", "offer"),
    "yoga": (
        "Yoga for back pain",
        "Five gentle stretches that ease a stiff lower back.",
        "article",
    ),
    "transfer": ("Sending money abroad", "Compare bank transfer and payment app fees.", "article"),
    "shipping": ("Shipping times", "Orders leave the warehouse within two working days.", "page"),
    "warranty": ("Warranty", "Every product is covered for two years against defects.", "page"),
    "contact": ("Contact support", "Write to us and a person answers within a day.", "page"),
    "pasta": ("Fresh pasta", "Flour, eggs and a rolling pin make silky tagliatelle.", "article"),
    "tls": ("Renewing TLS", "Automate certificate renewal with ACME before expiry.", "article"),
}
REFUND = {
    "says": "Ask for your money back within 30 days of purchase.",
    "paraphrases": "Return any item within 30 days.",
}
FUSIONS = {
    "rrf": pb.FUSION_RRF,
    "relative_score": pb.FUSION_RELATIVE_SCORE,
    "distribution": pb.FUSION_DISTRIBUTION,
}


@pytest.fixture(scope="module")
def site(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[HttpSearch]:
    """A search service with the default settings, the site written in both tenants."""
    for http in start_http_search(pg_server, embedder_address, fp32_model_dir, service_starter):
        for tenant, refund_body in REFUND.items():
            docs = {"refund": ("Refund policy", refund_body, "page"), **SITE}
            nodes = [
                {"id": key, "title": title, "body": body, "contentType": kind, "tenant": tenant}
                for key, (title, body, kind) in docs.items()
            ]
            response = requests.post(
                f"{http.url}{API}/nodes", json={"nodes": nodes}, headers=http.headers(["writer"])
            )
            assert response.status_code == 200, response.text
        yield http


def _search(site: HttpSearch, tenant: str, **params: str) -> dict[str, Any]:
    response = requests.get(
        f"{site.url}{API}/vector-search",
        params={"q": "money back", "tenant": tenant, "k": "20", **params},
        headers=site.headers(["reader"]),
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _ids(body: dict[str, Any]) -> list[str]:
    return [hit["node"]["id"] for hit in body["hits"]]


def _grpc_search(site: HttpSearch, request: pb.SearchRequest) -> pb.SearchResponse:
    with grpc.insecure_channel(site.grpc) as channel:
        response: pb.SearchResponse = search_pb2_grpc.SearchStub(channel).Search(
            request, metadata=[("authorization", site.headers(["reader"])["Authorization"])]
        )
    return response


def _paraphrased(fusion: pb.Fusion.ValueType, keyword_weight: float) -> pb.SearchRequest:
    return pb.SearchRequest(
        tenant="paraphrases",
        text="money back",
        top_k=20,
        hybrid=pb.HybridParams(fusion=fusion, keyword_weight=keyword_weight),
    )


def test_money_back_finds_the_refund_page_first_with_the_default_fusion(site: HttpSearch) -> None:
    body = _search(site, "says")
    assert body["fusion"] == "FUSION_RELATIVE_SCORE"  # the server default (SEMANTIC_SEARCH_FUSION)
    ids = _ids(body)
    assert ids[0] == "refund"
    assert ids.index("refund") < ids.index("quiz")


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_puts_the_refund_page_that_says_money_back_first(
    site: HttpSearch, fusion: str
) -> None:
    body = _search(site, "says", fusion=fusion)
    assert body["fusion"] == f"FUSION_{fusion.upper()}"
    assert _ids(body)[0] == "refund"


def test_a_score_fusion_ranks_the_best_dense_match_first_where_rrf_does_not(
    site: HttpSearch,
) -> None:
    """The refund page that never says "money back" is the best dense match and no keyword
    match. Under RRF every node near the top of both lists outranks it (on this small site,
    every node that both sides returned), the quiz included, at equal weights and with the
    keyword side at half; a score fusion sees how far ahead of the rest it is on the dense
    side and, with the keyword side at half the weight, ranks it first."""
    for weight in (1.0, 0.5):
        rrf = _grpc_search(site, _paraphrased(pb.FUSION_RRF, weight))
        ids = [hit.node.id for hit in rrf.hits]
        assert ids.index("quiz") < ids.index("refund"), (weight, ids)
    response = _grpc_search(site, _paraphrased(pb.FUSION_RELATIVE_SCORE, 0.5))
    ids = [hit.node.id for hit in response.hits]
    assert ids[0] == "refund", ids
    refund = response.hits[0].explanation
    assert not refund.HasField("keyword_rank")
    assert (refund.dense_rank, refund.dense_normalized, refund.dense_part) == (1, 1.0, 1.0)
    assert refund.keyword_part == 0.0


@pytest.mark.parametrize("fusion", FUSIONS)
def test_each_hit_explains_both_sides_parts(site: HttpSearch, fusion: str) -> None:
    request = pb.SearchRequest(
        tenant="says",
        text="money back",
        top_k=20,
        hybrid=pb.HybridParams(fusion=FUSIONS[fusion], dense_weight=2.0, keyword_weight=0.5),
    )
    response = _grpc_search(site, request)
    assert response.fusion == FUSIONS[fusion]
    assert response.hits
    for hit in response.hits:
        why = hit.explanation
        assert why.HasField("dense_part")
        assert why.HasField("keyword_part")
        assert why.fused_score == pytest.approx(why.dense_part + why.keyword_part)
        assert hit.score == pytest.approx(why.fused_score)
        for side, weight in (("dense", 2.0), ("keyword", 0.5)):
            on_side = why.HasField(f"{side}_rank")
            part = getattr(why, f"{side}_part")
            if fusion == "rrf":
                assert not why.HasField(f"{side}_normalized")
            elif on_side:
                normalized = getattr(why, f"{side}_normalized")
                assert 0.0 <= normalized <= 1.0
                assert part == pytest.approx(weight * normalized)
            if not on_side:
                assert part == 0.0
        if fusion != "rrf":
            assert 0.0 <= hit.score <= 2.5


def test_only_hybrid_mode_reports_a_fusion(site: HttpSearch) -> None:
    for mode in ("dense", "keyword"):
        body = _search(site, "says", mode=mode, fusion="distribution")
        assert "fusion" not in body  # FUSION_UNSPECIFIED: not written in JSON
        assert all("densePart" not in hit["explanation"] for hit in body["hits"])


def _says(**hybrid: Any) -> pb.SearchRequest:
    return pb.SearchRequest(
        tenant="says", text="money back", top_k=20, hybrid=pb.HybridParams(**hybrid)
    )


def test_hybrid_search_is_expanded_with_the_first_hits_of_a_first_pass(site: HttpSearch) -> None:
    first_pass = _grpc_search(site, _says(expansion_docs=0))
    assert list(first_pass.expanded_with) == []
    ranked = [hit.node.id for hit in first_pass.hits]
    default = _grpc_search(site, _says())  # SEMANTIC_SEARCH_EXPANSION_DOCS: 1
    assert list(default.expanded_with) == ranked[:1]
    three = _grpc_search(site, _says(expansion_docs=3))
    assert list(three.expanded_with) == ranked[:3]


def test_the_dense_side_is_searched_again_with_the_expanded_vector(site: HttpSearch) -> None:
    """At a huge weight the expanded vector is the first hit's own: that hit (one chunk) then
    has dense similarity 1 and dense rank 1, and the other dense scores change."""
    plain = _grpc_search(site, _says(expansion_docs=0))
    heavy = _grpc_search(site, _says(expansion_docs=1, expansion_weight=1e6))
    (first,) = heavy.expanded_with
    why = {hit.node.id: hit.explanation for hit in heavy.hits}
    assert why[first].dense_rank == 1
    assert why[first].dense_score == pytest.approx(1.0, abs=1e-4)
    before = {hit.node.id: hit.explanation.dense_score for hit in plain.hits}
    changed = [node for node in before if node in why and before[node] != why[node].dense_score]
    assert len(changed) >= len(before) - 1  # only a node at exactly the same cosine may stay


@pytest.mark.parametrize("hybrid", [{"expansion_weight": 0.0}, {"dense_weight": 0.0}])
def test_a_zero_weight_turns_expansion_off(site: HttpSearch, hybrid: dict[str, float]) -> None:
    off = _grpc_search(site, _says(expansion_docs=2, **hybrid))
    assert list(off.expanded_with) == []
    plain = _grpc_search(site, _says(expansion_docs=0, **hybrid))
    assert [h.node.id for h in off.hits] == [h.node.id for h in plain.hits]


def test_only_hybrid_mode_is_expanded(site: HttpSearch) -> None:
    for mode in (pb.SEARCH_MODE_DENSE, pb.SEARCH_MODE_KEYWORD):
        request = _says(expansion_docs=3)
        request.mode = mode
        assert list(_grpc_search(site, request).expanded_with) == []


def test_http_asks_for_an_expansion_and_refuses_too_many_hits(site: HttpSearch) -> None:
    body = _search(site, "says", expansion_docs="2")
    assert len(body["expandedWith"]) == 2
    assert "expandedWith" not in _search(site, "says", expansion_docs="0")
    response = requests.get(
        f"{site.url}{API}/vector-search",
        params={"q": "money back", "expansion_docs": "11"},
        headers=site.headers(["reader"]),
    )
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "expansion_docs"
