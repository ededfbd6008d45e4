"""The fix-pattern library, end to end, against a running search service.

    python examples/fix-patterns/run.py [--address 127.0.0.1:50052] [--token JWT]

1. loads the 50 patterns of ``patterns.py`` with three named vectors (``content``: title
   and solution; ``code``: the code before and after; ``problem``: the problem), their
   layers, workflows and file types as tags and metadata, their relations and guardian
   rules;
2. finds the patterns for a file audit record: a weighted multi-vector search (problem 0.5,
   code 0.3, content 0.2) filtered on the file's type and workflows, ranked with the
   patterns' confidence and a boost for the file's architecture layer;
3. checks the file's contents against the guardian rules in its scope;
4. records feedback (one pattern keeps working, another keeps failing) and shows how
   confidence and the ranking change;
5. follows the relations of the best pattern (prerequisites and what follows, 2 steps).

It prints each step and returns the same as a dict (the test of the example asserts it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from patterns import PATTERNS

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

CONTENT_TYPE = "fix_pattern"
AUDIT = {
    "path": "services/orders/api/handlers.py",
    "file_type": "py",
    "layer": 2,
    "workflows": ["api", "resilience"],
    "finding": "Calls to the payment service hang and the handler never returns; "
    "retried orders are sometimes created twice.",
    "code": """import requests, time

PASSWORD = "s3cret-in-code"

async def create_order(req):
    time.sleep(1)
    resp = requests.post(PAYMENT_URL)
    return resp.json()
""",
}
TARGETS = (("problem", 0.5), ("code", 0.3), ("content", 0.2))
_SEVERITIES = {"INFO": 1, "WARNING": 2, "ERROR": 3, "CRITICAL": 4}


def pattern_node(p: dict[str, Any]) -> cpb.Node:
    """A pattern as a node: three texts, tags and metadata for the filters, relations."""
    node = cpb.Node(
        id=p["id"],
        content_type=CONTENT_TYPE,
        title=p["title"],
        body=p["solution"],
        tags=[
            *(f"layer-{n}" for n in p["layers"]),
            *(f"workflow-{w}" for w in p["workflows"]),
            *(f"file-{t}" for t in p["file_types"]),
        ],
        version=1,
    )
    node.texts["problem"] = p["problem"]
    node.texts["code"] = f"{p['before']}\n{p['after']}"
    node.metadata.update(
        {"layers": p["layers"], "workflows": p["workflows"], "file_types": p["file_types"]}
    )
    node.relations.CopyFrom(
        cpb.Relations(
            items=[
                cpb.Relation(node_id=other, type=kind, strength=strength)
                for kind, other, strength in p["relations"]
            ]
        )
    )
    add_rule(node, p)
    return node


def add_rule(node: cpb.Node, p: dict[str, Any]) -> None:
    """The pattern's guardian rule on the node (applying to its file types), if it has one."""
    if p["rule"] is None:
        return
    pattern, severity, action = p["rule"]
    rule = cpb.Rule(
        id=f"{p['id']}-rule",
        pattern=pattern,
        kind=cpb.RULE_KIND_REGEX,
        severity=cpb.RuleSeverity.Value(f"RULE_SEVERITY_{severity}"),
        action=action,
        message=p["problem"],
    )
    condition = rule.scope.metadata.add(key="file_type")
    condition.any_of.extend(p["file_types"])
    node.rules.CopyFrom(cpb.Rules(items=[rule]))


def audit_search(audit: dict[str, Any], *, top_k: int = 5) -> pb.SearchRequest:
    """The patterns for a file audit record (step 2)."""
    flt = cpb.Filter(
        content_types=[CONTENT_TYPE],
        tags_all=[f"file-{audit['file_type']}"],
        tags_any=[f"workflow-{w}" for w in audit["workflows"]],
    )
    return pb.SearchRequest(
        text=f"{audit['finding']}\n{audit['code']}",
        mode=pb.SEARCH_MODE_DENSE,
        targets=[pb.VectorTarget(name=n, weight=w) for n, w in TARGETS],
        filter=flt,
        top_k=top_k,
        include_feedback=True,
        modifiers=[
            pb.ScoreModifier(
                feedback=pb.FEEDBACK_SIGNAL_CONFIDENCE, weight=0.5, center=0.21, name="confidence"
            ),
            _layer_boost(audit["layer"]),
        ],
    )


def _layer_boost(layer: int) -> pb.ScoreModifier:
    boost = pb.ScoreModifier(weight=0.1, name=f"layer {layer}")
    boost.metadata_contains.key = "layers"
    boost.metadata_contains.value.number_value = layer
    return boost


def _hits(reply: pb.SearchResponse) -> list[dict[str, Any]]:
    return [
        {
            "id": h.node.id,
            "score": round(h.score, 4),
            "base": round(h.explanation.base_score, 4),
            "confidence": round(h.node.feedback.confidence, 3),
            "modifiers": {m.name: round(m.effect, 4) for m in h.explanation.modifiers},
        }
        for h in reply.hits
    ]


async def run(channel: grpc.aio.Channel, metadata: Any = None, out: Any = print) -> dict[str, Any]:
    """Every step; returns what it printed, as a dict."""
    stub = search_pb2_grpc.SearchStub(channel)
    report: dict[str, Any] = {}

    # 1. Load.
    nodes = [pattern_node(p) for p in PATTERNS]
    loaded = await stub.Upsert(pb.UpsertRequest(nodes=nodes), metadata=metadata, timeout=600)
    report["loaded"] = len(loaded.results)
    out(f"1. loaded {report['loaded']} patterns (content, code and problem vectors)")

    # 2. Find the patterns for the audit record.
    before = await stub.Search(audit_search(AUDIT), metadata=metadata)
    report["found"] = _hits(before)
    out(f"2. patterns for {AUDIT['path']}:")
    for hit in report["found"]:
        out(f"   {hit['id']:24} {hit['score']:.4f} (base {hit['base']:.4f}) {hit['modifiers']}")

    # 3. Check the file against the guardian rules in its scope.
    report["violations"] = await check_file(stub, AUDIT, metadata)
    out(f"3. {len(report['violations'])} guardian violations in {AUDIT['path']}:")
    for v in report["violations"]:
        out(
            f"   line {v['line']}:{v['column']} {v['severity']} {v['rule']}"
            f" ({v['node']}): {v['action']}"
        )

    # 4. Feedback: the second pattern keeps working, the first keeps failing.
    first, second = report["found"][0]["id"], report["found"][1]["id"]
    items = [_feedback(second, True, 20) for _ in range(12)]
    items += [_feedback(first, False, 0) for _ in range(12)]
    recorded = await stub.Feedback(pb.FeedbackRequest(items=items), metadata=metadata)
    report["feedback"] = {
        node_id: {"applied": f.applied, "success_rate": round(f.success_rate, 3),
                  "confidence": round(f.confidence, 3)}
        for node_id, f in recorded.feedback.items()
    }  # fmt: skip
    after = await stub.Search(audit_search(AUDIT), metadata=metadata)
    report["found_after_feedback"] = _hits(after)
    out(f"4. feedback recorded: {report['feedback']}")
    out(f"   ranking before: {[h['id'] for h in report['found']]}")
    out(f"   ranking after:  {[h['id'] for h in report['found_after_feedback']]}")

    # 5. Follow the relations of the best pattern now.
    best = report["found_after_feedback"][0]["id"]
    related = await stub.Related(
        pb.RelatedRequest(
            id=best,
            types=["prerequisite", "follows", "enhances"],
            direction=cpb.RELATION_DIRECTION_BOTH,
            depth=2,
        ),
        metadata=metadata,
    )
    report["related"] = [
        {"id": r.node.id, "depth": r.depth,
         "path": [_edge(s) for s in r.path]}
        for r in related.nodes
    ]  # fmt: skip
    out(f"5. related to {best}:")
    for r in report["related"]:
        out(f"   {r['id']} (depth {r['depth']}): {' / '.join(r['path'])}")
    return report


async def check_file(
    stub: search_pb2_grpc.SearchStub, audit: dict[str, Any], metadata: Any
) -> list[dict[str, Any]]:
    """The guardian violations of the audited file (step 3), most severe first."""
    request = pb.CheckRequest(text=audit["code"])
    request.scope.tags.extend(audit["workflows"])
    request.scope.metadata.update(
        {"file_type": audit["file_type"], "layer": audit["layer"], "path": audit["path"]}
    )
    reply = await stub.Check(request, metadata=metadata)
    found = [
        {
            "rule": v.rule_id,
            "node": v.node_id,
            "line": v.line,
            "column": v.column,
            "severity": cpb.RuleSeverity.Name(v.severity).removeprefix("RULE_SEVERITY_"),
            "action": v.action,
            "match": v.match,
        }
        for v in reply.violations
    ]
    return sorted(found, key=lambda v: (-_SEVERITIES[v["severity"]], v["line"], v["column"]))


def _edge(step: pb.PathStep) -> str:
    """A step as the relation it went along, written source -type-> target."""
    if step.direction == cpb.RELATION_DIRECTION_INCOMING:
        return f"{step.to_id} -{step.type}-> {step.from_id}"
    return f"{step.from_id} -{step.type}-> {step.to_id}"


def _feedback(node_id: str, success: bool, minutes: float) -> epb.FeedbackItem:
    outcome = epb.FEEDBACK_OUTCOME_SUCCESS if success else epb.FEEDBACK_OUTCOME_FAILURE
    return epb.FeedbackItem(
        feedback_id=str(uuid.uuid4()), node_id=node_id, outcome=outcome, minutes_saved=minutes
    )


def main() -> int:
    """Run the example against ``--address``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50052", help="search service")
    parser.add_argument("--token", default="", help="a JWT (role writer) when auth is on")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    metadata = (("authorization", f"Bearer {args.token}"),) if args.token else None

    async def go() -> dict[str, Any]:
        async with grpc.aio.insecure_channel(args.address) as channel:
            return await run(channel, metadata, out=(lambda _: None) if args.json else print)

    report = asyncio.run(go())
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
