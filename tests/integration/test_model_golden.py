"""The built model directories against sentence-transformers' reference vectors:
fp32 exact, int8 close, both independent of batch-mates."""

import json
from pathlib import Path

import numpy as np
import pytest

from semantic.embedder.model.onnx_model import OnnxEmbeddingModel

REFERENCE = Path(__file__).parent.parent / "data" / "minilm-reference.jsonl"
ROWS = [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]
TEXTS = [row["text"] for row in ROWS]
EXPECTED = np.array([row["embedding"] for row in ROWS], dtype=np.float64)
EXPECTED /= np.linalg.norm(EXPECTED, axis=1, keepdims=True)
# Minimum cosine of a text embedded alone vs. inside a padded batch of all reference texts.
BATCH_INDEPENDENCE = {"fp32": 0.99999, "int8": 0.999}


@pytest.fixture(scope="module")
def fp32(fp32_model_dir: Path) -> OnnxEmbeddingModel:
    return OnnxEmbeddingModel.load(fp32_model_dir)


@pytest.fixture(scope="module")
def int8(int8_model_dir: Path) -> OnnxEmbeddingModel:
    return OnnxEmbeddingModel.load(int8_model_dir)


def _cosines(vectors: np.ndarray) -> np.ndarray:
    return np.sum(vectors.astype(np.float64) * EXPECTED, axis=1)


def test_fp32_reproduces_every_reference_vector(fp32: OnnxEmbeddingModel) -> None:
    vectors, _ = fp32.embed(TEXTS, "document")
    cosines = _cosines(vectors)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.9999, TEXTS[worst][:60]


def test_fp32_reports_the_reference_token_counts_and_truncation(
    fp32: OnnxEmbeddingModel,
) -> None:
    encoded = fp32.encode(TEXTS, "document")
    assert [e.tokens for e in encoded] == [row["tokens"] for row in ROWS]
    assert [e.truncated for e in encoded] == [row["truncated"] for row in ROWS]
    assert any(e.truncated for e in encoded)  # the file holds texts past the window


def test_vectors_have_unit_length(fp32: OnnxEmbeddingModel, int8: OnnxEmbeddingModel) -> None:
    for model in (fp32, int8):
        vectors, _ = model.embed(TEXTS, "document")
        assert vectors.dtype == np.float32
        assert vectors.shape == (len(TEXTS), 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_int8_stays_within_0_98_cosine_of_every_reference_vector(
    int8: OnnxEmbeddingModel,
) -> None:
    vectors, encoded = int8.embed(TEXTS, "document")
    cosines = _cosines(vectors)
    worst = int(np.argmin(cosines))
    assert cosines[worst] >= 0.98, (TEXTS[worst][:60], float(cosines[worst]))
    assert [e.tokens for e in encoded] == [row["tokens"] for row in ROWS]


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_a_text_alone_equals_itself_inside_a_padded_batch(
    variant: str, request: pytest.FixtureRequest
) -> None:
    model: OnnxEmbeddingModel = request.getfixturevalue(variant)
    # The batch mixes one-character texts with texts past the window: most rows are padded.
    batch, encoded = model.embed(TEXTS, "document")
    assert len({len(e.ids) for e in encoded}) > 10
    for i, text in enumerate(TEXTS):
        alone, _ = model.embed([text], "document")
        cosine = float(alone[0].astype(np.float64) @ batch[i])
        assert cosine >= BATCH_INDEPENDENCE[variant], (text[:60], cosine)


def test_int8_vector_does_not_depend_on_its_batch_mates(int8: OnnxEmbeddingModel) -> None:
    text = "How do I reset my password?"
    quiet, _ = int8.embed([text, "ok"], "document")
    # A batch-mate with very large activations would change a per-batch activation scale.
    loud, _ = int8.embed([text, "!!!! " * 200, "🙂" * 50], "query")
    assert float(quiet[0].astype(np.float64) @ loud[0]) >= 0.999


@pytest.mark.parametrize("variant", ["fp32_model_dir", "int8_model_dir"])
def test_the_shared_session_gives_the_solo_sessions_vectors(
    variant: str, request: pytest.FixtureRequest
) -> None:
    """Batches running side by side use a second, single-threaded session: same vectors."""
    model = OnnxEmbeddingModel.load(
        request.getfixturevalue(variant), intra_op_threads=2, shared_threads=1
    )
    encoded = model.encode(TEXTS, "document")
    solo = model.infer(encoded).astype(np.float64)
    shared = model.infer(encoded, shared=True).astype(np.float64)
    assert np.min(np.sum(solo * shared, axis=1)) >= 0.99999


def test_the_rewrites_left_out_do_not_change_the_int8_graphs_output(
    int8: OnnxEmbeddingModel,
) -> None:
    """The embedder opens graphs without onnxruntime's BiasGelu rewrite (it is slower):
    the int8 graph then gives exactly what it gives with every rewrite."""
    from semantic.tools.bench.precision import rewrites_cost

    report = rewrites_cost(int8, rounds=1)
    assert report["disabled"] == ["BiasGeluFusion"]
    assert report["max_abs_difference"] == 0.0
