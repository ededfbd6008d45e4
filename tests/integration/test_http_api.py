"""The HTTP API against a real search service (JWT auth on, real PostgreSQL and embedder):
the same answers as gRPC, the same auth, problems for every mistake, limits and metrics."""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Callable, Iterator
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format
from http_kit import HttpSearch, start_http_search

from semantic.tools.devstack.postgres import EmbeddedPostgres
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

API = "/api/semantic"
DOCS = {
    "refund": ("Refund policy", "Ask for your money back within 30 days of purchase.", "page"),
    "quiz": ("Money quiz", "How much money do you spend on coffee? Take the quiz.", "quiz"),
    "pasta": ("Fresh pasta", "Flour, eggs and a rolling pin make silky tagliatelle.", "article"),
    "tls": ("Renewing TLS", "Automate certificate renewal with ACME before expiry.", "article"),
}


@pytest.fixture(scope="module")
def http(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[HttpSearch]:
    yield from start_http_search(
        pg_server,
        embedder_address,
        fp32_model_dir,
        service_starter,
        SEMANTIC_HTTP_MAX_BODY_BYTES="65536",
        SEMANTIC_HTTP_CORS_ORIGINS="https://app.example.com",
    )


@pytest.fixture(scope="module")
def loaded(http: HttpSearch) -> HttpSearch:
    nodes = [
        {"id": key, "slug": f"{key}-slug", "title": t, "body": b, "contentType": c, "version": "1"}
        for key, (t, b, c) in DOCS.items()
    ]
    response = requests.post(
        f"{http.url}{API}/nodes", json={"nodes": nodes}, headers=http.headers(["writer"])
    )
    assert response.status_code == 200, response.text
    assert [r["outcome"] for r in response.json()["results"]] == ["UPSERT_OUTCOME_CREATED"] * 4
    return http


def _problem(response: requests.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:semantic:problem:")
    assert all(body[key] for key in ("title", "detail", "code"))
    if field is not None:
        assert body["field"] == field, body
        assert body["detail"].startswith(f"{field}")
    return body


def test_live_ready_and_open_without_a_token(http: HttpSearch) -> None:
    assert requests.get(f"{http.url}/healthz").json() == {"status": "live"}
    assert requests.get(f"{http.url}/readyz").json() == {"status": "ready"}
    document = requests.get(f"{http.url}/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert f"{API}/vector-search" in document["paths"]


def test_vector_search_answers_what_grpc_answers(loaded: HttpSearch) -> None:
    headers = loaded.headers(["reader"])
    params = {"q": "get my money back", "mode": "hybrid", "k": 3, "include_body": "true"}
    response = requests.get(f"{loaded.url}{API}/vector-search", params=params, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["hits"][0]["node"]["id"] == "refund"
    assert body["hits"][0]["node"]["body"].startswith("Ask for your money")
    assert body["mode"] == "SEARCH_MODE_HYBRID"
    assert "queryTokens" in body
    request = pb.SearchRequest(
        text="get my money back", mode=pb.SEARCH_MODE_HYBRID, top_k=3, include_body=True
    )
    with grpc.insecure_channel(loaded.grpc) as channel:
        expected = search_pb2_grpc.SearchStub(channel).Search(
            request, metadata=[("authorization", headers["Authorization"])]
        )
    assert [h["node"]["id"] for h in body["hits"]] == [h.node.id for h in expected.hits]
    assert [h["score"] for h in body["hits"]] == pytest.approx([h.score for h in expected.hits])


def test_vector_search_filters_by_type_and_tags_and_pages(loaded: HttpSearch) -> None:
    headers = loaded.headers(["reader"])
    url = f"{loaded.url}{API}/vector-search"
    articles = requests.get(url, params={"q": "pasta", "type": "article"}, headers=headers).json()
    assert {h["node"]["contentType"] for h in articles["hits"]} == {"article"}
    two = requests.get(
        url, params=[("q", "money"), ("type", "page"), ("type", "quiz")], headers=headers
    ).json()
    assert {h["node"]["id"] for h in two["hits"]} == {"refund", "quiz"}
    first = requests.get(url, params={"q": "money", "k": 1}, headers=headers).json()
    second = requests.get(url, params={"q": "money", "k": 1, "offset": 1}, headers=headers).json()
    assert len(first["hits"]) == len(second["hits"]) == 1
    assert first["hits"][0]["node"]["id"] != second["hits"][0]["node"]["id"]
    none = requests.get(url, params={"q": "money", "tags_all": "nope"}, headers=headers).json()
    assert none.get("hits", []) == []


def test_post_search_takes_the_full_request_as_protobuf_json(loaded: HttpSearch) -> None:
    body = {
        "text": "certificates",
        "mode": "SEARCH_MODE_KEYWORD",
        "topK": 2,
        "filter": {"contentTypes": ["article"]},
    }
    response = requests.post(
        f"{loaded.url}{API}/search", json=body, headers=loaded.headers(["reader"])
    )
    assert response.status_code == 200, response.text
    assert [h["node"]["id"] for h in response.json()["hits"]] == ["tls"]
    proto_names = {"text": "pasta", "top_k": 1, "mode": 1}  # proto names and enum numbers too
    again = requests.post(
        f"{loaded.url}{API}/search", json=proto_names, headers=loaded.headers(["reader"])
    )
    assert again.status_code == 200
    assert again.json()["mode"] == "SEARCH_MODE_DENSE"


def test_nearest_by_slug_or_id_and_get_and_stats(loaded: HttpSearch) -> None:
    headers = loaded.headers(["reader"])
    by_slug = requests.get(
        f"{loaded.url}{API}/nearest", params={"slug": "refund-slug", "k": 2}, headers=headers
    ).json()
    by_id = requests.get(
        f"{loaded.url}{API}/nearest", params={"id": "refund", "k": 2}, headers=headers
    ).json()
    assert by_slug["sourceId"] == by_id["sourceId"] == "refund"
    assert [h["node"]["id"] for h in by_slug["hits"]] == [h["node"]["id"] for h in by_id["hits"]]
    assert "refund" not in [h["node"]["id"] for h in by_id["hits"]]
    node = requests.get(f"{loaded.url}{API}/nodes/pasta", headers=headers).json()
    assert (node["title"], node["version"]) == ("Fresh pasta", "1")
    _problem(requests.get(f"{loaded.url}{API}/nodes/nothing", headers=headers), 404)
    stats = requests.get(f"{loaded.url}{API}/stats", headers=headers).json()
    assert stats["nodesTotal"] == "4"
    assert stats["nodesByTenant"] == [{"nodes": "4"}]  # the default tenant: "" left out


def test_upsert_with_client_vectors_then_delete(loaded: HttpSearch) -> None:
    writer = loaded.headers(["writer"])
    vector = np.random.default_rng(3).standard_normal(384).astype(np.float32)
    node = {
        "id": "pushed",
        "contentType": "page",
        "title": "Pushed embedding",
        "body": "A node whose vector the client computed.",
        "version": "1",
        "vectors": [{"name": "content", "vector": {"values": vector.tolist()}}],
    }
    response = requests.post(f"{loaded.url}{API}/nodes", json={"nodes": [node]}, headers=writer)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["vectorsWritten"] == 1
    search = requests.post(
        f"{loaded.url}{API}/search",
        json={"vector": {"values": vector.tolist()}, "topK": 1},
        headers=loaded.headers(["reader"]),
    ).json()
    assert search["hits"][0]["node"]["id"] == "pushed"
    assert search["hits"][0]["score"] == pytest.approx(1.0, abs=1e-4)
    deleted = requests.delete(f"{loaded.url}{API}/nodes/pushed", headers=writer).json()
    assert deleted["results"][0]["outcome"] == "DELETE_OUTCOME_DELETED"
    again = requests.delete(f"{loaded.url}{API}/nodes/pushed", headers=writer).json()
    assert again["results"][0]["outcome"] == "DELETE_OUTCOME_NOT_FOUND"


def test_track_then_recommend_with_the_per_user_rule(loaded: HttpSearch) -> None:
    event = {
        "eventId": "view-1",
        "userId": "ann",
        "nodeId": "pasta",
        "action": "USER_ACTION_VIEW",
        "occurredAt": "2026-12-01T10:00:00Z",
    }
    tracked = requests.post(
        f"{loaded.url}{API}/track", json={"events": [event]}, headers=loaded.headers(["writer"])
    )
    assert tracked.status_code == 200
    assert tracked.json()["accepted"] == 1
    ann = loaded.headers(["reader"], subject="ann")
    mine = requests.get(
        f"{loaded.url}{API}/recommend", params={"userId": "ann", "k": 2}, headers=ann
    )
    assert mine.status_code == 200, mine.text
    assert mine.json()["journeyEvents"] == 1
    assert mine.json()["recommendationId"]
    seen = requests.get(
        f"{loaded.url}{API}/recommend",
        params={"userId": "ann", "exclude_seen": "true", "k": 10},
        headers=ann,
    ).json()
    assert "pasta" not in [h["node"]["id"] for h in seen["hits"]]
    _problem(
        requests.get(f"{loaded.url}{API}/recommend", params={"userId": "bob"}, headers=ann), 403
    )


def test_tokens_roles_and_tenants_as_over_grpc(loaded: HttpSearch) -> None:
    url = f"{loaded.url}{API}/vector-search"
    missing = _problem(requests.get(url, params={"q": "money"}), 401)
    assert "token" in missing["detail"].lower()
    assert requests.get(url, params={"q": "x"}).headers["www-authenticate"].startswith("Bearer")
    _problem(requests.get(url, params={"q": "x"}, headers={"Authorization": "Bearer nope"}), 401)
    reader = loaded.headers(["reader"])
    _problem(requests.post(f"{loaded.url}{API}/nodes", json={"nodes": []}, headers=reader), 403)
    _problem(requests.get(f"{loaded.url}{API}/admin/health", headers=reader), 403)
    pinned = loaded.headers(["admin"], tenant="acme")
    _problem(requests.get(url, params={"q": "x", "tenant": "globex"}, headers=pinned), 403)
    _problem(
        requests.get(f"{loaded.url}{API}/stats", params={"all_tenants": "true"}, headers=pinned),
        403,
    )
    theirs = requests.get(url, params={"q": "money"}, headers=pinned).json()
    assert theirs.get("hits", []) == []  # acme has no nodes: the claim forced the tenant
    # a signed token whose tenant claim is no tenant name is malformed
    for tenant in ("-bad", "a\x00", "x" * 65):
        malformed = loaded.headers(["reader"], tenant=tenant)
        detail = _problem(requests.get(url, params={"q": "x"}, headers=malformed), 401)["detail"]
        assert "malformed token" in detail
    # two Authorization headers are refused whichever comes first, as two metadata entries
    good = loaded.headers(["reader"])["Authorization"]
    for first, second in ((good, "Bearer nope"), ("Bearer nope", good)):
        split = urlsplit(url)
        conn = HTTPConnection(split.hostname or "", split.port)
        try:
            conn.putrequest("GET", f"{split.path}?q=x")
            conn.putheader("Authorization", first)
            conn.putheader("Authorization", second)
            conn.endheaders()
            answer = conn.getresponse()
            assert answer.status == 401
            assert "more than one" in json.loads(answer.read())["detail"]
        finally:
            conn.close()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "x", "k": "-1"}, "k"),
        ({"q": "x", "k": "ten"}, "k"),
        ({"q": "x", "k": "100000"}, "k"),
        ({"q": "x", "mode": "fuzzy"}, "mode"),
        ({"q": "x", "fusion": "linear"}, "fusion"),
        ({"q": ""}, "q"),
        ({"q": "x\x00y"}, "q"),
        ({"q": "x", "type": "Bad Type!"}, "type[0]"),
        ({"q": "x", "min_score": "nan"}, "min_score"),
        ({"q": "x", "include_body": "perhaps"}, "include_body"),
        ({"q": "x", "tenant": "../x y"}, "tenant"),
    ],
)
def test_bad_query_parameters_get_400_naming_the_parameter(
    loaded: HttpSearch, params: dict[str, str], field: str
) -> None:
    response = requests.get(
        f"{loaded.url}{API}/vector-search", params=params, headers=loaded.headers(["reader"])
    )
    _problem(response, 400, field)


def test_bad_bodies_get_400_413_or_415(loaded: HttpSearch) -> None:
    url = f"{loaded.url}{API}/search"
    headers = {**loaded.headers(["reader"]), "Content-Type": "application/json"}
    _problem(requests.post(url, data=b"{not json", headers=headers), 400, "body")
    unknown = _problem(requests.post(url, json={"txet": "x"}, headers=headers), 400, "txet")
    assert "txet" in unknown["detail"]
    _problem(requests.post(url, data=b"\xff\xfe", headers=headers), 400, "body")
    _problem(requests.post(url, json={"text": "x", "topK": "many"}, headers=headers), 400, "topK")
    deep = "[" * 5000 + "]" * 5000
    _problem(requests.post(url, data=f'{{"text": "x", "x": {deep}}}', headers=headers), 400)
    # A problem found past parsing names the field as the body did: topK, or top_k.
    _problem(requests.post(url, json={"text": "x", "topK": 5000}, headers=headers), 400, "topK")
    _problem(requests.post(url, json={"text": "x", "top_k": 5000}, headers=headers), 400, "top_k")
    rrf = {"text": "x", "mode": "SEARCH_MODE_HYBRID", "hybrid": {"rrfK": 0}}
    _problem(requests.post(url, json=rrf, headers=headers), 400, "hybrid.rrfK")
    event = {"eventId": "e1", "userId": "u", "nodeId": "n", "action": "USER_ACTION_VIEW"}
    event["occurredAt"] = "0001-01-01T00:00:00Z"
    track = f"{loaded.url}{API}/track"
    writer = {**loaded.headers(["writer"]), "Content-Type": "application/json"}
    _problem(
        requests.post(track, json={"events": [event]}, headers=writer), 400, "events[0].occurredAt"
    )
    fusion = {"text": "x", "hybrid": {"fusion": 7}}  # a number no server knows
    _problem(requests.post(url, json=fusion, headers=headers), 400, "hybrid.fusion")
    fusion = {"text": "x", "hybrid": {"fusion": "FUSION_LINEAR"}}
    _problem(requests.post(url, json=fusion, headers=headers), 400, "hybrid.fusion")
    big = {"text": "x" * 70000}
    _problem(requests.post(url, json=big, headers=headers), 413)
    text = {**headers, "Content-Type": "text/plain"}
    _problem(requests.post(url, data=b'{"text": "x"}', headers=text), 415)


def test_a_request_head_past_the_limit_gets_431_and_is_not_kept(http: HttpSearch) -> None:
    """llhttp keeps no limit on a request's headers: without one, a client streaming a
    header line without end fills the process's memory (200 MB were accepted)."""
    split = urlsplit(http.url)
    with socket.create_connection((split.hostname or "", split.port or 80), timeout=30) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        sent = 0
        with contextlib.suppress(OSError):  # the server closes the connection midway
            while sent < 8 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), reply[:300]
    assert b"connection: close" in head.lower()
    problem = json.loads(body)
    assert problem["status"] == 431
    assert "65536 bytes" in problem["detail"]
    assert sent < 8 * 1024 * 1024, "the whole header was read"
    # Heads under the limit pass, also several on one connection (counted per request).
    with requests.Session() as session:
        for _ in range(3):
            fine = session.get(f"{http.url}/healthz", headers={"X-Big": "a" * 40000})
            assert fine.status_code == 200, fine.text
    # A head over the limit read at once: a header, or the request line.
    big_header = b"X-Big: " + b"a" * 100_000 + b"\r\n"
    for line, header in ((b"/healthz", big_header), (b"/healthz?" + b"a" * 100_000, b"")):
        head, body = _raw(http.url, b"GET " + line + b" HTTP/1.1\r\nHost: x\r\n" + header)
        assert head.startswith(b"HTTP/1.1 431 "), head
        assert json.loads(body)["status"] == 431
    # What the HTTP parser itself refuses is a problem document too.
    for bad in (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n",
    ):
        head, body = _raw(http.url, bad)
        assert head.startswith(b"HTTP/1.1 400 "), head
        assert b"application/problem+json" in head
        assert json.loads(body)["status"] == 400


def _raw(url: str, request: bytes) -> tuple[bytes, bytes]:
    """Send ``request`` (its head's end added) in one write; the answer's head and body."""
    split = urlsplit(url)
    with socket.create_connection((split.hostname or "", split.port or 80), timeout=30) as sock:
        with contextlib.suppress(OSError):
            sock.sendall(request + b"\r\n")
        reply = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    return head, body


def test_a_body_is_read_only_for_a_caller_allowed_to_send_it(http: HttpSearch) -> None:
    """Authentication comes before the body: without a token, or with a role the route does
    not allow, the body is neither read nor parsed (a big one would hold the loop)."""
    json_type = {"Content-Type": "application/json"}
    url = f"{http.url}{API}/search"
    _problem(requests.post(url, data=b"{not json", headers=json_type), 401)
    _problem(requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}), 401)
    ids = json.dumps({"text": "x", "filter": {"ids": ["n"] * 200_000}})
    _problem(requests.post(url, data=ids, headers=json_type), 401)
    reader = {**http.headers(["reader"]), **json_type}
    _problem(requests.post(f"{http.url}{API}/nodes", data=b"{not json", headers=reader), 403)


def test_unknown_routes_and_methods_are_problems(loaded: HttpSearch) -> None:
    headers = loaded.headers(["reader"])
    _problem(requests.get(f"{loaded.url}{API}/nowhere", headers=headers), 404)
    _problem(requests.put(f"{loaded.url}{API}/search", headers=headers), 405)
    # a path served by several routes allows the methods of all of them
    for path, allowed in (("/nearest", {"GET", "POST"}), ("/nodes/n1", {"GET", "DELETE"})):
        refused = requests.put(f"{loaded.url}{API}{path}", headers=headers)
        _problem(refused, 405)
        assert {m.strip() for m in refused.headers["allow"].split(",")} - {"HEAD"} == allowed


def test_admin_routes(loaded: HttpSearch) -> None:
    admin = loaded.headers(["admin"])
    report = requests.get(f"{loaded.url}{API}/admin/health", headers=admin).json()
    assert report["status"] == "COMPONENT_STATUS_OK", report
    spaces = requests.get(f"{loaded.url}{API}/admin/spaces", headers=admin).json()
    assert spaces["activeSpaceId"] == spaces["spaces"][0]["id"]
    heal = requests.post(f"{loaded.url}{API}/admin/heal", json={"dryRun": True}, headers=admin)
    assert heal.status_code == 200, heal.text
    assert int(heal.json().get("scanned", "0")) >= 4
    rollback = requests.post(f"{loaded.url}{API}/admin/rollback", headers=admin)
    _problem(rollback, 409)  # one space only: nothing to roll back to
    _problem(
        requests.post(f"{loaded.url}{API}/admin/reindex", json={"modelId": "nope"}, headers=admin),
        400,
        "modelId",
    )


def test_cors_only_for_configured_origins(loaded: HttpSearch) -> None:
    preflight = {
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    allowed = requests.options(f"{loaded.url}{API}/vector-search", headers=preflight)
    assert allowed.headers.get("access-control-allow-origin") == "https://app.example.com"
    evil = {**preflight, "Origin": "https://evil.example.com"}
    refused = requests.options(f"{loaded.url}{API}/vector-search", headers=evil)
    assert "access-control-allow-origin" not in refused.headers
    _problem(refused, 400)  # a problem document, as every other refusal
    assert "origin" in refused.json()["detail"]
    # A page of the allowed origin can read why it was refused and when to retry.
    unauthenticated = requests.get(
        f"{loaded.url}{API}/vector-search?q=x", headers={"Origin": "https://app.example.com"}
    )
    assert unauthenticated.status_code == 401
    exposed = unauthenticated.headers["access-control-expose-headers"].lower()
    assert {"www-authenticate", "retry-after"} <= {h.strip() for h in exposed.split(",")}


def test_metrics_per_route_template(loaded: HttpSearch) -> None:
    headers = loaded.headers(["reader"])
    requests.get(f"{loaded.url}{API}/nodes/refund", headers=headers)
    text = requests.get(f"{loaded.metrics}/metrics").text
    assert (
        'semantic_http_request_seconds_count{method="GET",route="/api/semantic/nodes/{node_id:path}"}'
        in text
    )
    assert "/api/semantic/nodes/refund" not in text  # never the raw path


def test_json_is_the_grpc_json_mapping(loaded: HttpSearch) -> None:
    response = requests.get(f"{loaded.url}{API}/nodes/refund", headers=loaded.headers(["reader"]))
    node = json_format.ParseDict(response.json(), pb.SearchHit().node)
    assert (node.id, node.content_type) == ("refund", "page")
    assert "contentType" in response.json()
    assert "content_type" not in response.json()


def test_guardian_rules_are_written_checked_read_and_removed(loaded: HttpSearch) -> None:
    writer, reader = loaded.headers(["writer"]), loaded.headers(["reader"])
    rule = {
        "id": "no-eval",
        "pattern": r"\beval\(",
        "kind": "RULE_KIND_REGEX",
        "severity": "RULE_SEVERITY_ERROR",
        "action": "require review",
        "scope": {"metadata": [{"key": "file_type", "anyOf": ["py", "pyi"]}]},
    }
    rules = f"{loaded.url}{API}/rules"
    body = {"nodeId": "tls", "rules": [rule]}
    _problem(requests.post(rules, json=body, headers=reader), 403)
    written = requests.post(rules, json=body, headers=writer)
    assert written.status_code == 200, written.text
    assert written.json() == {"created": 1}
    check = {"text": "x = 1\nreturn eval(x)", "scope": {"metadata": {"file_type": "py"}}}
    found = requests.post(f"{loaded.url}{API}/check", json=check, headers=reader).json()
    violations = found["violations"]
    assert [(v["ruleId"], v["nodeId"], v["line"], v["column"]) for v in violations] == [
        ("no-eval", "tls", 2, 8)
    ]
    assert violations[0]["severity"] == "RULE_SEVERITY_ERROR"
    node = requests.get(
        f"{loaded.url}{API}/nodes/tls", params={"include_rules": "true"}, headers=reader
    ).json()
    assert [r["id"] for r in node["rules"]["items"]] == ["no-eval"]
    bad = {"nodeId": "tls", "rules": [{"id": "x", "pattern": "(", "kind": "RULE_KIND_REGEX"}]}
    _problem(requests.post(rules, json=bad, headers=writer), 400, "rules[0].pattern")
    removal = {"nodeId": "tls", "ruleIds": ["no-eval"]}
    removed = requests.post(f"{rules}/remove", json=removal, headers=writer)
    assert removed.json() == {"removed": 1}
