"""`semantic bench snapshot` at a small N against a real embedded PostgreSQL, the real
`semantic export` / `semantic import` processes and the real pg_dump / pg_restore: the JSON
report's shape, and that both the import and the restore brought back every node and
vector; and the degraded-read part (a local stack whose PostgreSQL is stopped) answers every
query from the local index. Nothing about speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic.tools.cli.main import main

N = 2_000
SIDES = ("export", "pg_dump", "import", "pg_restore")


def test_snapshot_bench_reports_both_sides_and_restores_every_node(
    fp32_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("bench", "snapshot", "--json", "--n", str(N), "--rounds", "1"),
            *("--queries", "20", "--model", str(fp32_model_dir)),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    assert report["benchmark"] == "snapshot"
    assert report["n"] == N
    for side in SIDES:
        entry = report[side]
        assert entry["vectors"] == N, side
        assert entry["seconds"] > 0, side
        assert entry["vectors_per_s"] > 0, side
        assert entry["peak_rss_mib"] > 0, side
        assert len(entry["rounds_seconds"]) == 1, side
    for side in ("export", "pg_dump"):
        assert report[side]["bytes"] > N * 384 * 4 // 2, side  # the vectors are in there
    assert report["export"]["files"] >= 2  # nodes and vectors at least
    for side in ("import", "pg_restore"):
        assert report[side]["nodes"] == N, side
        assert report[side]["vectors_restored"] == N, side
    assert report["import"]["heal_needed"] is False  # the vectors were kept, none re-embedded

    flat = report["export_peak_rss_vs_n"]
    assert flat[f"n_{N}_mib"] > 0
    assert flat[f"n_{N // 4}_mib"] > 0
    assert flat["ratio"] > 0
    assert report["export_vs_pg_dump_seconds"] > 0
    assert report["import_vs_pg_restore_seconds"] > 0
    assert isinstance(report["goals_met"]["export_vs_pg_dump_seconds<=1.5"], bool)

    degraded = report["degraded_reads"]
    for side in ("normal_read_ms", "degraded_read_ms"):
        assert degraded[side]["p50_ms"] > 0, side
        assert degraded[side]["p99_ms"] >= degraded[side]["p50_ms"], side
    assert degraded["degraded_vs_normal_p50"] > 0
    assert degraded["setup"]["queries"] == 20
    assert degraded["degraded_recall@10"] >= 0.9  # the local index answers the same queries
