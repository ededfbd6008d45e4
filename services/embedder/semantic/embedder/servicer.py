"""gRPC servicer of semantic.v1.Embedder: protobuf in, engine call, protobuf out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib.metadata import version
from typing import Any

from semantic.common.embedding import InputType
from semantic.common.errors import DependencyUnavailable, InvalidArgument, PermissionDenied
from semantic.embedder.engine import Embedding, EmbeddingEngine
from semantic.embedder.loading import ModelLoading
from semantic.embedder.model.manifest import Manifest
from semantic.v1 import embedder_pb2 as pb
from semantic.v1 import embedder_pb2_grpc

MAX_REQUEST_ID_CHARS = 128

_INPUT_TYPES: dict[int, InputType] = {
    pb.INPUT_TYPE_UNSPECIFIED: "document",
    pb.INPUT_TYPE_DOCUMENT: "document",
    pb.INPUT_TYPE_QUERY: "query",
}
_NORMALIZE: dict[int, bool | None] = {
    pb.NORMALIZATION_UNSPECIFIED: None,  # the model's manifest decides
    pb.NORMALIZATION_L2: True,
    pb.NORMALIZATION_NONE: False,
}
_POOLING = {"mean": pb.POOLING_MEAN, "cls": pb.POOLING_CLS, "max": pb.POOLING_MAX}
_QUANT = {"fp32": pb.QUANTIZATION_FP32, "fp16": pb.QUANTIZATION_FP16, "int8": pb.QUANTIZATION_INT8}


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    """Converts between protobuf and the engine; no logic of its own."""

    def __init__(
        self, engine: EmbeddingEngine | None = None, loading: ModelLoading | None = None
    ) -> None:
        self._ready = engine
        self._loading = loading

    def attach(self, engine: EmbeddingEngine) -> None:
        """Start answering with ``engine`` (calls before this get UNAVAILABLE)."""
        self._ready = engine

    @property
    def _engine(self) -> EmbeddingEngine:
        if self._ready is None:
            raise DependencyUnavailable("embedder", "models are still loading")
        return self._ready

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        return await self._embed(request)

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedStreamRequest], context: Any
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        async for item in request_iterator:
            if len(item.request_id) > MAX_REQUEST_ID_CHARS:
                raise InvalidArgument(
                    "request_id",
                    f"{len(item.request_id)} characters, at most {MAX_REQUEST_ID_CHARS}",
                )
            try:
                reply = await self._embed(item.embed)
            except InvalidArgument as exc:  # the contract: name the request and the field
                raise InvalidArgument(
                    exc.field, f"{exc.problem} (request_id {item.request_id!r})"
                ) from exc
            yield pb.EmbedStreamResponse(request_id=item.request_id, embed=reply)

    async def Info(self, request: pb.InfoRequest, context: Any) -> pb.InfoResponse:
        engine = self._engine
        return pb.InfoResponse(
            models=[_model_info(m, m.model_id == engine.default_model) for m in engine.manifests],
            default_model_id=engine.default_model,
            limits=pb.EmbedLimits(
                max_texts_per_request=engine.limits.max_texts,
                max_chars_per_text=engine.limits.max_chars,
            ),
            server_version=version("semantic"),
        )

    async def LoadModel(self, request: pb.LoadModelRequest, context: Any) -> pb.LoadModelResponse:
        engine = self._engine
        if self._loading is None:
            raise PermissionDenied("loading models at run time is switched off on this embedder")
        result = await self._loading.load(engine, request.model_dir)
        manifest = result.manifest
        return pb.LoadModelResponse(
            model=_model_info(manifest, manifest.model_id == engine.default_model),
            loaded=result.loaded,
        )

    async def _embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        input_type = _INPUT_TYPES.get(request.input_type)
        if input_type is None:
            raise InvalidArgument("input_type", f"unknown value {request.input_type}")
        if request.truncation not in (
            pb.TRUNCATION_UNSPECIFIED,
            pb.TRUNCATION_END,
            pb.TRUNCATION_NONE,
        ):
            raise InvalidArgument("truncation", f"unknown value {request.truncation}")
        if request.normalization not in _NORMALIZE:
            raise InvalidArgument("normalization", f"unknown value {request.normalization}")
        normalize = _NORMALIZE[request.normalization]
        result = await self._engine.embed(
            list(request.texts),
            input_type=input_type,
            model_id=request.model_id,
            truncate=request.truncation != pb.TRUNCATION_NONE,
            normalize=normalize,
        )
        return to_response(result)


def to_response(result: Embedding) -> pb.EmbedResponse:
    """Pack an engine result: little-endian float32, row-major."""
    vectors = result.vectors.astype("<f4", copy=False)
    return pb.EmbedResponse(
        vectors=vectors.tobytes(),
        count=vectors.shape[0],
        dim=vectors.shape[1],
        model_id=result.manifest.model_id,
        model_sha256=result.manifest.onnx_sha256,
        tokens=result.tokens,
        truncated=result.truncated,
        normalized=result.normalized,
    )


def _model_info(manifest: Manifest, is_default: bool) -> pb.ModelInfo:
    return pb.ModelInfo(
        id=manifest.model_id,
        sha256=manifest.onnx_sha256,
        dim=manifest.dim,
        max_tokens=manifest.max_tokens,
        pooling=_POOLING[manifest.pooling],
        normalize=manifest.normalize,
        query_prefix=manifest.query_prefix,
        document_prefix=manifest.document_prefix,
        quantization=_QUANT[manifest.quantization],
        is_default=is_default,
        base_model_id=manifest.base_model_id or "",
    )
