"""The ONNX runtime of one model directory (model.onnx + tokenizer.json + manifest.json).

Tokenization is the model's own tokenizer.json, counted without truncation (so
``tokens`` is the word-piece count before truncation) then cut BERT-style to the
window, keeping [CLS] ... [SEP]. Batches are padded on the right to their longest
text, pooled with the attention mask as the manifest says, and optionally
L2-normalised. Sessions are thread-safe; ``infer`` runs on the caller's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from semantic.embedder.model.errors import (
    ModelChecksumMismatch,
    ModelFileMissing,
    ModelIncompatible,
)
from semantic.embedder.model.manifest import (
    ONNX_FILE,
    TOKENIZER_FILE,
    InputType,
    Manifest,
    file_sha256,
)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenised text, ready for a batch."""

    ids: np.ndarray[Any, Any]  # int64, truncated to the window, [CLS] ... [SEP]
    tokens: int  # word-pieces before truncation, special tokens included
    truncated: bool


class OnnxEmbeddingModel:
    """Encode texts and run batches through one ONNX graph."""

    def __init__(
        self, manifest: Manifest, session: ort.InferenceSession, tokenizer: Tokenizer
    ) -> None:
        self.manifest = manifest
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {i.name for i in session.get_inputs()}
        sep = tokenizer.token_to_id("[SEP]")
        self._sep = int(sep) if sep is not None else None
        pad = tokenizer.token_to_id("[PAD]")
        self._pad = int(pad) if pad is not None else 0

    @classmethod
    def load(
        cls, model_dir: Path, *, intra_op_threads: int = 1, verify_checksum: bool = True
    ) -> OnnxEmbeddingModel:
        """Load a model directory; errors name the missing or inconsistent file."""
        model_dir = Path(model_dir)
        manifest = Manifest.load(model_dir)
        onnx_path = model_dir / ONNX_FILE
        tokenizer_path = model_dir / TOKENIZER_FILE
        for path in (onnx_path, tokenizer_path):
            if not path.is_file():
                raise ModelFileMissing(path)
        if verify_checksum:
            actual = file_sha256(onnx_path)
            if actual != manifest.onnx_sha256:
                raise ModelChecksumMismatch(onnx_path, manifest.onnx_sha256, actual)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            session = ort.InferenceSession(
                str(onnx_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelIncompatible(onnx_path, str(exc)) from exc
        if "input_ids" not in {i.name for i in session.get_inputs()}:
            raise ModelIncompatible(onnx_path, "the graph has no input named input_ids")
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return cls(manifest, session, tokenizer)

    def encode(self, texts: Sequence[str], input_type: InputType) -> list[Encoded]:
        """Tokenise with the manifest's prefix for ``input_type``; cut to the window."""
        prefix = self.manifest.prefix(input_type)
        batch = [prefix + t for t in texts] if prefix else list(texts)
        window = self.manifest.max_tokens
        out: list[Encoded] = []
        for encoding in self._tokenizer.encode_batch(batch):
            ids = encoding.ids
            if len(ids) > window:
                kept = ids[: window - 1] + ([self._sep] if self._sep is not None else ids[-1:])
                out.append(Encoded(np.asarray(kept, np.int64), len(ids), True))
            else:
                out.append(Encoded(np.asarray(ids, np.int64), len(ids), False))
        return out

    def infer(
        self, batch: Sequence[Encoded], *, normalize: bool | None = None
    ) -> np.ndarray[Any, Any]:
        """Pooled (and, per ``normalize`` or the manifest, L2-normalised) vectors [n, dim]."""
        if not batch:
            return np.zeros((0, self.manifest.dim), np.float32)
        longest = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), longest), self._pad, np.int64)
        mask = np.zeros((len(batch), longest), np.int64)
        for row, encoded in enumerate(batch):
            ids[row, : len(encoded.ids)] = encoded.ids
            mask[row, : len(encoded.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        pooled = self._pool(np.asarray(hidden, np.float32), mask)
        if self.manifest.normalize if normalize is None else normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return pooled.astype(np.float32, copy=False)

    def embed(
        self, texts: Sequence[str], input_type: InputType = "document"
    ) -> tuple[np.ndarray[Any, Any], list[Encoded]]:
        """Encode and infer ``texts`` as one batch."""
        encoded = self.encode(texts, input_type)
        return self.infer(encoded), encoded

    def _pool(
        self, hidden: np.ndarray[Any, Any], mask: np.ndarray[Any, Any]
    ) -> np.ndarray[Any, Any]:
        if hidden.ndim == 2:  # the graph pooled already
            return hidden
        weights = mask[:, :, None].astype(np.float32)
        if self.manifest.pooling == "cls":
            return np.asarray(hidden[:, 0, :])
        if self.manifest.pooling == "max":
            return np.asarray(np.where(weights > 0, hidden, -np.inf).max(axis=1))
        summed = (hidden * weights).sum(axis=1)
        return np.asarray(summed / np.maximum(weights.sum(axis=1), 1e-9))
