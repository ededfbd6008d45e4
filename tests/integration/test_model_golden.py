"""The ONNX model directories against sentence-transformers' reference vectors:
exact fp32, close and batch-independent int8, pluggable manifests."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from semantic.embedder.model.errors import ModelFileMissing
from semantic.embedder.model.manifest import Manifest
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel

REFERENCE = Path(__file__).parent.parent / "data" / "minilm-reference.jsonl"
ROWS = [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]
TEXTS = [row["text"] for row in ROWS]
EXPECTED = np.array([row["embedding"] for row in ROWS], dtype=np.float32)
EXPECTED /= np.linalg.norm(EXPECTED, axis=1, keepdims=True)


def _cosines(vectors: np.ndarray) -> np.ndarray:
    return np.sum(vectors * EXPECTED, axis=1)


def test_fp32_reproduces_every_reference_vector(fp32_model_dir: Path) -> None:
    model = OnnxEmbeddingModel.load(fp32_model_dir)
    vectors, encoded = model.embed(TEXTS)
    assert float(_cosines(vectors).min()) >= 0.9999
    assert [e.tokens for e in encoded] == [row["tokens"] for row in ROWS]
    assert [e.truncated for e in encoded] == [row["truncated"] for row in ROWS]
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_int8_stays_close_to_every_reference_vector(int8_model_dir: Path) -> None:
    model = OnnxEmbeddingModel.load(int8_model_dir)
    vectors, _ = model.embed(TEXTS)
    assert float(_cosines(vectors).min()) >= 0.98
    assert model.manifest.quantization == "int8"


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_text_alone_equals_itself_inside_a_padded_batch(
    variant: str, fp32_model_dir: Path, int8_model_dir: Path
) -> None:
    model = OnnxEmbeddingModel.load(fp32_model_dir if variant == "fp32" else int8_model_dir)
    batch, _ = model.embed(TEXTS)
    for i, text in enumerate(TEXTS):
        alone, _ = model.embed([text])
        assert float(alone[0] @ batch[i]) >= (0.99999 if variant == "fp32" else 0.999), text[:40]


def test_query_prefix_from_the_manifest_changes_queries_not_documents(
    fp32_model_dir: Path, tmp_path: Path
) -> None:
    e5_style = tmp_path / "e5-style"
    shutil.copytree(fp32_model_dir, e5_style)
    manifest = Manifest.load(e5_style)
    changed = manifest.model_copy(update={"model_id": "e5-style", "query_prefix": "query: "})
    changed.save(e5_style)
    plain = OnnxEmbeddingModel.load(fp32_model_dir)
    prefixed = OnnxEmbeddingModel.load(e5_style)
    text = ["how to cache http responses"]
    assert (
        float(plain.embed(text, "document")[0][0] @ prefixed.embed(text, "document")[0][0])
        > 0.99999
    )
    query_plain = plain.embed(text, "query")[0][0]
    query_prefixed, encoded = prefixed.embed(text, "query")
    assert float(query_plain @ query_prefixed[0]) < 0.999
    prefix_pieces = 2  # "query" and ":"
    assert encoded[0].tokens == plain.embed(text, "query")[1][0].tokens + prefix_pieces


def test_a_directory_without_the_graph_is_refused_naming_the_file(
    fp32_model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp32_model_dir, broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelFileMissing, match=r"model\.onnx"):
        OnnxEmbeddingModel.load(broken)
