"""Settings of the embedder service (environment variables SEMANTIC_EMBEDDER_*)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from semantic.common.auth import AuthSettings
from semantic.common.settings import BaseServiceSettings
from semantic.embedder.precision import Precision, choose, default_dirs

DEFAULT_MODEL_DIR = Path("models/all-minilm-l6-v2")


def _default_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)))


def shared_threads(intra_op_threads: int, workers: int) -> int:
    """The default threads of a batch running beside others: the solo batch's threads split
    among the workers."""
    return max(1, intra_op_threads // workers)


class EmbedderSettings(BaseServiceSettings, AuthSettings):
    """Every field reads SEMANTIC_<FIELD NAME>, e.g. SEMANTIC_EMBEDDER_MODEL_DIRS.

    The SEMANTIC_AUTH_* fields are the other services' (see ``semantic.common.tokens``):
    LoadModel needs an admin token without a tenant claim; Embed, EmbedStream and Info
    need none.
    """

    embedder_model_dirs: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_MODEL_DIR],
        description="Comma-separated model directories to serve; the first is the default "
        "(default: the built-in model at SEMANTIC_EMBEDDER_PRECISION).",
    )
    embedder_precision: Literal["auto", "int8", "fp32"] = Field(
        "auto",
        description="Variant of the built-in model served when SEMANTIC_EMBEDDER_MODEL_DIRS is "
        "not set: int8 (fp32 served beside it), fp32, or auto: int8 on CPUs with AVX-512 "
        "VNNI, AVX-VNNI or AMX, fp32 elsewhere.",
    )
    embedder_default_model: str | None = Field(
        None, description="Model id served when a request names none (default: the first dir)."
    )
    embedder_intra_op_threads: int = Field(
        default_factory=_default_threads,
        ge=1,
        description="onnxruntime threads of a batch that runs alone (default: the CPUs).",
    )
    embedder_workers: int = Field(
        default_factory=lambda: min(2, _default_threads()),
        ge=1,
        le=64,
        description="Batches run at the same time under load (default: 2, 1 on one CPU).",
    )
    embedder_shared_threads: int | None = Field(
        None,
        ge=1,
        description="onnxruntime threads of a batch running beside others "
        "(default: intra-op threads / workers, at least 1).",
    )
    embedder_token_budget: int = Field(
        8192, ge=256, description="Padded word-pieces per batch (texts x longest text)."
    )
    embedder_max_batch_texts: int = Field(64, ge=1, description="Texts per batch at most.")
    embedder_max_wait_ms: float = Field(
        2.0, ge=0, description="How long a batch waits to fill after its oldest text arrived."
    )
    embedder_max_pending: int = Field(
        4096, ge=1, description="Texts queued before new calls get RESOURCE_EXHAUSTED."
    )
    embedder_max_texts_per_request: int = Field(256, ge=1, description="Texts per Embed call.")
    embedder_max_chars_per_text: int = Field(
        32768, ge=1, description="Characters per text; longer input is INVALID_ARGUMENT."
    )

    embedder_allow_load: bool = Field(
        True, description="Whether LoadModel may load further model directories at run time."
    )
    embedder_model_roots: Annotated[list[Path] | None, NoDecode] = Field(
        None,
        description="Comma-separated folders LoadModel may load model directories from "
        "(default: the folders holding SEMANTIC_EMBEDDER_MODEL_DIRS).",
    )
    embedder_max_models: int = Field(
        3,
        ge=1,
        le=64,
        description="Models served at once, the configured ones included; LoadModel beyond "
        "it is FAILED_PRECONDITION (a loaded model stays until the process ends).",
    )

    @property
    def shared_threads(self) -> int:
        """Threads of a batch that runs beside others."""
        if self.embedder_shared_threads is not None:
            return self.embedder_shared_threads
        return shared_threads(self.embedder_intra_op_threads, self.embedder_workers)

    def served_model_dirs(self, cpu_flags: frozenset[str]) -> list[Path]:
        """The directories to load at start, the default first: as configured, else the
        built-in model at the precision chosen for a CPU with ``cpu_flags``."""
        if "embedder_model_dirs" in self.model_fields_set:
            return list(self.embedder_model_dirs)
        precision: Precision = self.embedder_precision
        dirs = default_dirs(DEFAULT_MODEL_DIR, choose(precision, DEFAULT_MODEL_DIR, cpu_flags))
        return dirs[: self.embedder_max_models]  # with one model allowed, int8 alone

    @property
    def model_roots(self) -> list[Path]:
        """Folders LoadModel may load from: as configured, else the model dirs' parents."""
        if self.embedder_model_roots is not None:
            return list(self.embedder_model_roots)
        return list(dict.fromkeys(path.parent for path in self.embedder_model_dirs))

    @field_validator("embedder_model_dirs", "embedder_model_roots", mode="before")
    @classmethod
    def _split_dirs(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("must name at least one directory")
        return value

    @model_validator(mode="after")
    def _models_fit(self) -> EmbedderSettings:
        if "embedder_model_dirs" in self.model_fields_set and self.embedder_precision != "auto":
            raise ValueError(
                "SEMANTIC_EMBEDDER_PRECISION picks the built-in model's directories; with "
                "SEMANTIC_EMBEDDER_MODEL_DIRS set, list the directories to serve instead"
            )
        if len(self.embedder_model_dirs) > self.embedder_max_models:
            raise ValueError(
                f"SEMANTIC_EMBEDDER_MODEL_DIRS names {len(self.embedder_model_dirs)} "
                f"directories, SEMANTIC_EMBEDDER_MAX_MODELS allows {self.embedder_max_models}"
            )
        return self
