"""`semantic model build` is idempotent: an up-to-date directory is left alone, a damaged
one is rebuilt, and the shipped tokenizer's 128-token limits are lifted."""

import json
import os
from pathlib import Path

import onnx
import pytest

from semantic.embedder.model.manifest import Manifest, file_sha256
from semantic.tools.cli.main import main
from semantic.tools.modelbuild.builder import FP32_DIR, build_models, stale_variants


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out = tmp_path_factory.mktemp("built")
    assert main(["model", "build", "--out", str(out), "--variant", "fp32"]) == 0
    return out


def test_the_build_writes_graph_tokenizer_and_manifest(built: Path) -> None:
    directory = built / FP32_DIR
    manifest = Manifest.load(directory)
    assert manifest.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert (manifest.dim, manifest.max_tokens, manifest.pooling) == (384, 256, "mean")
    assert manifest.normalize
    assert manifest.quantization == "fp32"
    assert manifest.onnx_sha256 == file_sha256(directory / "model.onnx")
    assert manifest.source_sha256 is not None
    assert manifest.builder_version is not None
    model = onnx.load(str(directory / "model.onnx"), load_external_data=False)
    assert model.ir_version <= 13  # what onnxruntime 1.31 reads
    tokenizer = json.loads((directory / "tokenizer.json").read_text())
    assert tokenizer["truncation"]["max_length"] == 256
    assert tokenizer["padding"] is None


def test_building_again_leaves_an_up_to_date_directory_alone(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (built / FP32_DIR / "model.onnx").stat().st_mtime_ns
    assert main(["model", "build", "--out", str(built), "--variant", "fp32"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (built / FP32_DIR / "model.onnx").stat().st_mtime_ns == before


def test_a_damaged_directory_is_rebuilt(built: Path) -> None:
    graph = built / FP32_DIR / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])
    assert stale_variants(built, ["fp32"]) == ["fp32"]
    (result,) = build_models(built, variants=["fp32"])
    assert result.built
    assert file_sha256(graph) == result.manifest.onnx_sha256
    assert stale_variants(built, ["fp32"]) == []
    assert not [p.name for p in built.iterdir() if p.name.endswith((".partial", ".old"))]
