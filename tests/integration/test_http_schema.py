"""schemathesis over every operation of the committed OpenAPI document, against a real search
service with data in it: no 5xx, every status documented, every body and header as the
document says. Positive and negative cases; a bounded budget per operation (the ``ci``
Hypothesis profile; ``make fuzz`` raises it)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from http_kit import HttpSearch, start_http_search
from hypothesis import HealthCheck, settings
from schemathesis import checks

from semantic.tools.devstack.nats import EmbeddedNats
from semantic.tools.devstack.postgres import EmbeddedPostgres

pytestmark = pytest.mark.fuzz
ROOT = Path(__file__).resolve().parents[2]
schema = schemathesis.openapi.from_path(ROOT / "openapi.json")
EXAMPLES = 400 if os.environ.get("SEMANTIC_FUZZ_PROFILE") == "fuzz" else 25
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


@pytest.fixture(scope="module")
def http(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
    nats_server: EmbeddedNats,
) -> Iterator[HttpSearch]:
    for service in start_http_search(
        pg_server, embedder_address, fp32_model_dir, service_starter, NATS_URL=nats_server.url
    ):
        nodes = [
            {
                "id": f"n{i}",
                "slug": f"slug-{i}",
                "contentType": ("page", "article", "quiz")[i % 3],
                "title": f"Node {i}",
                "body": f"Body {i} about refunds, pasta and certificates.",
                "tags": ["a", "b"][: i % 3],
                "version": "1",
            }
            for i in range(12)
        ]
        response = requests.post(
            f"{service.url}/api/semantic/nodes",
            json={"nodes": nodes},
            headers=service.headers(["admin"]),
        )
        assert response.status_code == 200, response.text
        yield service


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_and_never_fails_on_the_server(
    case: schemathesis.Case, http: HttpSearch
) -> None:
    if case.operation.path == "/api/semantic/admin/reindex":
        case.body = {"modelId": "not-served"}  # a real reindex would start a long build
    case.call_and_validate(base_url=http.url, headers=http.headers(["admin"]), checks=CHECKS)
