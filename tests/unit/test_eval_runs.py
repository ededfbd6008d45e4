"""`semantic eval`'s sweep: which hybrid runs a config asks for and what each one requests."""

from __future__ import annotations

from pathlib import Path

from semantic.tools.evaluation.runner import EvalConfig, Run, runs_of
from semantic.v1 import search_pb2 as pb


def _config(**kwargs: object) -> EvalConfig:
    return EvalConfig(dataset=Path("d"), model_dir=Path("m"), **kwargs)  # type: ignore[arg-type]


def test_without_a_sweep_each_mode_runs_once_with_the_server_defaults() -> None:
    runs = runs_of(_config())
    assert [run.label for run in runs] == ["dense", "keyword", "hybrid"]
    request = runs[2].request("q", 100)
    assert not request.HasField("hybrid")


def test_a_sweep_crosses_fusions_weights_and_pools_and_gives_k_to_rrf_only() -> None:
    config = _config(
        modes=("dense", "hybrid"),
        fusions=("rrf", "distribution"),
        keyword_weights=(0.5, 1.0),
        rrf_ks=(10, 60),
        candidates=(300,),
    )
    labels = [run.label for run in runs_of(config)]
    assert labels == [
        "dense",
        "hybrid rrf kw=0.5 k=10 candidates=300",
        "hybrid rrf kw=1 k=10 candidates=300",
        "hybrid rrf kw=0.5 k=60 candidates=300",
        "hybrid rrf kw=1 k=60 candidates=300",
        "hybrid distribution kw=0.5 candidates=300",
        "hybrid distribution kw=1 candidates=300",
    ]


def test_a_run_asks_for_what_it_names() -> None:
    request = Run("hybrid", "relative_score", 0.75, None, 300).request("money back", 100)
    assert (request.text, request.mode, request.top_k) == ("money back", pb.SEARCH_MODE_HYBRID, 100)
    assert request.hybrid.fusion == pb.FUSION_RELATIVE_SCORE
    assert request.hybrid.keyword_weight == 0.75
    assert request.hybrid.candidates == 300
    assert not request.hybrid.HasField("rrf_k")


def test_an_expansion_sweep_runs_the_weights_only_where_expansion_is_on() -> None:
    config = _config(modes=("hybrid",), expansion_docs=(0, 2), expansion_weights=(0.5, 1.0))
    runs = runs_of(config)
    assert [run.label for run in runs] == [
        "hybrid expansion=0 expansion_weight=0.5",
        "hybrid expansion=2 expansion_weight=0.5",
        "hybrid expansion=2 expansion_weight=1",
    ]
    request = runs[2].request("q", 100)
    assert (request.hybrid.expansion_docs, request.hybrid.expansion_weight) == (2, 1.0)
    assert runs[0].request("q", 100).hybrid.HasField("expansion_docs")  # 0 is asked, not unset
