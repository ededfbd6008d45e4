"""The ONNX runtime of one model directory (model.onnx + tokenizer.json + manifest.json).

Tokenization uses the directory's own tokenizer.json. Every text is first counted
without truncation (``tokens`` is the word-piece count before truncation, special tokens
and prefix included); only texts longer than the window are encoded a second time with
the tokenizer's own truncation, so the cut matches the reference implementation for any
template ([CLS] ... [SEP], <s> ... </s>). Batches are padded on the right to their
longest text, pooled with the attention mask as the manifest says and optionally
L2-normalised. Everything here is safe to call from several threads at once.

Loading checks the manifest against the model itself: ``max_tokens`` within the graph's
position embeddings, the tokenizer's ids within its word-piece table (``GraphLimits``),
then one text of exactly ``max_tokens`` word-pieces must run through the graph and give a
finite ``dim``-wide vector. A manifest that promises more than the graph can do is
refused at load, never discovered by a long request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import structlog
from tokenizers import Tokenizer

from semantic.common.embedding import InputType
from semantic.embedder.model.errors import (
    ModelChecksumMismatch,
    ModelFileMissing,
    ModelIncompatible,
)
from semantic.embedder.model.graph_limits import GraphLimits
from semantic.embedder.model.manifest import (
    MANIFEST_FILE,
    ONNX_FILE,
    TOKENIZER_FILE,
    Manifest,
    file_sha256,
)

log = structlog.get_logger(__name__)

_KNOWN_INPUTS = {"input_ids", "attention_mask", "token_type_ids"}
_TOKEN_OUTPUTS = ("last_hidden_state", "token_embeddings")


@dataclass(frozen=True, slots=True)
class Encoded:
    """One tokenised text, ready for a batch."""

    ids: np.ndarray[Any, Any]
    """int64 word-piece ids, cut to the window, special tokens included."""
    tokens: int
    """Word-pieces before truncation, special tokens (and any prefix) included."""
    truncated: bool


class OnnxEmbeddingModel:
    """Encode texts and run batches through one ONNX graph."""

    def __init__(
        self,
        manifest: Manifest,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        *,
        path: Path,
        shared_session: ort.InferenceSession | None = None,
    ) -> None:
        self.manifest = manifest
        self.path = path
        self._session = session
        self._shared_session = shared_session or session
        self._inputs = {i.name for i in session.get_inputs()}
        self._output = _output_name(session, path, manifest.dim)
        self._counter = tokenizer
        self._cutter = Tokenizer.from_str(tokenizer.to_str())
        self._cutter.enable_truncation(max_length=manifest.max_tokens)
        pads = (tokenizer.token_to_id(token) for token in ("[PAD]", "<pad>"))
        self._pad = next((int(pad) for pad in pads if pad is not None), 0)

    @classmethod
    def load(
        cls,
        model_dir: Path,
        intra_op_threads: int = 1,
        *,
        shared_threads: int | None = None,
        verify_checksum: bool = True,
    ) -> OnnxEmbeddingModel:
        """Load a model directory; errors name the missing or inconsistent file.

        ``intra_op_threads`` threads work on each batch; several threads may call
        :meth:`infer` at once. ``shared_threads`` (when it differs) is the thread count of a
        second session over the same graph, for batches that run side by side
        (``infer(..., shared=True)``). ``verify_checksum`` compares model.onnx with the
        manifest's sha256 (about 0.2 s for 90 MB).
        """
        model_dir = Path(model_dir)
        onnx_path = model_dir / ONNX_FILE
        tokenizer_path = model_dir / TOKENIZER_FILE
        for path in (onnx_path, tokenizer_path):
            if not path.is_file():
                raise ModelFileMissing(path)
        manifest = Manifest.load(model_dir)
        if verify_checksum:
            actual = file_sha256(onnx_path)
            if actual != manifest.onnx_sha256:
                raise ModelChecksumMismatch(onnx_path, manifest.onnx_sha256, actual)
        limits = GraphLimits.read(model_dir)
        if limits.positions is not None and manifest.max_tokens > limits.positions:
            raise ModelIncompatible(
                model_dir / MANIFEST_FILE,
                f"max_tokens {manifest.max_tokens} exceeds the {limits.positions} position "
                "embeddings of model.onnx",
            )
        session = _session(onnx_path, intra_op_threads)
        shared = (
            _session(onnx_path, shared_threads)
            if shared_threads is not None and shared_threads != intra_op_threads
            else None
        )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # tokenizers raises untyped errors
            raise ModelIncompatible(tokenizer_path, str(exc)) from exc
        tokenizer.no_truncation()
        tokenizer.no_padding()
        ids = tokenizer.get_vocab_size(with_added_tokens=True)
        if limits.vocabulary is not None and ids > limits.vocabulary:
            raise ModelIncompatible(
                tokenizer_path,
                f"the tokenizer has {ids} token ids, the word-piece embeddings of model.onnx "
                f"{limits.vocabulary} rows",
            )
        model = cls(manifest, session, tokenizer, path=model_dir, shared_session=shared)
        model.check_window()
        log.info(
            "model_loaded",
            model_id=manifest.model_id,
            path=str(model_dir),
            sha256=manifest.onnx_sha256,
            quantization=manifest.quantization,
            intra_op_threads=intra_op_threads,
            shared_threads=shared_threads if shared is not None else intra_op_threads,
        )
        return model

    def check_window(self) -> None:
        """Run one text of exactly ``max_tokens`` word-pieces; ModelIncompatible unless the
        graph answers with one finite vector of ``dim`` values."""
        window = self.manifest.max_tokens
        ids = np.asarray(self._cutter.encode("hello " * window).ids, np.int64)
        onnx_path = self.path / ONNX_FILE
        try:
            vectors = self.infer([Encoded(ids, len(ids), False)], normalize=False)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            detail = " ".join(str(exc).split())[:300]
            raise ModelIncompatible(
                onnx_path,
                f"a text of max_tokens={window} word-pieces does not run through the graph "
                f"({detail}); lower max_tokens in {MANIFEST_FILE}",
            ) from exc
        if vectors.shape != (1, self.manifest.dim):
            raise ModelIncompatible(
                onnx_path,
                f"the graph gives vectors of shape {list(vectors.shape[1:])}; "
                f"{MANIFEST_FILE} declares dim {self.manifest.dim}",
            )
        if not np.isfinite(vectors).all():
            raise ModelIncompatible(onnx_path, "the graph gives non-finite values (NaN or inf)")

    def encode(self, texts: Sequence[str], input_type: InputType) -> list[Encoded]:
        """Tokenise with the manifest's prefix for ``input_type``; cut to the window."""
        prefix = self.manifest.prefix(input_type)
        batch = [prefix + text for text in texts] if prefix else list(texts)
        window = self.manifest.max_tokens
        counted = self._counter.encode_batch(batch)
        over = [i for i, encoding in enumerate(counted) if len(encoding.ids) > window]
        cut = dict(zip(over, self._cutter.encode_batch([batch[i] for i in over]), strict=True))
        out: list[Encoded] = []
        for i, encoding in enumerate(counted):
            tokens = len(encoding.ids)
            kept = cut[i].ids if i in cut else encoding.ids
            out.append(Encoded(np.asarray(kept, np.int64), tokens, i in cut))
        return out

    def infer(
        self, batch: Sequence[Encoded], *, normalize: bool | None = None, shared: bool = False
    ) -> np.ndarray[Any, Any]:
        """Pooled vectors float32 [len(batch), dim], L2-normalised per ``normalize`` (by
        default as the manifest says). Texts are padded on the right to the longest.
        ``shared``: run on the session meant for batches running side by side."""
        if not batch:
            return np.zeros((0, self.manifest.dim), np.float32)
        longest = max(len(e.ids) for e in batch)
        ids = np.full((len(batch), longest), self._pad, np.int64)
        mask = np.zeros((len(batch), longest), np.int64)
        for row, encoded in enumerate(batch):
            ids[row, : len(encoded.ids)] = encoded.ids
            mask[row, : len(encoded.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        feeds = {name: value for name, value in feeds.items() if name in self._inputs}
        session = self._shared_session if shared else self._session
        (hidden,) = session.run([self._output], feeds)
        pooled = self._pool(np.asarray(hidden, np.float32), mask)
        if self.manifest.normalize if normalize is None else normalize:
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            pooled = pooled / np.maximum(norms, 1e-12)
        return np.ascontiguousarray(pooled, np.float32)

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
        if self.manifest.pooling == "cls":
            return hidden[:, 0, :]
        if self.manifest.pooling == "max":
            masked: np.ndarray[Any, Any] = np.where(mask[:, :, None] > 0, hidden, -np.inf)
            return np.asarray(masked.max(axis=1))
        weights = mask.astype(np.float32)
        summed: np.ndarray[Any, Any] = np.matmul(weights[:, None, :], hidden)[:, 0, :]
        counts = np.maximum(weights.sum(axis=1, keepdims=True), 1.0)
        return np.asarray(summed / counts)


DISABLED_OPTIMIZERS = ["BiasGeluFusion"]
"""onnxruntime graph rewrites left out. BiasGelu (the bias Add after the int8 graph's
MatMulIntegerToFloat fused into the GELU) runs slower on the CPU than the Add and the
Gelu it replaces, with bit-identical outputs (`semantic bench embedder --precision-only`,
``int8_rewrites``); the fp32 graph has no such pattern (its bias is in the Gemm)."""


def _session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(
            str(onnx_path),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=DISABLED_OPTIMIZERS,
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelIncompatible(onnx_path, str(exc)) from exc


def _output_name(session: ort.InferenceSession, path: Path, dim: int) -> str:
    """The graph's token-vector output ([batch, seq, dim]) or pooled one ([batch, dim])."""
    onnx_path = path / ONNX_FILE
    inputs = [i.name for i in session.get_inputs()]
    if "input_ids" not in inputs or set(inputs) - _KNOWN_INPUTS:
        raise ModelIncompatible(
            onnx_path,
            "inputs must be input_ids and optionally attention_mask and token_type_ids; "
            f"the graph has {inputs}",
        )
    outputs = {o.name: o for o in session.get_outputs()}
    name = next((n for n in _TOKEN_OUTPUTS if n in outputs), next(iter(outputs)))
    shape = outputs[name].shape
    if len(shape) not in (2, 3) or (isinstance(shape[-1], int) and shape[-1] != dim):
        raise ModelIncompatible(
            onnx_path, f"output {name} has shape {shape}; expected [batch, seq, {dim}]"
        )
    return name
