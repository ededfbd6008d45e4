"""Score modifiers measured on a BEIR dataset (`semantic eval --modifiers`): does a modifier
on a signal that follows relevance raise nDCG@10, and how much does one on a signal that
does not lower it?

Each document gets two synthetic success rates in its metadata, made the way the feedback
counters make theirs (the Beta(1, 1) posterior mean of simulated reports, 2 to 10 per
document): ``correlated``, where a document succeeds with a probability that grows with
the number of the split's queries it is relevant to (0.25 for none, 0.9 for 8 or more:
on NFCorpus 86% of the documents are relevant to at least one test query, so "relevant
to any" alone would hardly tell documents apart); and ``uncorrelated``, where every
document succeeds with 0.6. Then every query is asked without modifiers and with
``x (1 + weight (rate - 0.5))`` on each signal, for each weight, in the same run. The
metadata is written with Upsert (only metadata changes: nothing is re-embedded).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from semantic.tools.evaluation.beir import BeirDataset
from semantic.tools.evaluation.metrics import evaluate
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

SIGNALS = ("correlated", "uncorrelated")
DEFAULT_WEIGHTS = (0.05, 0.1, 0.2, 0.5)
SEED = 7


def synthetic_rates(data: BeirDataset, seed: int = SEED) -> dict[str, dict[str, float]]:
    """Per document, its two rates (module doc)."""
    relevant: Counter[str] = Counter(
        doc for judged in data.qrels.values() for doc, grade in judged.items() if grade > 0
    )
    rng = random.Random(seed)
    out: dict[str, dict[str, float]] = {}
    for doc_id in sorted(data.corpus):
        reports = rng.randint(2, 10)
        p_correlated = 0.25 + 0.65 * min(1.0, relevant[doc_id] / 8)
        wins_c = sum(rng.random() < p_correlated for _ in range(reports))
        wins_u = sum(rng.random() < 0.6 for _ in range(reports))
        out[doc_id] = {
            "correlated": (wins_c + 1) / (reports + 2),
            "uncorrelated": (wins_u + 1) / (reports + 2),
        }
    return out


async def write_rates(
    stub: search_pb2_grpc.SearchStub, data: BeirDataset, rates: dict[str, dict[str, float]]
) -> None:
    """Store the rates as ``metadata.synthetic`` (the documents' text unchanged)."""
    docs = list(data.corpus.values())
    for start in range(0, len(docs), 200):
        nodes = []
        for d in docs[start : start + 200]:
            node = cpb.Node(id=d.id, content_type="document", title=d.title, body=d.text)
            node.metadata.update({"synthetic": rates[d.id]})
            nodes.append(node)
        await stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=600)


async def _run(
    stub: search_pb2_grpc.SearchStub,
    data: BeirDataset,
    mode: pb.SearchMode.ValueType,
    modifiers: Sequence[pb.ScoreModifier],
    concurrency: int,
) -> dict[str, list[str]]:
    run: dict[str, list[str]] = {}
    pending = list(data.queries.items())

    async def worker() -> None:
        while pending:
            query_id, text = pending.pop()
            request = pb.SearchRequest(text=text, mode=mode, top_k=100, modifiers=modifiers)
            reply = await stub.Search(request, timeout=120)
            run[query_id] = [hit.node.id for hit in reply.hits]

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return run


async def modifier_effect(
    stub: search_pb2_grpc.SearchStub,
    data: BeirDataset,
    modes: Mapping[str, pb.SearchMode.ValueType],
    *,
    weights: Sequence[float] = DEFAULT_WEIGHTS,
    concurrency: int = 2,
) -> dict[str, Any]:
    """nDCG@10 per mode: without modifiers, and per signal and weight with the difference."""
    await write_rates(stub, data, synthetic_rates(data))
    report: dict[str, Any] = {"weights": list(weights), "modes": {}}
    for name, mode in modes.items():
        base = evaluate(await _run(stub, data, mode, (), concurrency), data.qrels)["ndcg@10"]
        entry: dict[str, Any] = {"ndcg@10": round(base, 4)}
        for signal in SIGNALS:
            per_weight = {}
            for weight in weights:
                modifier = pb.ScoreModifier(
                    metadata_key=f"synthetic.{signal}", weight=weight, center=0.5
                )
                run = await _run(stub, data, mode, (modifier,), concurrency)
                score = evaluate(run, data.qrels)["ndcg@10"]
                per_weight[str(weight)] = {
                    "ndcg@10": round(score, 4),
                    "delta": round(score - base, 4),
                }
            entry[signal] = per_weight
        report["modes"][name] = entry
    return report
