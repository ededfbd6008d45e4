"""`semantic bench knowledge`: the pattern-library reads against a plain Get, in one run.

A throw-away local stack (embedded PostgreSQL, the embedder, the search service) gets
``nodes`` nodes (client vectors, so nothing is embedded) with ``relations_per_node``
random typed relations each, and ``rules`` guardian rules spread over them (a third
literal, the rest RE2 expressions, scoped by file type). Then, in alternating rounds, one
sequential client calls:

- ``Get`` of one node by id (the baseline: one round trip, one indexed read);
- ``Related`` from a random node, depth 2, both directions, every type;
- ``Check`` of a ``lines``-line Python file against every rule in scope.

The report gives p50/p99/mean per call and each one's ratio to Get's p50 and p99.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from semantic.tools.bench.corpus import percentiles
from semantic.tools.devstack.stack import LocalStack
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

TYPES = ("prerequisite", "follows", "conflicts", "enhances")
WORDS = ("cache", "retry", "timeout", "session", "token", "queue", "index", "order", "user")


@dataclass(frozen=True)
class KnowledgeConfig:
    """What to load and how long to measure."""

    model_dir: Path
    nodes: int = 2_000
    relations_per_node: int = 5
    rules: int = 500
    lines: int = 2_000
    calls: int = 200
    rounds: int = 2
    seed: int = 11


def _rule(i: int, rng: random.Random) -> cpb.Rule:
    word = rng.choice(WORDS)
    if i % 3 == 0:
        pattern, kind = f"{word}_{i % 97}(", cpb.RULE_KIND_LITERAL
    else:
        pattern = rng.choice(
            (
                rf"\b{word}_{i % 97}\s*=\s*\d+",
                rf"(?i)todo:?\s+{word}\b",
                rf"requests\.(get|post)\([^,)]*{word}",
                rf"^\s*except\s+{word.title()}Error\b",
                rf"{word}\[[a-z]+_{i % 53}\]",
            )
        )
        kind = cpb.RULE_KIND_REGEX
    rule = cpb.Rule(
        id=f"r{i}", pattern=pattern, kind=kind, severity=cpb.RULE_SEVERITY_WARNING, action="look"
    )
    condition = rule.scope.metadata.add(key="file_type")
    condition.any_of.extend(["py"] if i % 5 else ["go"])
    return rule


def source_file(lines: int, rng: random.Random) -> str:
    """A synthetic Python file of ``lines`` lines (some of which break some rules)."""
    out = []
    for n in range(lines):
        word = rng.choice(WORDS)
        kind = n % 7
        if kind == 0:
            out.append(f"def {word}_{n}(arg):")
        elif kind == 1:
            out.append(f"    {word}_{n % 97} = {n}")
        elif kind == 2:
            out.append(f"    # TODO {word} later")
        elif kind == 3:
            out.append(f"    resp = requests.get(url_{word})")
        elif kind == 4:
            out.append(f"    value = {word}[key_{n % 53}]")
        elif kind == 5:
            out.append(f"    except {word.title()}Error:")
        else:
            out.append(f"    return {word}_{n % 97}(arg)")
    return "\n".join(out) + "\n"


async def _load(
    stub: search_pb2_grpc.SearchStub, config: KnowledgeConfig, dim: int, rng: random.Random
) -> None:
    vectors = np.random.default_rng(config.seed).normal(size=(config.nodes, dim))
    rules_of: dict[int, list[cpb.Rule]] = {}
    for i in range(config.rules):
        rules_of.setdefault(rng.randrange(config.nodes), []).append(_rule(i, rng))
    for start in range(0, config.nodes, 250):
        nodes = []
        for i in range(start, min(start + 250, config.nodes)):
            node = cpb.Node(id=f"n{i}", content_type="pattern", title=f"pattern {i}", version=1)
            vector = (vectors[i] / np.linalg.norm(vectors[i])).astype("<f4")
            node.vectors.add(name="content", vector=cpb.Vector(packed=vector.tobytes()))
            targets = rng.sample(range(config.nodes), config.relations_per_node + 1)
            node.relations.CopyFrom(
                cpb.Relations(
                    items=[
                        cpb.Relation(node_id=f"n{t}", type=rng.choice(TYPES), strength=rng.random())
                        for t in targets
                        if t != i
                    ][: config.relations_per_node]
                )
            )
            if i in rules_of:
                node.rules.CopyFrom(cpb.Rules(items=rules_of[i][:50]))
            nodes.append(node)
        await stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=600)


async def _measure(
    address: str, config: KnowledgeConfig, progress: Callable[[str], None]
) -> dict[str, Any]:
    rng = random.Random(config.seed)
    text = source_file(config.lines, rng)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        info = await stub.Stats(pb.StatsRequest())
        dim = info.active_space.dim
        progress(f"loading {config.nodes} nodes, {config.rules} rules")
        await _load(stub, config, dim, rng)
        check = pb.CheckRequest(text=text, max_violations=1000)
        check.scope.metadata.update({"file_type": "py"})
        first = await stub.Check(check, timeout=60)  # compiles the rules once
        samples: dict[str, list[float]] = {"get": [], "related_depth2": [], "check": []}
        sizes = {"related_nodes": 0, "violations": len(first.violations),
                 "rules_in_scope": first.rules_in_scope}  # fmt: skip
        for r in range(config.rounds):
            progress(f"round {r + 1}")
            for _ in range(config.calls):
                start = f"n{rng.randrange(config.nodes)}"
                began = time.perf_counter()
                await stub.Get(pb.GetRequest(ids=[start]), timeout=30)
                samples["get"].append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                related = await stub.Related(
                    pb.RelatedRequest(
                        id=start, depth=2, direction=cpb.RELATION_DIRECTION_BOTH, limit=100
                    ),
                    timeout=30,
                )
                samples["related_depth2"].append((time.perf_counter() - began) * 1000)
                sizes["related_nodes"] = max(sizes["related_nodes"], len(related.nodes))
                began = time.perf_counter()
                await stub.Check(check, timeout=60)
                samples["check"].append((time.perf_counter() - began) * 1000)
    out: dict[str, Any] = {name: percentiles(values) for name, values in samples.items()}
    base = out["get"]
    for name in ("related_depth2", "check"):
        out[f"{name}_vs_get_p50"] = round(out[name]["p50_ms"] / base["p50_ms"], 2)
        out[f"{name}_vs_get_p99"] = round(out[name]["p99_ms"] / base["p99_ms"], 2)
    out["sizes"] = sizes
    return out


def run_knowledge_bench(
    config: KnowledgeConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Start the stack, load, measure; the JSON-ready report."""
    with LocalStack([config.model_dir]) as stack:
        measured = asyncio.run(_measure(stack.search_address, config, progress))
    return {
        "benchmark": "knowledge",
        "setup": {
            "nodes": config.nodes,
            "relations_per_node": config.relations_per_node,
            "rules": config.rules,
            "file_lines": config.lines,
            "calls_per_round": config.calls,
            "rounds": config.rounds,
            "client": "one, sequential gRPC calls, alternating Get / Related / Check",
        },
        **measured,
    }
