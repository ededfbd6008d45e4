"""Loading model directories at run time (LoadModel): from where, how many, one at a time.

    ModelLoading.load(engine, model_dir)
        refused        -> PermissionDenied (loading switched off, or no key to check tokens)
        model_dir      -> InvalidArgument unless it names a folder inside a model root once
                          symlinks are resolved (no NUL, at most 4096 characters)
        manifest.json  -> read first: a model already served is returned as it is, another
                          model under a served id is AlreadyExists, a full engine
                          (SEMANTIC_EMBEDDER_MAX_MODELS) is FailedPrecondition
        load           -> in a thread, checked against the graph (see ``onnx_model``), then
                          served after a warm-up batch; a bad directory is InvalidArgument
                          naming ``model_dir`` and the file at fault

Who may call LoadModel is the auth interceptor's business (role admin, no tenant claim).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

from semantic.common.errors import InvalidArgument, PermissionDenied
from semantic.embedder.engine import EmbeddingEngine, EmbeddingModel
from semantic.embedder.model.errors import ModelError
from semantic.embedder.model.manifest import Manifest

log = structlog.get_logger(__name__)

ModelLoader = Callable[[Path], EmbeddingModel]
"""Loads a model directory (blocking; run in a thread)."""

MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class Loaded:
    """The model LoadModel answers with."""

    manifest: Manifest
    loaded: bool
    """True when this call loaded it; False when it was served already."""


class ModelLoading:
    """Admits and loads model directories asked for at run time, one load at a time."""

    def __init__(
        self, loader: ModelLoader, roots: Sequence[Path], *, refusal: str | None = None
    ) -> None:
        self._loader = loader
        self.roots = tuple(Path(root).resolve() for root in roots)
        self.refusal = refusal
        self._lock = asyncio.Lock()  # models are large: one load at a time

    def resolve(self, model_dir: str) -> Path:
        """The real path of ``model_dir``; InvalidArgument unless it is inside a root."""
        if not model_dir.strip():
            raise InvalidArgument("model_dir", "must name a model directory")
        if "\x00" in model_dir:
            raise InvalidArgument("model_dir", "must not contain NUL characters")
        if len(model_dir) > MAX_PATH_CHARS:
            raise InvalidArgument("model_dir", f"is longer than {MAX_PATH_CHARS} characters")
        try:
            path = Path(model_dir).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable parent
            raise InvalidArgument("model_dir", f"cannot be resolved: {exc}") from exc
        if not any(path.is_relative_to(root) for root in self.roots):
            roots = ", ".join(str(root) for root in self.roots)
            raise InvalidArgument(
                "model_dir",
                f"{model_dir} is outside the folders models may be loaded from ({roots}; "
                "SEMANTIC_EMBEDDER_MODEL_ROOTS)",
            )
        return path

    async def load(self, engine: EmbeddingEngine, model_dir: str) -> Loaded:
        """Serve the model of ``model_dir`` on ``engine`` (idempotent)."""
        if self.refusal is not None:
            raise PermissionDenied(self.refusal)
        path = self.resolve(model_dir)
        async with self._lock:
            try:
                manifest = await asyncio.to_thread(Manifest.load, path)
                served = engine.admit(manifest)
                if served is not None:
                    log.info("model_already_served", model=served.model_id, path=str(path))
                    return Loaded(served, loaded=False)
                model = await asyncio.to_thread(self._loader, path)
                loaded = await engine.add_model(model)
            except ModelError as exc:
                raise InvalidArgument("model_dir", str(exc)) from exc
            except OSError as exc:
                raise InvalidArgument("model_dir", f"cannot be read: {exc}") from exc
        log.info("model_loaded" if loaded else "model_already_served", model=manifest.model_id)
        return Loaded(model.manifest, loaded=loaded)
