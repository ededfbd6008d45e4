"""The embedder's core: validate a request, route it to a model, batch, pool, normalise.

Models sit behind :class:`EmbeddingModel` (the ONNX runtime implements it); each model
gets its own :class:`MicroBatcher`. Batches always carry raw pooled vectors and
normalisation is applied per request, so callers with different wishes share batches.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from semantic.common.embedding import InputType
from semantic.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from semantic.embedder.batcher import BatchPolicy, MicroBatcher
from semantic.embedder.model.errors import ModelError
from semantic.embedder.model.manifest import Manifest, model_id_problem
from semantic.embedder.settings import EmbedderSettings


class Encoded(Protocol):
    """One tokenised text (see the ONNX model's ``Encoded``)."""

    @property
    def ids(self) -> np.ndarray[Any, Any]: ...
    @property
    def tokens(self) -> int: ...
    @property
    def truncated(self) -> bool: ...


class EmbeddingModel(Protocol):
    """What the engine needs from a model; the ONNX runtime provides it."""

    @property
    def manifest(self) -> Manifest: ...

    def encode(self, texts: Sequence[str], input_type: InputType) -> Sequence[Encoded]: ...

    def infer(
        self, batch: Sequence[Any], *, normalize: bool | None = ..., shared: bool = ...
    ) -> np.ndarray[Any, Any]: ...


@dataclass(frozen=True)
class EmbedLimits:
    """Limits of one Embed call (texts per request, characters per text), checked before
    any work starts; the service reports them in ``Info`` as ``EmbedLimits``. Not the
    search API's input limits (``semantic.wire.convert.Limits``): those bound nodes,
    queries and filters, these what one call may ask of a model."""

    max_texts: int = EmbedderSettings.model_fields["embedder_max_texts_per_request"].default
    max_chars: int = EmbedderSettings.model_fields["embedder_max_chars_per_text"].default


class ModelOutputInvalid(ModelError):
    """A served model produced a non-finite vector: a fault of the model, not of the
    request (INTERNAL, logged), and never handed to a caller."""

    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        super().__init__(f"model {model_id} produced a non-finite vector (NaN or inf)")


@dataclass(frozen=True)
class Embedding:
    """The answer to one embed call."""

    vectors: np.ndarray[Any, Any]  # float32 [count, dim]
    tokens: list[int]
    truncated: list[bool]
    normalized: bool
    manifest: Manifest


class EmbeddingEngine:
    """Serves one or more models, at most ``max_models``; one is the default."""

    def __init__(
        self,
        models: Sequence[EmbeddingModel],
        *,
        executor: Executor,
        policy: BatchPolicy,
        limits: EmbedLimits,
        default_model: str | None = None,
        max_models: int | None = None,
    ) -> None:
        if not models:
            raise ValueError("at least one model is required")
        self.max_models = max_models if max_models is not None else len(models)
        if len(models) > self.max_models:
            raise ValueError(f"{len(models)} models, at most {self.max_models} may be served")
        self.limits = limits
        self._models = {m.manifest.model_id: m for m in models}
        if len(self._models) != len(models):
            raise ValueError("two model directories declare the same model_id")
        self.default_model = default_model or models[0].manifest.model_id
        if self.default_model not in self._models:
            raise ValueError(f"default model {self.default_model!r} is not among the served ones")
        self._executor = executor
        self._policy = policy
        self._started = False
        self._batchers = {
            model_id: _batcher(model_id, model, executor, policy)
            for model_id, model in self._models.items()
        }

    @property
    def manifests(self) -> list[Manifest]:
        """Manifests of the served models, the default first."""
        first = self._models[self.default_model].manifest
        return [first, *(m.manifest for m in self._models.values() if m.manifest is not first)]

    def start(self) -> None:
        """Start the batchers (on the running event loop)."""
        for batcher in self._batchers.values():
            batcher.start()
        self._started = True

    def served(self, model_id: str) -> Manifest | None:
        """The manifest of a served model, None when not served."""
        model = self._models.get(model_id)
        return model.manifest if model is not None else None

    def admit(self, manifest: Manifest) -> Manifest | None:
        """The served manifest when ``manifest``'s model is served already, None when it
        may be added. Raises AlreadyExists for another model under the same id and
        FailedPrecondition when ``max_models`` are served."""
        current = self._models.get(manifest.model_id)
        if current is not None:
            if current.manifest.onnx_sha256 != manifest.onnx_sha256:
                raise AlreadyExists(
                    "model",
                    f"{manifest.model_id} (served with sha256 "
                    f"{current.manifest.onnx_sha256[:12]}, the directory holds "
                    f"{manifest.onnx_sha256[:12]})",
                )
            return current.manifest
        if len(self._models) >= self.max_models:
            raise FailedPrecondition(
                f"this embedder already serves {len(self._models)} models, the most "
                f"SEMANTIC_EMBEDDER_MAX_MODELS={self.max_models} allows; a loaded model is "
                "served until the process ends: raise the limit or restart without the "
                "models no longer needed"
            )
        return None

    async def add_model(self, model: EmbeddingModel) -> bool:
        """Serve ``model`` too, after a warm-up batch; False if it is already served.

        Raises AlreadyExists when another model is served under the same id and
        FailedPrecondition when ``max_models`` are served (see :meth:`admit`).
        """
        manifest = model.manifest
        if self.admit(manifest) is not None:
            return False
        batcher = _batcher(
            manifest.model_id,
            model,
            self._executor,
            self._policy,
        )
        if self._started:
            batcher.start()
        self._models[manifest.model_id] = model
        self._batchers[manifest.model_id] = batcher
        try:
            await self._warm_up(manifest.model_id)
        except BaseException:
            del self._models[manifest.model_id]
            await self._batchers.pop(manifest.model_id).close()
            raise
        return True

    async def close(self) -> None:
        """Stop the batchers."""
        await asyncio.gather(*(b.close() for b in self._batchers.values()))

    async def warm_up(self) -> None:
        """Warm every model up (see :meth:`_warm_up`)."""
        for model_id in self._models:
            await self._warm_up(model_id)

    async def _warm_up(self, model_id: str) -> None:
        """Run the largest model call a batch can make on each of the model's sessions, then
        answer one small batch through the batcher. onnxruntime keeps the memory a call
        needed for the next ones, so the process reaches its working size here, at start,
        rather than creeping up under load as ever larger shapes arrive."""
        model = self._models[model_id]
        loop = asyncio.get_running_loop()
        window = model.manifest.max_tokens
        texts = ["warm " * window] * max(1, self._policy.group_tokens // window)
        batch = await loop.run_in_executor(self._executor, model.encode, texts, "document")
        solo = functools.partial(model.infer, batch, shared=False)
        side_by_side = functools.partial(model.infer, batch, shared=True)
        await loop.run_in_executor(self._executor, solo)
        await asyncio.gather(  # under load, every worker may run on the shared session at once
            *(
                loop.run_in_executor(self._executor, side_by_side)
                for _ in range(max(1, self._policy.workers))
            )
        )
        await self.embed(["warm-up", "a slightly longer warm-up text"], model_id=model_id)

    async def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: InputType = "document",
        model_id: str = "",
        truncate: bool = True,
        normalize: bool | None = None,
    ) -> Embedding:
        """Embed ``texts``; raises InvalidArgument naming the field, Overloaded when full."""
        model = self._model(model_id)
        self._check_texts(texts)
        loop = asyncio.get_running_loop()
        encoded = await loop.run_in_executor(None, model.encode, list(texts), input_type)
        window = model.manifest.max_tokens
        if not truncate:
            for i, enc in enumerate(encoded):
                if enc.truncated:
                    raise InvalidArgument(
                        f"texts[{i}]",
                        f"{enc.tokens} word-pieces exceed the model's window of {window} "
                        "(truncation is TRUNCATION_NONE)",
                    )
        rows = await self._batchers[model.manifest.model_id].embed(encoded)
        vectors = np.vstack(rows).astype(np.float32, copy=False)
        if not np.isfinite(vectors).all():
            raise ModelOutputInvalid(model.manifest.model_id)
        do_normalize = model.manifest.normalize if normalize is None else normalize
        if do_normalize:
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = vectors / np.maximum(norms, 1e-12)
        return Embedding(
            vectors=vectors,
            tokens=[enc.tokens for enc in encoded],
            truncated=[enc.truncated for enc in encoded],
            normalized=do_normalize,
            manifest=model.manifest,
        )

    def _model(self, model_id: str) -> EmbeddingModel:
        if model_id:
            problem = model_id_problem(model_id)
            if problem is not None:
                raise InvalidArgument("model_id", f"{problem} (or empty for the default model)")
        model = self._models.get(model_id or self.default_model)
        if model is None:
            served = ", ".join(sorted(self._models))
            raise InvalidArgument("model_id", f"unknown model {model_id!r}; served: {served}")
        return model

    def _check_texts(self, texts: Sequence[str]) -> None:
        if not texts:
            raise InvalidArgument("texts", "must hold at least one text")
        if len(texts) > self.limits.max_texts:
            raise InvalidArgument(
                "texts", f"{len(texts)} texts, at most {self.limits.max_texts} per request"
            )
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidArgument(f"texts[{i}]", "must not be empty")
            if len(text) > self.limits.max_chars:
                raise InvalidArgument(
                    f"texts[{i}]",
                    f"{len(text)} characters, at most {self.limits.max_chars} per text",
                )


SMALL_BATCH_TOKENS = {"int8": 64}
"""Per quantization: padded word-pieces up to which a lone batch runs on the shared (fewer
threads) session. Measured on the 2-core development machine (VNNI): one short query takes
1.24 ms on the int8 graph with one thread and 1.25 with two, but 2.88 against 1.79 on fp32;
and after a two-thread call onnxruntime's pool threads spin on both cores for a while,
which cost the search service's next step (the query's dense statement) about 1.5 ms. With
int8 queries single-threaded, `semantic bench search` text p50 went from 8.73 to 8.15 ms and
p99 from 16.0 to 11.3 ms; fp32 keeps both threads (11.07 against 10.72 ms)."""


def _batcher(
    model_id: str, model: EmbeddingModel, executor: Executor, policy: BatchPolicy
) -> MicroBatcher[Any]:
    """The model's batcher: raw pooled vectors, solo or shared inference."""
    small = SMALL_BATCH_TOKENS.get(model.manifest.quantization, 0)
    return MicroBatcher[Any](
        model_id,
        functools.partial(model.infer, normalize=False),
        executor,
        replace(policy, small_batch_tokens=small) if small else policy,
        infer_shared=functools.partial(model.infer, normalize=False, shared=True),
    )
