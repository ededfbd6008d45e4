"""The layer contracts of pyproject.toml ([tool.importlinter]) hold on the real tree, and
breaking one makes `lint-imports` (and so `make check`) fail, naming the contract.

The contracts are read from pyproject.toml, so contracts added later are checked too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> list[dict[str, Any]]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    contracts: list[dict[str, Any]] = config["contracts"]
    return contracts


def _lint(cwd: Path, pythonpath: Path | None = None) -> tuple[int, dict[str, str], str]:
    """Run lint-imports with the project's config; (exit code, name -> KEPT/BROKEN, output)."""
    env = dict(os.environ)
    if pythonpath is not None:  # searched before the installed source tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(pythonpath), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(PYPROJECT)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    verdicts = {}
    for line in output.splitlines():
        name, _, verdict = line.strip().rpartition(" ")
        if verdict in {"KEPT", "BROKEN"} and name:
            verdicts[name] = verdict
    return done.returncode, verdicts, output


def test_every_contract_is_kept_on_the_real_tree(tmp_path: Path) -> None:
    contracts = _contracts()
    assert contracts, "pyproject.toml declares no import contracts"
    code, verdicts, output = _lint(tmp_path)
    assert code == 0, output
    assert verdicts == {c["name"]: "KEPT" for c in contracts}, output


def test_core_importing_the_database_driver_breaks_its_contract(tmp_path: Path) -> None:
    # The real tree, except that semantic.core (a copy of it, found first on the path)
    # gains a module importing asyncpg.
    core = tmp_path / "semantic" / "core"
    shutil.copytree(ROOT / "libs" / "core" / "semantic" / "core", core)
    (core / "leak.py").write_text('"""Breaks the layering on purpose."""\n\nimport asyncpg\n')
    guarding = {
        c["name"]
        for c in _contracts()
        if c.get("type") == "forbidden"
        and any(s in {"semantic", "semantic.core"} for s in c.get("source_modules", []))
        and "asyncpg" in c.get("forbidden_modules", [])
    }
    assert guarding, "no contract forbids asyncpg in semantic.core"

    code, verdicts, output = _lint(tmp_path, pythonpath=tmp_path)

    assert code != 0, output
    assert {name for name in guarding if verdicts.get(name) == "BROKEN"} == guarding, output
    assert "semantic.core.leak -> asyncpg" in output
