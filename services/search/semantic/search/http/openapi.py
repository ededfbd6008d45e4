"""The OpenAPI 3.1 document of the HTTP API, generated from the routes and the protos.

FastAPI describes the paths and the query parameters from the route functions; this module
adds what it cannot know: the request and response bodies are protobuf messages written in
the proto3 JSON mapping (``semantic.wire.jsonschema``), every error is a problem document,
and the token is a bearer JWT (or the console's session cookie). The document is committed
(``openapi.json`` at the repository root, ``make openapi`` rewrites it) and a test fails
when it differs from what the code generates.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from semantic.search.http.api import REQUESTS, RESPONSES
from semantic.search.http.problems import PROBLEM_SCHEMA
from semantic.search.http.security import SESSION_COOKIE
from semantic.wire.jsonschema import SchemaSet

DESCRIPTION = """\
The HTTP/JSON face of Semantic's search service: the same core, validation and
authentication as its gRPC API (`semantic.v1.Search` and `semantic.v1.Admin`).
Bodies are the gRPC messages in the proto3 JSON mapping (lowerCamelCase names,
64-bit integers as strings, enums by name). Errors are RFC 9457 problem documents.
"""
ERRORS: dict[str, str] = {
    "400": "Invalid request: the detail names the field (`field`).",
    "401": "No token, or a token that does not verify.",
    "403": "The token lacks the role, or is limited to another tenant.",
    "404": "Not found.",
    "409": "Conflict with the current state.",
    "413": "Request body too large.",
    "415": "The body is not application/json.",
    "429": "Overloaded; retry after `Retry-After` seconds.",
    "503": "A dependency (PostgreSQL, the embedder) is unavailable; retry after `Retry-After`.",
    "504": "Deadline exceeded.",
}
OPEN_PATHS = {"/healthz", "/readyz"}
GET_EXAMPLES: dict[str, dict[str, Any]] = {
    "VectorSearch": {"q": "refund", "mode": "hybrid", "k": 5},
    "Nearest": {"slug": "refund-policy", "k": 5},
    "Recommend": {"userId": "user-42", "k": 5, "exclude_seen": True},
    "GetNode": {"node_id": "page-1"},
    "DeleteNode": {"node_id": "page-1"},
    "GetNodes": {"id": ["docs/intro", ".."]},
    "DeleteNodes": {"id": ["docs/intro"], "version": 3},
    "Stats": {"tenant": "acme"},
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The document of ``app``'s routes with protobuf-JSON bodies and problem errors."""
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version="3.1.0",
        description=DESCRIPTION,
        routes=app.routes,
    )
    schemas = SchemaSet()
    problem_ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            key = f"{path}:{method}"
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            if key in RESPONSES:
                responses["200"] = {
                    "description": RESPONSES[key].DESCRIPTOR.name,
                    "content": {
                        "application/json": {"schema": schemas.ref(RESPONSES[key].DESCRIPTOR)}
                    },
                }
            if key in REQUESTS:
                message, example = REQUESTS[key]
                operation["requestBody"] = {
                    "required": False,
                    "description": f"{message.DESCRIPTOR.name} as protobuf-JSON",
                    "content": {
                        "application/json": {
                            "schema": schemas.ref(message.DESCRIPTOR),
                            "example": example,
                        }
                    },
                }
            _parameter_examples(operation)
            answer = RESPONSE_EXAMPLES.get(operation.get("operationId", ""))
            if answer is not None:
                content = responses.setdefault("200", {}).setdefault("content", {})
                content.setdefault("application/json", {})["example"] = answer
            problem = {"content": {"application/problem+json": {"schema": problem_ref}}}
            for status, text in ERRORS.items():
                if path in OPEN_PATHS and status != "503":
                    continue
                responses[status] = {"description": text, **problem}
            responses["default"] = {"description": "Any other error.", **problem}
            if path in OPEN_PATHS:
                operation["security"] = []
    components = doc.setdefault("components", {})
    found = components.setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        found.pop(name, None)
    found.update(dict(sorted(schemas.components.items())))
    found["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
    }
    doc["security"] = [{"bearer": []}, {"session": []}]
    return doc


RESPONSE_EXAMPLES: dict[str, Any] = {
    "HealthReport": {
        "status": "COMPONENT_STATUS_OK",
        "components": [
            {"name": "postgresql", "status": "COMPONENT_STATUS_OK", "detail": "pgvector 0.8.1"},
            {"name": "embedder", "status": "COMPONENT_STATUS_OK", "detail": "all-MiniLM-L6-v2"},
        ],
        "checkedAt": "2026-12-01T10:00:00Z",
    },
    "ListSpaces": {
        "spaces": [
            {
                "id": "1",
                "modelId": "sentence-transformers/all-MiniLM-L6-v2",
                "dim": 384,
                "state": "SPACE_STATE_ACTIVE",
                "vectors": "3871",
            }
        ],
        "activeSpaceId": "1",
    },
    "ListSnapshots": {
        "location": "s3://backups/semantic",
        "snapshots": [
            {
                "name": "scheduled-20261201T023000Z",
                "url": "s3://backups/semantic/scheduled-20261201T023000Z.tar",
                "bytes": "48203776",
                "createdAt": "2026-12-01T02:30:00Z",
                "scheduled": True,
            }
        ],
    },
    "Live": {"status": "live"},
    "Ready": {"status": "ready"},
}
"""Response examples of the operations that take no parameters and no body."""


def _parameter_examples(operation: dict[str, Any]) -> None:
    examples = GET_EXAMPLES.get(operation.get("operationId", ""), {})
    for parameter in operation.get("parameters", []):
        if parameter.get("name") in examples:
            parameter["example"] = examples[parameter["name"]]


def render(doc: dict[str, Any]) -> str:
    """The committed form: sorted keys, two-space indent, a final newline."""
    return json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


COMMITTED = Path("openapi.json")
"""Where the document is committed, relative to the repository root."""
