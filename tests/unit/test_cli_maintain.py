"""Operator commands refuse bad arguments and settings with one line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from semantic.tools.cli.main import main


@pytest.mark.parametrize("command", ["heal", "backfill"])
@pytest.mark.parametrize("space", ["99999999999", "0", "-1", "abc"])
def test_a_space_out_of_range_is_a_usage_error(
    command: str, space: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--space", space])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "argument --space" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["heal", "backfill"])
def test_a_missing_tokenizer_is_named_before_anything_runs(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("SEMANTIC_SEARCH_TOKENIZER", str(tmp_path / "tokenizer.json"))
    assert main([command]) == 2
    err = capsys.readouterr().err
    assert err.startswith("SEMANTIC_SEARCH_TOKENIZER: no file at ")
    assert str(tmp_path / "tokenizer.json") in err


@pytest.mark.parametrize(
    "arguments",
    [
        ["--batch-size", "0"],
        ["--batch-size", "-5"],
        ["--batch-size", "x"],
        ["--type", "Bad Type!"],
        ["--type", ""],
    ],
)
def test_a_bad_batch_size_or_type_is_a_usage_error(
    arguments: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["backfill", *arguments])
    assert exited.value.code == 2
    assert f"argument {arguments[0]}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["heal", "backfill", "archetypes"])
def test_an_unreachable_database_is_one_line_not_a_traceback(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Nothing listens on port 1; the tokenizer only has to exist for the check before.
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    (tmp_path / "tokenizer.json").write_text("{}")
    monkeypatch.setenv("SEMANTIC_SEARCH_TOKENIZER", str(tmp_path / "tokenizer.json"))
    assert main([command]) == 1
    err = capsys.readouterr().err
    assert f"{command} failed: postgresql unavailable" in err
    assert "Traceback" not in err
