"""The fix-pattern example (examples/fix-patterns/run.py) run as written against a real
search service, PostgreSQL and the model: patterns found for the audit record, guardian
violations with their lines, feedback moving confidence and ranking, relations followed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from indexer_kit import running_search, search_env

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fix-patterns"


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fix_patterns_run", EXAMPLE / "run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


async def test_the_fix_pattern_example_runs_end_to_end(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    example = _example()
    printed: list[str] = []
    async with running_search(env, monkeypatch) as channel:
        report: dict[str, Any] = await example.run(channel, out=printed.append)

    assert report["loaded"] == 50
    found = [h["id"] for h in report["found"]]
    assert len(found) == 5
    # The audit is about hanging calls and duplicated retried orders in an API handler.
    assert {"timeouts", "retry-backoff", "idempotency-key", "circuit-breaker"} & set(found[:3])
    for hit in report["found"]:
        assert set(hit["modifiers"]) == {"confidence", "layer 2"}

    violations = {(v["rule"], v["line"]) for v in report["violations"]}
    assert ("secrets-env-rule", 3) in violations  # PASSWORD = "..." on line 3
    assert ("retry-backoff-rule", 7) in violations  # requests.post(PAYMENT_URL)
    assert report["violations"][0]["severity"] == "CRITICAL"
    rules = {v["rule"] for v in report["violations"]}
    assert "xss-escape-rule" not in rules  # an html rule, out of the file's scope
    assert "non-root-rule" not in rules

    first, second = report["found"][0]["id"], report["found"][1]["id"]
    assert report["feedback"][second]["confidence"] > report["feedback"][first]["confidence"]
    after = [h["id"] for h in report["found_after_feedback"]]
    assert after.index(second) < after.index(first)  # the one that keeps working ranks first
    assert after[0] == second

    assert report["related"], "the best pattern has relations"
    for related in report["related"]:
        assert len(related["path"]) == related["depth"]
    assert any(line.startswith("5. related to") for line in printed)
