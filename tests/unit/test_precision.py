"""SEMANTIC_EMBEDDER_PRECISION: which variant of the built-in model is served by default."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from semantic.embedder.precision import choose, cpu_flags, default_dirs, int8_is_fast, parse_flags
from semantic.embedder.settings import DEFAULT_MODEL_DIR, EmbedderSettings

VNNI = frozenset({"sse4_2", "avx2", "avx512f", "avx512_vnni"})
AVX2_ONLY = frozenset({"sse4_2", "avx2", "fma"})
CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse4_2 avx2 avx512f avx512_vnni amx_int8
bugs\t\t: spectre_v1

processor\t: 1
flags\t\t: fpu sse4_2 avx2
"""


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> EmbedderSettings:
    for name in ("SEMANTIC_EMBEDDER_MODEL_DIRS", "SEMANTIC_EMBEDDER_PRECISION"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return EmbedderSettings(_env_file=None)  # type: ignore[call-arg]


def _built(root: Path) -> Path:
    """A models folder where `semantic model build` wrote both variants (manifests only)."""
    fp32 = root / "all-minilm-l6-v2"
    for folder in (fp32, root / "all-minilm-l6-v2-int8"):
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text("{}")
    return fp32


def test_the_first_processors_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    assert parse_flags(CPUINFO.splitlines()) == {
        "fpu",
        "sse4_2",
        "avx2",
        "avx512f",
        "avx512_vnni",
        "amx_int8",
    }
    assert parse_flags(["Features\t: fp asimd asimddp"]) == {"fp", "asimd", "asimddp"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_int8_is_fast_with_vnni_or_amx_only() -> None:
    assert int8_is_fast(VNNI)
    assert int8_is_fast(frozenset({"avx_vnni"}))
    assert int8_is_fast(frozenset({"amx_int8"}))
    assert not int8_is_fast(AVX2_ONLY)
    assert not int8_is_fast(frozenset())


def test_auto_picks_int8_on_vnni_when_the_variant_is_built(tmp_path: Path) -> None:
    fp32 = _built(tmp_path)
    assert choose("auto", fp32, VNNI) == "int8"
    assert choose("auto", fp32, AVX2_ONLY) == "fp32"
    assert choose("auto", tmp_path / "elsewhere" / "all-minilm-l6-v2", VNNI) == "fp32"
    assert choose("fp32", fp32, VNNI) == "fp32"
    assert choose("int8", fp32, AVX2_ONLY) == "int8"  # asked for: served even if slower


def test_int8_serves_the_fp32_model_second_so_its_spaces_keep_answering() -> None:
    fp32 = Path("models/all-minilm-l6-v2")
    assert default_dirs(fp32, "int8") == [Path("models/all-minilm-l6-v2-int8"), fp32]
    assert default_dirs(fp32, "fp32") == [fp32]


def test_settings_resolve_the_default_dirs_by_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    int8 = Path("models/all-minilm-l6-v2-int8")
    assert _settings(monkeypatch, SEMANTIC_EMBEDDER_PRECISION="int8").served_model_dirs(
        AVX2_ONLY
    ) == [int8, DEFAULT_MODEL_DIR]
    assert _settings(monkeypatch, SEMANTIC_EMBEDDER_PRECISION="fp32").served_model_dirs(VNNI) == [
        DEFAULT_MODEL_DIR
    ]
    one = _settings(
        monkeypatch, SEMANTIC_EMBEDDER_PRECISION="int8", SEMANTIC_EMBEDDER_MAX_MODELS="1"
    )
    assert one.served_model_dirs(VNNI) == [int8]
    monkeypatch.delenv("SEMANTIC_EMBEDDER_MAX_MODELS")
    assert _settings(monkeypatch).served_model_dirs(AVX2_ONLY) == [DEFAULT_MODEL_DIR]


def test_configured_dirs_are_served_as_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, SEMANTIC_EMBEDDER_MODEL_DIRS="/srv/a,/srv/b")
    assert settings.served_model_dirs(VNNI) == [Path("/srv/a"), Path("/srv/b")]
    with pytest.raises(ValidationError, match="list the directories to serve instead"):
        _settings(
            monkeypatch,
            SEMANTIC_EMBEDDER_MODEL_DIRS="/srv/a",
            SEMANTIC_EMBEDDER_PRECISION="fp32",
        )
