"""Ranking metrics match trec_eval: hand-computed cases, a port of its loop, the averaging rules."""

import math
import random

import pytest

from semantic.tools.evaluation import (
    RECOMMENDATION_METRICS,
    evaluate,
    evaluate_per_query,
    hit_rate_at_k,
    mrr_at_k,
    ndcg_at_k,
    recall_at_k,
)

INV_LOG2_3 = 1 / math.log2(3)  # the discount at rank 2; rank 1 is undiscounted, rank 3 halves


# --- nDCG, hand-computed --------------------------------------------------------------------


def test_ndcg_uses_the_grade_as_gain_and_log2_rank_plus_one_discount() -> None:
    qrels = {"a": 2, "b": 1, "c": 0}
    # DCG = 1/log2(2) + 0 + 2/log2(4) = 2; ideal [2, 1] = 2 + 1/log2(3).
    assert ndcg_at_k(["b", "x", "a"], qrels) == pytest.approx(0.7601875334318685, abs=1e-12)


def test_ndcg_gain_is_linear_in_the_grade_not_exponential() -> None:
    # Linear: (1 + 3/log2 3) / (3 + 1/log2 3) = 0.7967; 2^g - 1 would give 0.7098.
    assert ndcg_at_k(["b", "a"], {"a": 3, "b": 1}) == pytest.approx(0.7967075809905066)


def test_ndcg_cuts_both_the_ranking_and_the_ideal_at_k() -> None:
    qrels = {"a": 1, "b": 1, "c": 1}
    # Top 2: [x, a] -> DCG = 1/log2(3); ideal over 2 of the 3 relevant = 1 + 1/log2(3).
    assert ndcg_at_k(["x", "a", "b", "c"], qrels, k=2) == pytest.approx(0.38685280723454163)
    # Relevant documents below the cut give nothing.
    assert ndcg_at_k(["x", "y", "a", "b"], qrels, k=2) == 0.0


def test_ndcg_of_a_perfect_ranking_is_one() -> None:
    qrels = {"a": 2, "b": 2, "c": 1, "d": 0}
    assert ndcg_at_k(["a", "b", "c"], qrels) == pytest.approx(1.0)
    assert ndcg_at_k(["b", "a", "c", "d", "z"], qrels) == pytest.approx(1.0)
    # More relevant documents than k: the top k all at the highest grade is perfect.
    assert ndcg_at_k(["b", "a"], qrels, k=2) == pytest.approx(1.0)


def test_ndcg_of_a_swapped_pair_is_below_one() -> None:
    # [1, 2] against ideal [2, 1]: (1 + 2/log2 3) / (2 + 1/log2 3).
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}) == pytest.approx(0.8597186998521972)


def test_ndcg_is_zero_without_relevant_documents() -> None:
    assert ndcg_at_k(["a", "b"], {"a": 0, "b": 0}) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0
    assert ndcg_at_k([], {"a": 1}) == 0.0


def test_ndcg_counts_unjudged_documents_as_non_relevant_but_keeps_their_rank() -> None:
    assert ndcg_at_k(["u1", "a", "u2"], {"a": 1}) == pytest.approx(INV_LOG2_3)
    assert ndcg_at_k(["u1", "u2", "a"], {"a": 1}) == pytest.approx(0.5)  # 1 / log2(4)


def test_ndcg_ignores_negative_grades() -> None:
    assert ndcg_at_k(["n", "a"], {"n": -1, "a": 1}) == pytest.approx(INV_LOG2_3)
    assert ndcg_at_k(["a", "n"], {"n": -1, "a": 1}) == pytest.approx(1.0)


# --- nDCG against a port of trec_eval's ndcg_cut loop ----------------------------------------


def trec_eval_ndcg_cut(ranked: list[str], qrels: dict[str, int], k: int) -> float:
    """trec_eval 9's m_ndcg_cut.c, transcribed: the ideal walks relevance levels by count."""
    dcg = 0.0
    for i, doc in enumerate(ranked[:k]):
        gain = qrels.get(doc, -1)  # -1: not in the pool
        if gain > 0:
            dcg += gain / math.log2(i + 2)
    levels = [0] * (max([0, *qrels.values()]) + 1)
    for grade in qrels.values():
        if grade >= 0:
            levels[grade] += 1
    cur_lvl = max((g for g, count in enumerate(levels) if count), default=0)
    lvl_count = 0
    ideal = 0.0
    i = 0
    while i < k:
        lvl_count += 1
        while cur_lvl > 0 and lvl_count > levels[cur_lvl]:
            cur_lvl -= 1
            lvl_count = 1
        if cur_lvl == 0:
            break
        ideal += cur_lvl / math.log2(i + 2)
        i += 1
    return dcg / ideal if ideal > 0.0 else dcg


def test_ndcg_agrees_with_trec_eval_loop_on_random_graded_rankings() -> None:
    rng = random.Random(20240611)
    for _ in range(2000):
        pool = [f"d{i}" for i in range(rng.randint(1, 30))]
        qrels = {
            doc: rng.choice([0, 0, 1, 1, 2, 3])
            for doc in rng.sample(pool, rng.randint(0, len(pool)))
        }
        ranked = rng.sample(pool, rng.randint(0, len(pool)))
        k = rng.choice([1, 3, 5, 10, 20])
        expected = trec_eval_ndcg_cut(ranked, qrels, k)
        assert ndcg_at_k(ranked, qrels, k) == pytest.approx(expected, abs=1e-12)


# --- recall, MRR, hit rate -------------------------------------------------------------------


def test_recall_is_the_share_of_relevant_documents_retrieved_within_k() -> None:
    qrels = {"a": 2, "b": 1, "c": 1, "z": 0}
    assert recall_at_k(["a", "x", "c", "z"], qrels, k=100) == pytest.approx(2 / 3)
    assert recall_at_k(["a", "x", "c"], qrels, k=2) == pytest.approx(1 / 3)
    assert recall_at_k(["c", "b", "a"], qrels, k=3) == 1.0


def test_recall_does_not_count_grade_zero_as_relevant() -> None:
    assert recall_at_k(["z"], {"z": 0, "a": 1}) == 0.0
    assert recall_at_k(["z"], {"z": 0}) == 0.0  # nothing relevant to find: 0, as trec_eval


def test_mrr_is_the_reciprocal_rank_of_the_first_relevant_within_k() -> None:
    qrels = {"a": 1, "b": 2, "z": 0}
    assert mrr_at_k(["a", "b"], qrels) == 1.0
    assert mrr_at_k(["z", "x", "b", "a"], qrels) == pytest.approx(1 / 3)
    assert mrr_at_k(["z", "x", "b"], qrels, k=2) == 0.0
    assert mrr_at_k([], qrels) == 0.0


def test_hit_rate_is_one_when_any_relevant_is_within_k() -> None:
    qrels = {"held": 1}
    assert hit_rate_at_k(["x", "held"], qrels, k=2) == 1.0
    assert hit_rate_at_k(["x", "held"], qrels, k=1) == 0.0
    assert hit_rate_at_k(["held"], {"held": 0}) == 0.0


def test_metrics_refuse_duplicates_bad_k_and_a_bare_string() -> None:
    with pytest.raises(ValueError, match="'a' is ranked more than once"):
        ndcg_at_k(["a", "b", "a"], {"a": 1})
    with pytest.raises(ValueError, match="k must be at least 1"):
        recall_at_k(["a"], {"a": 1}, k=0)
    with pytest.raises(TypeError, match="not a single string"):
        mrr_at_k("abc", {"a": 1})


def test_ranking_is_taken_as_given_and_never_re_sorted() -> None:
    qrels = {"b": 1}
    assert mrr_at_k(["a", "b"], qrels) == 0.5
    assert mrr_at_k(("b", "a"), qrels) == 1.0


# --- evaluate: averaging rules ---------------------------------------------------------------


def test_evaluate_averages_over_the_qrels_queries_with_the_reported_keys() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 2, "c": 1}}
    run = {"q1": ["a"], "q2": ["x", "y", "c"]}
    scores = evaluate(run, qrels)
    assert list(scores) == ["ndcg@10", "recall@100", "mrr@10"]
    q2_ndcg = 0.5 / (2 + INV_LOG2_3)  # c (grade 1) at rank 3; ideal [2, 1]
    assert scores["ndcg@10"] == pytest.approx((1.0 + q2_ndcg) / 2)
    assert scores["recall@100"] == pytest.approx((1.0 + 0.5) / 2)
    assert scores["mrr@10"] == pytest.approx((1.0 + 1 / 3) / 2)


def test_evaluate_counts_a_query_without_results_as_zero() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    assert evaluate({"q1": ["a"]}, qrels)["ndcg@10"] == pytest.approx(0.5)
    assert evaluate({"q1": ["a"], "q2": []}, qrels)["mrr@10"] == pytest.approx(0.5)


def test_evaluate_ignores_run_queries_absent_from_qrels() -> None:
    scores = evaluate({"q1": ["a"], "stray": ["a"]}, {"q1": {"a": 1}})
    assert scores == {"ndcg@10": 1.0, "recall@100": 1.0, "mrr@10": 1.0}


def test_evaluate_keeps_queries_judged_only_non_relevant_scoring_zero() -> None:
    # trec_eval >= 8.1 evaluates every query of the qrels, even with no relevant document.
    qrels = {"q1": {"a": 1}, "q2": {"b": 0}}
    per_query = evaluate_per_query({"q1": ["a"], "q2": ["b"]}, qrels)
    assert per_query["q2"] == {"ndcg@10": 0.0, "recall@100": 0.0, "mrr@10": 0.0}
    assert evaluate({"q1": ["a"], "q2": ["b"]}, qrels)["ndcg@10"] == pytest.approx(0.5)


def test_evaluate_refuses_empty_qrels() -> None:
    with pytest.raises(ValueError, match="no query"):
        evaluate({"q1": ["a"]}, {})


def test_evaluate_takes_other_metric_sets() -> None:
    qrels = {"u1": {"held": 1}, "u2": {"held": 1}}
    run = {"u1": ["x", "held"], "u2": ["x"]}
    scores = evaluate(run, qrels, RECOMMENDATION_METRICS)
    assert scores == {"hit_rate@10": 0.5, "ndcg@10": pytest.approx(INV_LOG2_3 / 2)}
