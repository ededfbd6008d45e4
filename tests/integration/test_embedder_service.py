"""The embedder service as a process, through gRPC: exact vectors, batching invariance,
several models, clear errors, load shedding and a clean SIGTERM."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from semantic.v1 import embedder_pb2 as pb
from semantic.v1 import embedder_pb2_grpc

REFERENCE = Path(__file__).parent.parent / "data" / "minilm-reference.jsonl"


def _env(models: list[Path], **extra: str) -> dict[str, str]:
    return {
        "SEMANTIC_EMBEDDER_MODEL_DIRS": ",".join(str(m) for m in models),
        "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        **extra,
    }


@pytest.fixture(scope="module")
def embedder(fp32_model_dir: Path, int8_model_dir: Path, service_starter: Any) -> Iterator[Any]:
    running = service_starter("semantic.embedder", _env([fp32_model_dir, int8_model_dir]))
    asyncio.run(running.wait_serving())
    yield running
    assert running.stop() == 0


@pytest.fixture
async def stub(embedder: Any) -> AsyncIterator[embedder_pb2_grpc.EmbedderStub]:
    async with grpc.aio.insecure_channel(embedder.address) as channel:
        yield embedder_pb2_grpc.EmbedderStub(channel)


def _vectors(reply: pb.EmbedResponse) -> np.ndarray:
    return np.frombuffer(reply.vectors, dtype="<f4").reshape(reply.count, reply.dim)


def _reference() -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in REFERENCE.read_text().splitlines() if line.strip()]


async def test_every_reference_text_matches_through_grpc(stub) -> None:  # type: ignore[no-untyped-def]
    rows = _reference()
    reply = await stub.Embed(pb.EmbedRequest(texts=[r["text"] for r in rows]))
    vectors = _vectors(reply)
    assert reply.dim == 384
    assert reply.count == len(rows)
    assert reply.model_id == "sentence-transformers/all-MiniLM-L6-v2"
    assert len(reply.model_sha256) == 64
    for row, vector, tokens, truncated in zip(
        rows, vectors, reply.tokens, reply.truncated, strict=True
    ):
        expected = np.asarray(row["embedding"], dtype=np.float32)
        cosine = float(vector @ expected / np.linalg.norm(vector) / np.linalg.norm(expected))
        assert cosine >= 0.9999, (row["text"][:40], cosine)
        assert tokens == row["tokens"]
        assert truncated == row["truncated"]
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


async def test_a_text_alone_equals_the_same_text_in_a_padded_batch(stub) -> None:  # type: ignore[no-untyped-def]
    rows = _reference()
    target = "The quick brown fox jumps over the lazy dog."
    alone = _vectors(await stub.Embed(pb.EmbedRequest(texts=[target])))[0]
    batch = [rows[5]["text"], target, rows[0]["text"], "x " * 400]
    inside = _vectors(await stub.Embed(pb.EmbedRequest(texts=batch)))[1]
    assert float(alone @ inside) >= 0.99999


async def test_concurrent_callers_each_get_their_own_vectors(stub) -> None:  # type: ignore[no-untyped-def]
    texts = [f"document number {i} about topic {i % 7}" for i in range(48)]
    solo = _vectors(await stub.Embed(pb.EmbedRequest(texts=texts)))
    replies = await asyncio.gather(*(stub.Embed(pb.EmbedRequest(texts=[t])) for t in texts))
    for i, reply in enumerate(replies):
        assert float(_vectors(reply)[0] @ solo[i]) >= 0.99999


async def test_int8_model_is_chosen_per_request_and_stays_close(stub) -> None:  # type: ignore[no-untyped-def]
    info = await stub.Info(pb.InfoRequest())
    ids = {m.id: m for m in info.models}
    assert info.default_model_id == "sentence-transformers/all-MiniLM-L6-v2"
    int8 = next(m for m in info.models if m.quantization == pb.QUANTIZATION_INT8)
    assert not int8.is_default
    assert ids[info.default_model_id].is_default
    rows = _reference()
    texts = [r["text"] for r in rows]
    fp32 = _vectors(await stub.Embed(pb.EmbedRequest(texts=texts)))
    reply = await stub.Embed(pb.EmbedRequest(texts=texts, model_id=int8.id))
    assert reply.model_id == int8.id
    assert reply.model_sha256 == int8.sha256
    quantized = _vectors(reply)
    assert float(np.min(np.sum(fp32 * quantized, axis=1))) >= 0.97


async def test_stream_answers_each_request_in_order(stub) -> None:  # type: ignore[no-untyped-def]
    requests = [
        pb.EmbedStreamRequest(
            request_id=f"r{i}", embed=pb.EmbedRequest(texts=[f"text {i}"] * (i + 1))
        )
        for i in range(6)
    ]
    replies = [reply async for reply in stub.EmbedStream(iter(requests))]
    assert [r.request_id for r in replies] == [f"r{i}" for i in range(6)]
    assert [r.embed.count for r in replies] == [1, 2, 3, 4, 5, 6]


async def test_info_reports_models_and_limits(stub) -> None:  # type: ignore[no-untyped-def]
    info = await stub.Info(pb.InfoRequest())
    assert len(info.models) == 2
    default = info.models[0]
    assert default.dim == 384
    assert default.max_tokens == 256
    assert default.pooling == pb.POOLING_MEAN
    assert default.normalize
    assert info.limits.max_texts_per_request > 0
    assert info.limits.max_chars_per_text > 0


async def test_normalization_none_returns_raw_pooled_vectors(stub) -> None:  # type: ignore[no-untyped-def]
    raw = await stub.Embed(
        pb.EmbedRequest(texts=["hello world"], normalization=pb.NORMALIZATION_NONE)
    )
    unit = await stub.Embed(pb.EmbedRequest(texts=["hello world"]))
    assert not raw.normalized
    assert unit.normalized
    raw_vector = _vectors(raw)[0]
    assert abs(float(np.linalg.norm(raw_vector)) - 1.0) > 1e-3
    np.testing.assert_allclose(
        raw_vector / np.linalg.norm(raw_vector), _vectors(unit)[0], atol=1e-6
    )


@pytest.mark.parametrize(
    ("request_", "field", "problem"),
    [
        (pb.EmbedRequest(texts=[]), "texts", "at least one text"),
        (pb.EmbedRequest(texts=["ok", "  "]), "texts[1]", "must not be empty"),
        (pb.EmbedRequest(texts=["word"] * 1000), "texts", "at most"),
        (pb.EmbedRequest(texts=["a" * 100_000]), "texts[0]", "characters"),
        (
            pb.EmbedRequest(texts=["hi"], model_id="bge-huge"),
            "model_id",
            "unknown model 'bge-huge'",
        ),
        (
            pb.EmbedRequest(texts=["short", "word " * 400], truncation=pb.TRUNCATION_NONE),
            "texts[1]",
            "exceed the model's window of 256",
        ),
        (pb.EmbedRequest(texts=["hi"], input_type=7), "input_type", "unknown value 7"),
    ],
    ids=[
        "no-texts",
        "empty-text",
        "too-many",
        "too-long",
        "unknown-model",
        "no-truncation",
        "bad-enum",
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stub, request_, field, problem
) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Embed(request_)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert details.startswith(f"{field}: "), details
    assert problem in details


async def test_overload_is_refused_with_resource_exhausted(
    fp32_model_dir: Path, service_starter
) -> None:  # type: ignore[no-untyped-def]
    running = service_starter(
        "semantic.embedder",
        _env(
            [fp32_model_dir],
            SEMANTIC_EMBEDDER_MAX_PENDING="64",
            SEMANTIC_EMBEDDER_MAX_BATCH_TEXTS="8",
            SEMANTIC_EMBEDDER_MAX_WAIT_MS="0",
        ),
    )
    try:
        await running.wait_serving()
        long_text = "many words in a long document " * 40
        async with grpc.aio.insecure_channel(running.address) as channel:
            stub = embedder_pb2_grpc.EmbedderStub(channel)
            calls = [stub.Embed(pb.EmbedRequest(texts=[long_text] * 32)) for _ in range(12)]
            results = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        served = [r for r in results if isinstance(r, pb.EmbedResponse)]
        assert refused, "12 x 32 texts against a queue of 64 must refuse some calls"
        assert served, "the calls that fit must still be answered"
        assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all("retry later" in (r.details() or "") for r in refused)
    finally:
        assert running.stop() == 0
