"""`semantic eval-recommend` end to end on the tiny BEIR set: a real local stack (embedded
PostgreSQL, embedder, search service), Upsert, Track, Recommend, Nearest; the JSON report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic.tools.cli.main import main

BEIR_MINI = Path(__file__).resolve().parents[1] / "data" / "beir-mini"
METHODS = {"journey", "popularity", "nearest_to_last", "random"}


def test_eval_recommend_prints_every_method_with_metrics_in_range(
    fp32_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "eval-recommend",
            "--dataset",
            str(BEIR_MINI),
            "--model",
            str(fp32_model_dir),
            "--seed",
            "3",
            "--json",
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"] == "beir-mini"
    assert report["model"] == "sentence-transformers/all-MiniLM-L6-v2"
    # q1 is the only test query with two relevant documents (d1, 007; d4 is grade 0).
    assert report["users"] == 1
    assert report["events"] == report["events_accepted"] == 1
    assert set(report["methods"]) == METHODS
    for scores in report["methods"].values():
        assert set(scores) == {"hit_rate@10", "ndcg@10"}
        assert all(0.0 <= value <= 1.0 for value in scores.values())
        assert scores["ndcg@10"] <= scores["hit_rate@10"]
    assert report["methods"]["journey"]["hit_rate@10"] > 0
