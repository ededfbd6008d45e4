"""Model directories plug in by their manifest: prefixes, pooling, side-by-side loading,
clear errors for broken directories, and the runtime's behaviour at the window edge."""

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from semantic.embedder.model.errors import ManifestInvalid, ModelChecksumMismatch, ModelFileMissing
from semantic.embedder.model.manifest import Manifest
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel

QUERY = ["how to cache http responses"]


def _variant_of(source: Path, target: Path, **changes: object) -> Path:
    """A copy of a model directory whose manifest differs by ``changes``."""
    shutil.copytree(source, target)
    manifest = Manifest.load(target)
    manifest.model_copy(update=changes).save(target)
    return target


@pytest.fixture(scope="module")
def fp32(fp32_model_dir: Path) -> OnnxEmbeddingModel:
    return OnnxEmbeddingModel.load(fp32_model_dir)


def test_fp32_and_int8_directories_load_side_by_side_in_one_process(
    fp32: OnnxEmbeddingModel, int8_model_dir: Path
) -> None:
    int8 = OnnxEmbeddingModel.load(int8_model_dir, intra_op_threads=2)
    assert int8.manifest.quantization == "int8"
    assert int8.manifest.base_model_id == fp32.manifest.model_id
    assert int8.manifest.model_id != fp32.manifest.model_id
    assert int8.manifest.onnx_sha256 != fp32.manifest.onnx_sha256
    texts = ["pricing plans for small teams", "Wie spät ist es?", "def main(): pass"]
    a, _ = fp32.embed(texts, "document")
    b, _ = int8.embed(texts, "document")
    assert np.all(np.sum(a * b, axis=1) >= 0.98)


def test_a_query_prefix_in_the_manifest_changes_queries_but_not_documents(
    fp32: OnnxEmbeddingModel, fp32_model_dir: Path, tmp_path: Path
) -> None:
    e5_style = OnnxEmbeddingModel.load(
        _variant_of(fp32_model_dir, tmp_path / "e5", model_id="e5-style", query_prefix="query: ")
    )
    same_document = float(
        fp32.embed(QUERY, "document")[0][0] @ e5_style.embed(QUERY, "document")[0][0]
    )
    assert same_document >= 0.99999
    plain_query, plain_encoded = fp32.embed(QUERY, "query")
    prefixed_query, prefixed_encoded = e5_style.embed(QUERY, "query")
    assert float(plain_query[0] @ prefixed_query[0]) < 0.999
    assert prefixed_encoded[0].tokens == plain_encoded[0].tokens + 2  # "query", ":"


def test_a_document_prefix_applies_to_documents_only(
    fp32: OnnxEmbeddingModel, fp32_model_dir: Path, tmp_path: Path
) -> None:
    passage = OnnxEmbeddingModel.load(
        _variant_of(fp32_model_dir, tmp_path / "p", model_id="p", document_prefix="passage: ")
    )
    assert float(fp32.embed(QUERY, "query")[0][0] @ passage.embed(QUERY, "query")[0][0]) >= 0.99999
    assert (
        float(fp32.embed(QUERY, "document")[0][0] @ passage.embed(QUERY, "document")[0][0]) < 0.999
    )


def test_cls_pooling_from_the_manifest_uses_the_first_token(
    fp32: OnnxEmbeddingModel, fp32_model_dir: Path, tmp_path: Path
) -> None:
    bge_style = OnnxEmbeddingModel.load(
        _variant_of(fp32_model_dir, tmp_path / "bge", model_id="bge-style", pooling="cls")
    )
    texts = ["a first text", "and a second, longer one with more words in it"]
    cls_vectors, _ = bge_style.embed(texts, "document")
    mean_vectors, _ = fp32.embed(texts, "document")
    np.testing.assert_allclose(np.linalg.norm(cls_vectors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(cls_vectors * mean_vectors, axis=1) < 0.99)
    # [CLS] attends to the whole text, so it is still its own vector per text.
    assert float(cls_vectors[0] @ cls_vectors[1]) < 0.99


def test_normalize_false_returns_the_raw_pooled_vector(fp32: OnnxEmbeddingModel) -> None:
    encoded = fp32.encode(QUERY, "document")
    raw = fp32.infer(encoded, normalize=False)
    unit = fp32.infer(encoded)
    assert abs(float(np.linalg.norm(raw[0])) - 1.0) > 0.01
    np.testing.assert_allclose(raw[0] / np.linalg.norm(raw[0]), unit[0], atol=1e-6)


def test_a_text_past_the_window_keeps_its_start_and_its_end_token(
    fp32: OnnxEmbeddingModel,
) -> None:
    (encoded,) = fp32.encode(["word " * 600], "document")
    assert encoded.truncated
    assert encoded.tokens == 602
    assert len(encoded.ids) == fp32.manifest.max_tokens == 256
    assert encoded.ids.dtype == np.int64
    assert (int(encoded.ids[0]), int(encoded.ids[-1])) == (101, 102)  # [CLS] ... [SEP]
    (exact,) = fp32.encode(["word " * 254], "document")
    assert (exact.tokens, exact.truncated, len(exact.ids)) == (256, False, 256)


def test_worker_threads_sharing_one_model_get_the_same_vectors(
    fp32: OnnxEmbeddingModel,
) -> None:
    texts = [f"text number {i} " * (1 + i % 7) for i in range(24)]
    expected, _ = fp32.embed(texts, "document")
    batches = [texts[i : i + 6] for i in range(0, 24, 6)] * 3
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda b: fp32.embed(b, "document")[0], batches))
    for index, vectors in enumerate(results):
        start = (index % 4) * 6
        np.testing.assert_allclose(vectors, expected[start : start + 6], atol=1e-5)


def test_a_directory_without_model_onnx_is_refused_naming_the_file(
    fp32_model_dir: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp32_model_dir, broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelFileMissing, match=r"has no model\.onnx"):
        OnnxEmbeddingModel.load(broken)


def test_a_graph_that_is_not_the_one_in_the_manifest_is_refused(
    fp32_model_dir: Path, int8_model_dir: Path, tmp_path: Path
) -> None:
    swapped = tmp_path / "swapped"
    shutil.copytree(fp32_model_dir, swapped)
    shutil.copyfile(int8_model_dir / "model.onnx", swapped / "model.onnx")
    with pytest.raises(ModelChecksumMismatch, match=r"model\.onnx"):
        OnnxEmbeddingModel.load(swapped)


def test_a_manifest_with_a_misspelt_field_is_refused_naming_it(
    fp32_model_dir: Path, tmp_path: Path
) -> None:
    typo = tmp_path / "typo"
    shutil.copytree(fp32_model_dir, typo)
    raw = json.loads((typo / "manifest.json").read_text())
    raw["pooling_mode"] = raw.pop("pooling")
    (typo / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestInvalid, match="pooling_mode"):
        OnnxEmbeddingModel.load(typo)
