"""`semantic drill restore` on the tiny BEIR set against a real throw-away stack (embedded
PostgreSQL, the embedder and search processes): the restored database has every table's
checksum and every mode's nDCG@10 of the source, and the snapshot carried the users'
journeys, events and engagement counters. Nothing about speed is asserted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from semantic.tools.cli.main import main

BEIR_MINI = Path(__file__).resolve().parents[1] / "data" / "beir-mini"


def test_a_restored_database_equals_its_source(
    fp32_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *("drill", "restore", "--json", "--users", "4"),
            *("--dataset", str(BEIR_MINI), "--model", str(fp32_model_dir)),
        ]
    )
    report = json.loads(capsys.readouterr().out)

    assert code == 0, report
    assert report["equal"] is True
    assert report["checksums"]["equal"] is True
    assert report["checksums"]["differ"] == []
    ndcg = report["ndcg@10"]
    assert set(ndcg["before"]) == {"dense", "keyword", "hybrid"}
    assert ndcg["after"] == ndcg["before"]
    assert ndcg["before"]["dense"] > 0
    assert report["documents"] == 5
    assert report["users"] == 4
    assert report["events"] == 4 * 6
    files = report["export"]["files"]
    for table in ("users", "user_events", "user_nodes", "node_engagement", "nodes", "postings"):
        assert files[f"{table}.parquet"] > 0, table
    assert sum(n for name, n in files.items() if name.startswith("vectors-")) == report["vectors"]
    assert report["import"]["rows"] == report["export"]["rows"]
    assert report["import"]["heal_needed"] is False
    rows = report["checksums"]["rows"]
    assert rows["users"] == 4
    assert [k for k in rows if k.startswith("vectors:")] == [
        k for k in rows if k.startswith("vectors:sentence-transformers/all-MiniLM-L6-v2@")
    ]
