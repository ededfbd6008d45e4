"""gRPC client of the embedder service, used by search and the indexer: the core's
``Embedder`` port (:mod:`semantic.core.ports`, which defines the values it returns).

Splits large calls to the server's per-request limit, retries UNAVAILABLE with the one
retry helper (embedding is idempotent), and turns gRPC failures into domain errors:
UNAVAILABLE / DEADLINE_EXCEEDED -> DependencyUnavailable, INVALID_ARGUMENT ->
InvalidArgument (field path kept), RESOURCE_EXHAUSTED -> Overloaded; ALREADY_EXISTS,
PERMISSION_DENIED, UNAUTHENTICATED and FAILED_PRECONDITION (LoadModel refused, a model
limit) -> FailedPrecondition.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from typing import TypeVar

import grpc
import numpy as np

from semantic.common.embedding import InputType
from semantic.common.errors import (
    DependencyUnavailable,
    FailedPrecondition,
    InvalidArgument,
    Overloaded,
)
from semantic.common.retry import retry_async
from semantic.core.ports import Embedded, ModelDescription
from semantic.v1 import embedder_pb2 as pb
from semantic.v1 import embedder_pb2_grpc

T = TypeVar("T")


class EmbedderClient:
    """Async client; one channel, reused by every call."""

    def __init__(
        self,
        address: str,
        *,
        timeout_s: float = 120.0,
        retry_s: float = 30.0,
        query_timeout_s: float = 10.0,
    ) -> None:
        """``timeout_s`` per call and ``retry_s`` of retries for documents (a batch of long
        texts may wait behind others); ``query_timeout_s`` for a query's embedding, retries
        included: a search waits no longer for an embedder that stopped answering."""
        self._address = address
        self._timeout = timeout_s
        self._retry = retry_s
        self._query_timeout = query_timeout_s
        self._channel = grpc.aio.insecure_channel(
            address,
            options=[
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                # Spread calls over every address the name resolves to (a headless
                # Service's pods), not only the first one.
                ("grpc.lb_policy_name", "round_robin"),
            ],
        )
        self._stub = embedder_pb2_grpc.EmbedderStub(self._channel)
        self._max_texts = 64

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def default_model(self, *, wait_s: float = 0.0) -> ModelDescription:
        """The default model; with ``wait_s``, keep retrying until the embedder answers."""

        async def info() -> pb.InfoResponse:
            return await self._call(self._stub.Info(pb.InfoRequest(), timeout=self._timeout))

        reply = await retry_async(info, what="embedder", timeout_s=max(wait_s, 0.001))
        self._max_texts = max(1, reply.limits.max_texts_per_request)
        model = next(m for m in reply.models if m.id == reply.default_model_id)
        return _description(model)

    async def models(self) -> list[ModelDescription]:
        """Every model the embedder serves, the default first."""
        reply = await self._call(self._stub.Info(pb.InfoRequest(), timeout=self._timeout))
        return [_description(m) for m in reply.models]

    async def load_model(
        self, model_dir: str, *, authorization: str | None = None
    ) -> ModelDescription:
        """Have the embedder load and serve a model directory (idempotent).

        ``authorization`` is the ``authorization`` metadata to send (``Bearer <JWT>``):
        LoadModel needs an admin token when the embedder checks tokens.
        """
        metadata = (("authorization", authorization),) if authorization else None
        reply = await self._call(
            self._stub.LoadModel(
                pb.LoadModelRequest(model_dir=model_dir), timeout=self._timeout, metadata=metadata
            )
        )
        return _description(reply.model)

    async def embed(
        self, texts: Sequence[str], *, input_type: InputType = "document", model_id: str = ""
    ) -> Embedded:
        """Embed ``texts`` (any number; split to the server's limit and sent concurrently)."""
        kind = pb.INPUT_TYPE_QUERY if input_type == "query" else pb.INPUT_TYPE_DOCUMENT
        parts = [texts[i : i + self._max_texts] for i in range(0, len(texts), self._max_texts)]
        if len(parts) == 1:  # a query: no task to schedule around the one call
            replies = [await self._embed_part(list(parts[0]), kind, model_id)]
        else:
            replies = await asyncio.gather(
                *(self._embed_part(list(part), kind, model_id) for part in parts)
            )
        if not replies:
            return Embedded(np.zeros((0, 0), np.float32), [], [], model_id, "")
        vectors = np.vstack(
            [np.frombuffer(r.vectors, dtype="<f4").reshape(r.count, r.dim) for r in replies]
        )
        return Embedded(
            vectors=vectors,
            tokens=[t for r in replies for t in r.tokens],
            truncated=[t for r in replies for t in r.truncated],
            model_id=replies[0].model_id,
            model_sha256=replies[0].model_sha256,
        )

    async def _embed_part(
        self, texts: list[str], kind: pb.InputType.ValueType, model_id: str
    ) -> pb.EmbedResponse:
        request = pb.EmbedRequest(texts=texts, input_type=kind, model_id=model_id)
        query = kind == pb.INPUT_TYPE_QUERY
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self._query_timeout if query else math.inf)

        async def call() -> pb.EmbedResponse:
            timeout = min(self._timeout, deadline - loop.time())
            if timeout <= 0:
                raise DependencyUnavailable("embedder", "no answer to a query's embedding in time")
            return await self._call(self._stub.Embed(request, timeout=timeout))

        budget = min(self._retry, self._query_timeout) if query else self._retry
        return await retry_async(call, what="embedder", timeout_s=budget, max_wait_s=1.0)

    async def _call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            details = exc.details() or code.name
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise DependencyUnavailable("embedder", details) from exc
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise Overloaded("embedder") from exc
            if code is grpc.StatusCode.INVALID_ARGUMENT:
                field, _, problem = details.partition(": ")
                raise InvalidArgument(field, problem or details) from exc
            if code is grpc.StatusCode.ALREADY_EXISTS:
                raise FailedPrecondition(f"embedder: {details}") from exc
            if code in (
                grpc.StatusCode.PERMISSION_DENIED,
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.FAILED_PRECONDITION,
            ):
                raise FailedPrecondition(f"embedder: {details}") from exc
            raise DependencyUnavailable("embedder", f"{code.name}: {details}") from exc


def _description(model: pb.ModelInfo) -> ModelDescription:
    return ModelDescription(model.id, model.sha256, model.dim, model.max_tokens)
