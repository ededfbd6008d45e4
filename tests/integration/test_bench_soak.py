"""`semantic bench soak` for a few seconds against a real local stack (embedded PostgreSQL
and NATS, the embedder, search and indexer processes): the JSON report's shape, and that
calls and events went through. Nothing about speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic.tools.bench.workload import MIX
from semantic.tools.cli.main import main

BEIR_MINI = Path(__file__).resolve().parents[1] / "data" / "beir-mini"
PROCESSES = {"embedder", "search", "indexer", "postgres", "nats"}


def test_soak_reports_calls_events_and_memory_of_every_process(
    fp32_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("bench", "soak", "--json", "--minutes", "0.1", "--clients", "2"),
            *("--rate", "10", "--corpus", "12", "--warmup", "1", "--settle-max", "5"),
            *("--dataset", str(BEIR_MINI), "--model", str(fp32_model_dir)),
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)

    assert report["benchmark"] == "soak"
    assert report["corpus"]["documents"] == 12
    assert report["corpus"]["vectors"] >= 12
    assert report["calls"] > 0
    assert report["calls"] == sum(r["calls"] for r in report["rpcs"].values())
    assert set(report["rpcs"]) <= set(MIX)
    for rpc in report["rpcs"].values():
        assert rpc["calls"] == sum(rpc["codes"].values())
        assert rpc["errors"] == rpc["calls"] - rpc["codes"].get("OK", 0)
        if rpc["codes"].get("OK"):
            assert rpc["p50_ms"] <= rpc["p99_ms"]
    assert isinstance(report["goal_errors_met"], bool)
    assert report["goal_errors_met"] == (
        set(report["status_codes"]) | set(report["warmup"]["status_codes"])
        <= {"OK", "RESOURCE_EXHAUSTED"}
    )

    events = report["events"]
    assert events["published_total"] > 0
    assert events["drained"] is True
    assert events["applied_total"] > 0
    assert set(events["applied"]) <= {"content", "user"}

    assert set(report["memory"]) == PROCESSES
    for name, entry in report["memory"].items():
        assert entry["start_mb"] > 0, name
        assert entry["end_mb"] > 0, name
        assert entry["growth_ratio"] > 0, name
    assert report["memory"]["postgres"]["metric"] == "pss"
    assert report["memory"]["postgres"]["processes"][0] > 1  # the postmaster's children
    assert isinstance(report["goal_rss_met"], bool)
    settled = report["warmup"]["settled_after_s"]
    assert settled is None or 0 <= settled <= 5 + 5  # bounded by --settle-max (and a sample)
    assert report["machine"]["cpu_count"] >= 1
    assert report["machine"]["cpu_model"]
