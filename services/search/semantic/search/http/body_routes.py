"""The POST routes of ``/api/semantic/*``: each takes a whole request message of Search or
Admin as protobuf-JSON, with the example the OpenAPI document shows."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.message import Message

from semantic.v1 import search_pb2 as pb


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
