"""The HTTP side's pure parts: the problem table, protobuf-JSON schemas, the committed OpenAPI
document, CSRF tokens and the console's alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
from google.protobuf import json_format

from semantic.common import errors
from semantic.core.domain import NodeRecord
from semantic.search.app import openapi_document as document
from semantic.search.http import problems
from semantic.search.http.console.views import Trend, alerts, lab_rows, number
from semantic.search.http.openapi import render
from semantic.search.http.security import HttpAuth, check_csrf, csrf_token
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.wire import protojson
from semantic.wire.jsonschema import SchemaSet

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.InvalidArgument("k", "bad"), 400, "INVALID_ARGUMENT"),
        (errors.Unauthenticated("no token"), 401, "UNAUTHENTICATED"),
        (errors.PermissionDenied("no"), 403, "PERMISSION_DENIED"),
        (errors.NotFound("node", "x"), 404, "NOT_FOUND"),
        (errors.AlreadyExists("node", "x"), 409, "ALREADY_EXISTS"),
        (errors.FailedPrecondition("no previous space"), 409, "FAILED_PRECONDITION"),
        (errors.Overloaded("queue"), 429, "RESOURCE_EXHAUSTED"),
        (errors.DependencyUnavailable("postgresql", "down"), 503, "UNAVAILABLE"),
        (TimeoutError(), 504, "DEADLINE_EXCEEDED"),
        (KeyError("bug"), 500, "INTERNAL"),
    ],
)
def test_one_table_maps_domain_errors_to_statuses(
    error: BaseException, status: int, code: str
) -> None:
    problem = problems.problem_for(error, "/x")
    assert problem.kind.status == status
    assert problem.body()["code"] == code
    assert problem.body()["type"] == "urn:semantic:problem:" + code.lower().replace("_", "-")
    if status in (429, 503):
        assert problem.headers() == {"Retry-After": "1"}
    if status == 500:
        assert "bug" not in problem.detail  # no internals leak
        assert problem.body()["ref"] in problem.detail


def test_problems_name_the_parameter_the_client_sent() -> None:
    renames = {"filter.content_types": "type", "top_k": "k"}
    problem = problems.problem_for(
        errors.InvalidArgument("filter.content_types[2]", "bad"), "/", renames
    )
    assert problem.body()["field"] == "type[2]"
    assert problem.detail == "type[2]: bad"
    untouched = problems.problem_for(errors.InvalidArgument("top_kx", "bad"), "/", renames)
    assert untouched.body()["field"] == "top_kx"


def test_message_schemas_accept_what_the_json_mapping_writes() -> None:
    schemas = SchemaSet()
    ref = schemas.ref(pb.SearchResponse.DESCRIPTOR)
    document_ = {"$ref": ref["$ref"], "components": {"schemas": schemas.components}}
    validator = jsonschema_rs.validator_for(
        {**document_, "$ref": "#/components/schemas/SearchResponse"}
    )
    response = pb.SearchResponse(space_id="1", mode=pb.SEARCH_MODE_HYBRID, query_tokens=3)
    hit = response.hits.add(score=0.5)
    hit.node.id = "a"
    hit.node.version = 2**62
    hit.node.metadata.update({"price": 3.5, "nested": {"list": [1, "x", None]}})
    hit.node.created_at.FromSeconds(1_700_000_000)
    hit.explanation.dense_rank = 1
    as_json = protojson.to_dict(response)
    assert as_json["hits"][0]["node"]["version"] == str(2**62)  # 64-bit as a string
    validator.validate(as_json)
    with pytest.raises(jsonschema_rs.ValidationError):
        validator.validate({**as_json, "unknownField": 1})


def test_requests_parse_json_names_proto_names_and_refuse_unknown_fields() -> None:
    message = protojson.parse(b'{"topK": 3, "include_body": true}', pb.SearchRequest())
    assert (message.top_k, message.include_body) == (3, True)
    with pytest.raises(errors.InvalidArgument) as caught:
        protojson.parse(b'{"txet": "x"}', pb.SearchRequest())
    assert caught.value.field == "txet"  # the field as sent
    assert "txet" in caught.value.problem
    with pytest.raises(errors.InvalidArgument):
        protojson.parse(b"\xff", pb.SearchRequest())
    with pytest.raises(errors.InvalidArgument):
        protojson.parse(b'{"topK": -1}', pb.SearchRequest())
    with pytest.raises(errors.InvalidArgument) as caught:  # which value would count?
        protojson.parse(b'{"filter": {"tags": ["a"], "tags": ["b"]}}', pb.SearchRequest())
    assert "'tags' is given twice" in caught.value.problem
    huge = b"9" * 400  # valid JSON; no double holds it (the parser raised OverflowError)
    for body, field in (
        (b'{"text": "a", "minScore": %s}' % huge, "minScore"),
        (b'{"text": "a", "hybrid": {"rrfK": %s}}' % huge, "hybrid.rrfK"),
        (b'{"text": "a", "topK": %s}' % huge, "topK"),
    ):
        with pytest.raises(errors.InvalidArgument) as caught:
            protojson.parse(body, pb.SearchRequest())
        assert caught.value.field == field, caught.value
    for body, request, field in (
        (b'{"events": [{"eventId": "e", "weight": %s}]}' % huge, pb.TrackRequest(), "events[0]"),
        (
            b'{"nodes": [{"id": "a"}, {"id": "b", "version": %s}]}' % huge,
            pb.UpsertRequest(),
            "nodes[1]",
        ),
    ):
        with pytest.raises(errors.InvalidArgument) as caught:  # which item, named
            protojson.parse(body, request)
        assert caught.value.field in (f"{field}.weight", f"{field}.version"), caught.value
    wide = protojson.parse(b'{"text": "a", "minScore": %s}' % (b"9" * 50), pb.SearchRequest())
    assert wide.min_score == pytest.approx(1e50)  # a double it fits stays a number


@pytest.mark.parametrize(
    ("body", "message", "field", "problem"),
    [
        (b"[]", pb.SearchRequest(), "body", "must be a JSON object"),
        (b'{"text": "a", "filter": []}', pb.SearchRequest(), "filter", "must be a JSON object"),
        (b'{"nodes": [[]]}', pb.UpsertRequest(), "nodes[0]", "must be a JSON object"),
        (b'{"top_k": 3, "topK": 4}', pb.SearchRequest(), "topK", "given as 'top_k' and"),
        # Integers as strings: ASCII decimal digits only (int() takes "٣" and "1_2").
        (b'{"text": "a", "topK": "\xd9\xa5"}', pb.SearchRequest(), "topK", "not a decimal"),
        (b'{"text": "a", "top_k": "1_2"}', pb.SearchRequest(), "topK", "not a decimal"),
        (
            b'{"nodes": [{"id": "a", "contentType": "p", "version": "+3"}]}',
            pb.UpsertRequest(),
            "nodes[0].version",
            "not a decimal integer",
        ),
        (
            b'{"nodes": [{"id": "a", "content_type": "p", "contentType": "q"}]}',
            pb.UpsertRequest(),
            "nodes[0].contentType",
            "given as",
        ),
    ],
)
def test_what_the_json_library_lets_through_is_refused_naming_the_field(
    body: bytes, message: Any, field: str, problem: str
) -> None:
    """A message that is not an object, or a field under both its names (which one
    counted depended on their order), is INVALID_ARGUMENT."""
    with pytest.raises(errors.InvalidArgument) as caught:
        protojson.parse(body, message)
    assert caught.value.field == field
    assert problem in caught.value.problem


def test_well_known_types_keep_their_own_json_forms() -> None:
    body = (
        b'{"nodes": [{"id": "a", "contentType": "p", "metadata": {"k": [1, {"x": null}]},'
        b' "createdAt": "2020-01-01T00:00:00Z", "texts": {"code": "x"}}]}'
    )
    (node,) = protojson.parse(body, pb.UpsertRequest()).nodes
    assert node.created_at.seconds == 1577836800
    assert protojson.parse(b'{"text": "a", "filter": null}', pb.SearchRequest()).text == "a"


def test_the_committed_openapi_document_is_what_the_code_generates() -> None:
    committed = (ROOT / "openapi.json").read_text(encoding="utf-8")
    assert committed == render(document()), "openapi.json is stale: run `make openapi`"
    parsed = json.loads(committed)
    assert parsed["openapi"] == "3.1.0"
    for path, operations in parsed["paths"].items():
        for method, operation in operations.items():
            assert "default" in operation["responses"], (path, method)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
            answer = operation["responses"]["200"].get("content", {}).get("application/json", {})
            examples = [p for p in operation.get("parameters", []) if "example" in p]
            assert "example" in body or examples or "example" in answer, (path, method)


def test_csrf_tokens_come_from_the_session_and_origins_must_match() -> None:
    token = csrf_token("session-a")
    assert token != csrf_token("session-b")
    check_csrf("session-a", {"x-csrf-token": token, "origin": "http://h:1"}, None, "h:1")
    check_csrf("session-a", {}, token, "h:1")  # form field, no Origin
    for headers, form in (
        ({}, None),
        ({"x-csrf-token": csrf_token("session-b")}, None),
        ({"x-csrf-token": token, "origin": "http://evil:1"}, None),
        ({"x-csrf-token": token, "origin": "null"}, None),
    ):
        with pytest.raises(errors.PermissionDenied):
            check_csrf("session-a", headers, form, "h:1")


def _report(**lag: int) -> pb.HealthReportResponse:
    report = pb.HealthReportResponse(
        components=[
            pb.ComponentHealth(name="postgresql", status=pb.COMPONENT_STATUS_OK),
            pb.ComponentHealth(
                name="embedder", status=pb.COMPONENT_STATUS_DOWN, detail="connection refused"
            ),
        ]
    )
    report.active_space.id = "1"
    if lag:
        report.lag.CopyFrom(pb.ConsumerLag(**lag))
    return report


def test_alerts_name_what_is_wrong_and_notice_growth() -> None:
    trend = Trend()
    stats = pb.StatsResponse(heal_backlog=pb.HealBacklog(missing=5))
    first = alerts(_report(pending=10, dead_letters=2), stats, trend)
    titles = [a.title for a in first]
    assert titles[0] == "embedder unreachable"
    assert "Dead letters" in titles
    assert "Active space incomplete" in titles
    grown = alerts(
        _report(pending=50, dead_letters=4),
        pb.StatsResponse(heal_backlog=pb.HealBacklog(missing=9)),
        trend,
    )
    titles = [a.title for a in grown]
    assert "Dead letters growing" in titles
    assert "Indexer backlog growing" in titles
    assert "Active space incomplete and falling behind" in titles
    assert [a.severity for a in grown] == sorted(
        (a.severity for a in grown), key=lambda s: s != "critical"
    )
    calm = alerts(
        pb.HealthReportResponse(active_space=pb.EmbeddingSpace(id="1")),
        pb.StatsResponse(),
        Trend(),
    )
    assert calm == []
    assert alerts(pb.HealthReportResponse(), None, Trend())[0].title == (
        "No active embedding space"
    )


def test_lab_rows_place_the_matched_chunk_in_its_text() -> None:
    body = "alpha beta gamma delta"
    response = pb.SearchResponse()
    hit = response.hits.add(score=0.9, node=cpb.Node(id="n", title="T", body=body))
    hit.chunk.CopyFrom(
        # the span is into the text the vector was made from: "T alpha beta gamma delta"
        pb.ChunkMatch(vector_name="content", chunk_index=1, span=cpb.TextSpan(start=8, end=18))
    )
    hit.explanation.dense_rank = 1
    hit.explanation.dense_score = 0.9
    hit.explanation.dense_normalized = 1.0
    hit.explanation.dense_part = 0.5
    hit.explanation.keyword_part = 0.0
    (row,) = lab_rows(response)
    assert (row.before, row.match, row.after) == ("T alpha ", "beta gamma", " delta")
    assert ("similarity", "0.9000") in row.parts
    assert ("dense normalised", "1.0000") in row.parts
    assert ("dense part", "0.5000") in row.parts
    assert ("keyword part", "0.0000") in row.parts
    json_format.MessageToDict(response)  # still a valid message


@pytest.mark.parametrize("name", ["content", "", "title", "code", "summary"])
def test_lab_rows_read_spans_in_the_text_the_vector_was_made_from(name: str) -> None:
    record = NodeRecord(
        tenant="",
        id="n",
        content_type="page",
        title=" Title ",
        body=" the body ",
        texts={"code": "x = 1"},
    )
    response = pb.SearchResponse()
    hit = response.hits.add(
        node=cpb.Node(id="n", title=record.title, body=record.body, texts=record.texts)
    )
    text = record.text_for(name)
    hit.chunk.CopyFrom(pb.ChunkMatch(vector_name=name, span=cpb.TextSpan(start=1, end=len(text))))
    (row,) = lab_rows(response)
    assert row.before + row.match + row.after == text
    assert row.match == text[1:]


def test_failed_consistency_checks_become_alerts() -> None:
    checked = {
        "ok": False,
        "checks": [
            {"name": "schema_current", "ok": False, "summary": "003_x.sql is not applied"},
            {"name": "no_orphan_vectors", "ok": False, "summary": "2 vector rows without node"},
            {"name": "nodes_have_vectors", "ok": True},
        ],
    }
    found = alerts(
        pb.HealthReportResponse(active_space=pb.EmbeddingSpace(id="1")),
        pb.StatsResponse(),
        Trend(),
        consistency=checked,
    )
    assert [(a.severity, a.title) for a in found] == [
        ("critical", "Schema not current"),
        ("warning", "Orphan vectors"),
    ]
    assert found[0].detail == "003_x.sql is not applied"


def test_console_numbers_show_a_nan_or_infinity_as_written() -> None:
    """Protobuf JSON writes non-finite doubles as strings; a page shows them, never fails."""
    assert number(0.123456) == "0.1235"
    assert number(3, 1) == "3.0"
    assert number("NaN") == "NaN"
    assert number("-Infinity", 2) == "-Infinity"


def test_without_credentials_only_local_hosts_and_same_origin_changes_pass() -> None:
    auth = HttpAuth(None, trusted_origins=["https://app.example.com"], allowed_hosts=["box"])
    check = auth._check_ambient
    for host in ("127.0.0.1:8080", "localhost", "dev.localhost:1", "[::1]:8080", "box:9", ""):
        check({}, "GET", host)
    for host in ("evil.example.com", "127.0.0.1.nip.io:8080", "boxes"):
        with pytest.raises(errors.PermissionDenied, match="SEMANTIC_HTTP_ALLOWED_HOSTS"):
            check({}, "GET", host)
    check({"origin": "http://127.0.0.1:8080"}, "POST", "127.0.0.1:8080")
    check({"origin": "https://app.example.com", "sec-fetch-site": "cross-site"}, "POST", "box")
    check({"sec-fetch-site": "none"}, "POST", "localhost")  # typed in the address bar
    for headers in (
        {"origin": "http://127.0.0.1:9999"},
        {"origin": "null"},
        {"sec-fetch-site": "same-site"},
    ):
        with pytest.raises(errors.PermissionDenied):
            check(headers, "DELETE", "127.0.0.1:8080")
