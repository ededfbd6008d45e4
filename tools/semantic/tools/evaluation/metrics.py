"""Ranking metrics as trec_eval computes them: nDCG@k, recall@k, MRR@k, hit rate@k, and their mean.

Conventions, each matching trec_eval 9 (``ndcg_cut``, ``recall``, ``recip_rank``, ``-c``):

- A ranking is taken as given: it is already ordered best first and is never re-sorted, so
  ties were broken by whoever produced it. A document listed twice is an error (trec_eval
  refuses duplicate documents too).
- Gain is the relevance grade itself (not 2^grade - 1); the document at rank r (1-based) is
  discounted by log2(r + 1). The ideal DCG sorts all judged grades > 0 of the query in
  descending order and truncates them at k. Unjudged documents and grade <= 0 give no gain.
- "Relevant" means grade >= 1 (trec_eval's default relevance level) for recall, MRR and hit
  rate; a grade-0 judgement is a judged non-relevant document.
- ``evaluate`` averages over the queries of the qrels. A query of the qrels missing from the
  run, or with an empty ranking, scores 0 (trec_eval -c). Queries of the run absent from the
  qrels are ignored. A query present in the qrels whose judgements are all grade 0 is NOT
  skipped: it scores 0 on every metric, as in trec_eval since version 8.1 (only very old
  versions dropped queries without relevant documents). BEIR datasets such as NFCorpus
  judge only grades >= 1, so this never arises there.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import islice
from types import MappingProxyType

Judgements = Mapping[str, int]
"""One query's judgements: document id -> relevance grade."""

Qrels = Mapping[str, Judgements]
"""Every query's judgements: query id -> {document id: grade}."""

Run = Mapping[str, Sequence[str]]
"""A system's output: query id -> document ids, best first."""

Metric = Callable[[Sequence[str], Judgements], float]
"""A per-query metric: (ranking, judgements) -> score in [0, 1]."""


def ndcg_at_k(ranked: Sequence[str], qrels: Judgements, k: int = 10) -> float:
    """Normalised discounted cumulative gain of the first ``k`` documents (trec_eval ndcg_cut)."""
    _check(ranked, k)
    dcg = 0.0
    for index, doc_id in enumerate(islice(ranked, k)):
        gain = qrels.get(doc_id, 0)
        if gain > 0:
            dcg += gain / math.log2(index + 2)
    ideal = sorted((grade for grade in qrels.values() if grade > 0), reverse=True)[:k]
    ideal_dcg = 0.0
    for index, gain in enumerate(ideal):
        ideal_dcg += gain / math.log2(index + 2)
    return dcg / ideal_dcg if ideal_dcg > 0.0 else 0.0


def recall_at_k(ranked: Sequence[str], qrels: Judgements, k: int = 100) -> float:
    """Share of the query's relevant documents found in the first ``k``; 0 if it has none."""
    _check(ranked, k)
    relevant = sum(1 for grade in qrels.values() if grade > 0)
    if relevant == 0:
        return 0.0
    found = sum(1 for doc_id in islice(ranked, k) if qrels.get(doc_id, 0) > 0)
    return found / relevant


def mrr_at_k(ranked: Sequence[str], qrels: Judgements, k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the first ``k``, else 0."""
    _check(ranked, k)
    for index, doc_id in enumerate(islice(ranked, k)):
        if qrels.get(doc_id, 0) > 0:
            return 1.0 / (index + 1)
    return 0.0


def hit_rate_at_k(ranked: Sequence[str], qrels: Judgements, k: int = 10) -> float:
    """1 if any relevant document is within the first ``k``, else 0."""
    return 1.0 if mrr_at_k(ranked, qrels, k) > 0.0 else 0.0


SEARCH_METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "ndcg@10": partial(ndcg_at_k, k=10),
        "recall@100": partial(recall_at_k, k=100),
        "mrr@10": partial(mrr_at_k, k=10),
    }
)
"""The retrieval metrics ``semantic eval`` reports (issue 4)."""

RECOMMENDATION_METRICS: Mapping[str, Metric] = MappingProxyType(
    {
        "hit_rate@10": partial(hit_rate_at_k, k=10),
        "ndcg@10": partial(ndcg_at_k, k=10),
    }
)
"""The metrics ``semantic eval-recommend`` reports for a held-out item (issue 6)."""


def evaluate_per_query(
    run: Run, qrels: Qrels, metrics: Mapping[str, Metric] = SEARCH_METRICS
) -> dict[str, dict[str, float]]:
    """Every metric per query of ``qrels``, in qrels order; a query without results scores 0."""
    if not qrels:
        raise ValueError("qrels hold no query to evaluate")
    scores: dict[str, dict[str, float]] = {}
    for query_id, judgements in qrels.items():
        ranked = run.get(query_id, ())
        scores[query_id] = {name: metric(ranked, judgements) for name, metric in metrics.items()}
    return scores


def evaluate(
    run: Run, qrels: Qrels, metrics: Mapping[str, Metric] = SEARCH_METRICS
) -> dict[str, float]:
    """Each metric averaged over the queries of ``qrels``: "ndcg@10", "recall@100", "mrr@10"."""
    per_query = evaluate_per_query(run, qrels, metrics)
    return {
        name: math.fsum(scores[name] for scores in per_query.values()) / len(per_query)
        for name in metrics
    }


def _check(ranked: Sequence[str], k: int) -> None:
    """Refuse a cut-off below 1, a bare string, and a ranking that lists a document twice."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if isinstance(ranked, str):
        raise TypeError("ranked must be a sequence of document ids, not a single string")
    if len(set(ranked)) != len(ranked):
        seen: set[str] = set()
        for doc_id in ranked:
            if doc_id in seen:
                raise ValueError(f"document {doc_id!r} is ranked more than once")
            seen.add(doc_id)
