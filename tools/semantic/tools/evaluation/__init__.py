"""Offline evaluation: BEIR datasets, trec_eval-exact ranking metrics, recommendation sessions."""

from semantic.tools.evaluation.beir import (
    BeirDataset,
    DatasetFormatError,
    Document,
    document_text,
    iter_corpus,
    load_beir,
)
from semantic.tools.evaluation.metrics import (
    RECOMMENDATION_METRICS,
    SEARCH_METRICS,
    Metric,
    Qrels,
    Run,
    evaluate,
    evaluate_per_query,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)
from semantic.tools.evaluation.sessions import Session, build_sessions, session_qrels

__all__ = [
    "RECOMMENDATION_METRICS",
    "SEARCH_METRICS",
    "BeirDataset",
    "DatasetFormatError",
    "Document",
    "Metric",
    "Qrels",
    "Run",
    "Session",
    "build_sessions",
    "document_text",
    "evaluate",
    "evaluate_per_query",
    "hit_rate_at_k",
    "iter_corpus",
    "load_beir",
    "mrr_at_k",
    "ndcg_at_k",
    "recall_at_k",
    "session_qrels",
]
