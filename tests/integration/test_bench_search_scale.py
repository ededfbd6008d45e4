"""`semantic bench search` at scale, at a small N against a real embedded PostgreSQL and the
real services: a reference and N in one run, float32 and half-precision spaces, the JSON
report's shape, and recall that shows the queries reached the right spaces. Nothing about
speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic.tools.cli.main import main

N = 3_000
REFERENCE = 1_000


def test_scale_bench_measures_the_reference_and_n_at_both_precisions(
    fp32_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("bench", "search", "--json", "--n", str(N), "--reference-n", str(REFERENCE)),
            *("--precision", "both", "--queries", "40", "--model", str(fp32_model_dir)),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    assert (report["n"], report["reference_n"], report["precision"]) == (N, REFERENCE, "both")
    assert set(report["sizes"]) == {str(REFERENCE), str(N)}
    for size in (REFERENCE, N):
        at = report["sizes"][str(size)]
        assert at["memory"]["postgres_pss_mb"] > 0
        assert at["memory"]["search_rss_mb"] > 0
        for precision in ("float32", "half"):
            entry = at[precision]
            assert entry["copy_seconds"] >= 0
            assert entry["hnsw_build_seconds"] > 0
            assert entry["table_mb"] > 0
            query = entry["vector_query"]
            assert query["recall_at_10"] >= 0.9, (size, precision)  # small N: near exact
            assert query["p99_ms"] >= query["p50_ms"] > 0
            # One entry per round (4), each over that round's quarter of the 40 queries.
            assert len(query["by_round"]) == 4
            assert all(r["p99_ms"] >= r["p50_ms"] > 0 for r in query["by_round"])
            assert max(r["p99_ms"] for r in query["by_round"]) == query["p99_ms"]
            assert set(entry["ef_search_sweep_in_process"]) == {"100", "150", "200", "300", "400"}
        # The half-precision index is the smaller one (384-d: about half).
        assert at["half"]["hnsw_index_mb"] < at["float32"]["hnsw_index_mb"]
    assert set(report["vs_reference"]) == {"float32", "half"}
    assert report["vs_reference"]["half"]["p99_ratio"] > 0
    assert report["half_vs_float32"][str(N)]["hnsw_index_size_ratio"] < 0.8
    assert set(report["goals_met"]) == {
        "float32: recall_at_10>=0.95",
        "float32: p99<=3.0x_reference",
        "half: recall_at_10>=0.95",
        "half: p99<=3.0x_reference",
    }
    assert report["database_mb"] > 0
