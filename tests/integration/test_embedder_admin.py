"""The embedder's admin surface through gRPC, on a real embedder with the real model:
LoadModel needs an admin token without a tenant claim, loads only from the model roots,
checks a manifest against the graph, takes safe model ids only and stops at
SEMANTIC_EMBEDDER_MAX_MODELS; Embed refuses malformed requests with INVALID_ARGUMENT and
never returns a non-finite vector."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from semantic.common.auth import Role, mint_token
from semantic.tools.devstack.health import wait_serving
from semantic.v1 import embedder_pb2 as pb
from semantic.v1 import embedder_pb2_grpc

SECRET = "embedder-admin-secret-0123456789-abcdefghij"
AUDIENCE = "semantic"
DEFAULT_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _auth(*roles: str, tenant: str | None = None) -> list[tuple[str, str]]:
    token = mint_token(SECRET, subject="ops", roles=roles, tenant=tenant, audience=AUDIENCE)
    return [("authorization", f"Bearer {token}")]


ADMIN = _auth(Role.ADMIN)


def _variant(source: Path, target: Path, **changes: Any) -> Path:
    """A model directory sharing ``source``'s graph and tokenizer, its manifest changed."""
    target.mkdir(parents=True)
    for name in ("model.onnx", "tokenizer.json"):
        (target / name).symlink_to(source / name)
    manifest = json.loads((source / "manifest.json").read_text())
    manifest.update(changes)
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one folder this module's embedder may load model directories from."""
    return tmp_path_factory.mktemp("model-roots")


@pytest.fixture(scope="module")
def embedder(
    fp32_model_dir: Path, roots: Path, service_starter: Callable[..., Any]
) -> Iterator[str]:
    service = service_starter(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
            "SEMANTIC_EMBEDDER_MODEL_ROOTS": str(roots),
            "SEMANTIC_EMBEDDER_MAX_MODELS": "2",  # the default model and one more
            "SEMANTIC_AUTH_MODE": "jwt",
            "SEMANTIC_AUTH_JWT_SECRET": SECRET,
            "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
        },
    )
    yield service.address
    assert service.stop() == 0


@pytest.fixture
async def stub(embedder: str) -> AsyncIterator[embedder_pb2_grpc.EmbedderStub]:
    await wait_serving(embedder, name="embedder")
    async with grpc.aio.insecure_channel(embedder) as channel:
        yield embedder_pb2_grpc.EmbedderStub(channel)


async def _refused(call: Any, code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    assert caught.value.code() is code, caught.value.details()
    return caught.value.details() or ""


def _vectors(reply: pb.EmbedResponse) -> np.ndarray:
    return np.frombuffer(reply.vectors, dtype="<f4").reshape(reply.count, reply.dim)


# --- who may load -----------------------------------------------------------------------


async def test_load_model_needs_an_admin_token_without_a_tenant_claim(
    stub: embedder_pb2_grpc.EmbedderStub, fp32_model_dir: Path, roots: Path
) -> None:
    same = _variant(fp32_model_dir, roots / "same-as-default")  # already served
    request = pb.LoadModelRequest(model_dir=str(same))
    details = await _refused(stub.LoadModel(request), grpc.StatusCode.UNAUTHENTICATED)
    assert "missing token" in details
    bad = [("authorization", "Bearer not-a-jwt")]
    await _refused(stub.LoadModel(request, metadata=bad), grpc.StatusCode.UNAUTHENTICATED)
    for role in (Role.READER, Role.WRITER, Role.SERVICE):
        details = await _refused(
            stub.LoadModel(request, metadata=_auth(role)), grpc.StatusCode.PERMISSION_DENIED
        )
        assert "needs role admin" in details
    details = await _refused(
        stub.LoadModel(request, metadata=_auth(Role.ADMIN, tenant="acme")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert "acts on every tenant" in details
    reply = await stub.LoadModel(request, metadata=ADMIN)
    assert (reply.model.id, reply.loaded) == (DEFAULT_ID, False)


async def test_embed_info_and_streams_need_no_token(
    stub: embedder_pb2_grpc.EmbedderStub,
) -> None:
    info = await stub.Info(pb.InfoRequest())
    assert info.default_model_id == DEFAULT_ID
    reply = await stub.Embed(
        pb.EmbedRequest(texts=["hello world"]), metadata=[("authorization", "Bearer junk")]
    )
    assert reply.count == 1
    streamed = [
        r
        async for r in stub.EmbedStream(
            iter([pb.EmbedStreamRequest(request_id="a", embed=pb.EmbedRequest(texts=["hi"]))])
        )
    ]
    assert [r.request_id for r in streamed] == ["a"]


async def test_without_a_key_load_model_is_refused_and_embedding_is_served(
    fp32_model_dir: Path, service_starter: Callable[..., Any]
) -> None:
    env = {
        "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
        "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": "",
        "SEMANTIC_AUTH_JWT_PUBLIC_KEY": "",
        "SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE": "",
    }
    service = service_starter("semantic.embedder", env)
    try:
        await service.wait_serving()
        async with grpc.aio.insecure_channel(service.address) as channel:
            stub = embedder_pb2_grpc.EmbedderStub(channel)
            details = await _refused(
                stub.LoadModel(pb.LoadModelRequest(model_dir=str(fp32_model_dir)), metadata=ADMIN),
                grpc.StatusCode.PERMISSION_DENIED,
            )
            assert "SEMANTIC_AUTH_JWT_SECRET" in details
            assert (await stub.Embed(pb.EmbedRequest(texts=["still served"]))).count == 1
    finally:
        assert service.stop() == 0


# --- what may be loaded -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"max_tokens": 1024}, "max_tokens 1024 exceeds the 512 position embeddings"),
        ({"max_tokens": 1_000_000}, "max_tokens"),
        ({"dim": 768}, "768"),
        ({"pooling": "sum"}, "pooling"),
        ({"model_id": "../../etc/passwd"}, "model_id"),
        ({"model_id": "team/../other"}, "model_id"),
        ({"model_id": "team/./m"}, "model_id"),
        ({"model_id": "team//m"}, "model_id"),
        ({"model_id": "bad\u0000id"}, "model_id"),
        ({"model_id": "with space"}, "model_id"),
        ({"model_id": ""}, "model_id"),
        ({"model_id": "m" * 129}, "model_id"),
        ({"model_id": "ok/model", "base_model_id": "../up"}, "base_model_id"),
    ],
    ids=[
        "window-beyond-positions",
        "window-absurd",
        "wrong-dim",
        "unknown-pooling",
        "id-dotdot",
        "id-inner-dotdot",
        "id-dot",
        "id-empty-segment",
        "id-nul",
        "id-space",
        "id-empty",
        "id-too-long",
        "base-id-dotdot",
    ],
)
async def test_a_manifest_the_model_cannot_honour_is_invalid_argument(
    stub: embedder_pb2_grpc.EmbedderStub,
    fp32_model_dir: Path,
    roots: Path,
    changes: dict[str, Any],
    problem: str,
) -> None:
    name = f"bad-{uuid.uuid4().hex[:12]}"
    model_dir = _variant(fp32_model_dir, roots / name, **{"model_id": f"test/{name}", **changes})
    details = await _refused(
        stub.LoadModel(pb.LoadModelRequest(model_dir=str(model_dir)), metadata=ADMIN),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert details.startswith("model_dir: "), details
    assert problem in details
    info = await stub.Info(pb.InfoRequest())
    assert [m.id for m in info.models] == [DEFAULT_ID]


async def test_model_dir_must_be_a_folder_inside_the_model_roots(
    stub: embedder_pb2_grpc.EmbedderStub,
    fp32_model_dir: Path,
    int8_model_dir: Path,
    roots: Path,
    tmp_path: Path,
) -> None:
    elsewhere = _variant(fp32_model_dir, tmp_path / "elsewhere", model_id="test/elsewhere")
    (roots / "link-out").symlink_to(elsewhere, target_is_directory=True)
    cases = {
        "": "must name a model directory",
        "   ": "must name a model directory",
        f"{roots}/x\u0000y": "must not contain NUL",
        "/" + "a" * 5000: "longer than 4096",
        str(int8_model_dir): "outside the folders",
        str(elsewhere): "outside the folders",
        f"{roots}/../{elsewhere.parent.name}/elsewhere": "outside the folders",
        str(roots / "link-out"): "outside the folders",
        "/etc": "outside the folders",
    }
    for model_dir, problem in cases.items():
        details = await _refused(
            stub.LoadModel(pb.LoadModelRequest(model_dir=model_dir), metadata=ADMIN),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert details.startswith("model_dir: "), details
        assert problem in details, (model_dir[:60], details)
    missing = await _refused(
        stub.LoadModel(pb.LoadModelRequest(model_dir=str(roots / "nothing")), metadata=ADMIN),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "manifest.json" in missing


# --- Embed's requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field", "problem"),
    [
        (pb.EmbedRequest(texts=["hi"], model_id="a\u0000b"), "model_id", "NUL"),
        (pb.EmbedRequest(texts=["hi"], model_id="   "), "model_id", "letters, digits"),
        (pb.EmbedRequest(texts=["hi"], model_id="team/../x"), "model_id", "'..'"),
        (pb.EmbedRequest(texts=["hi"], model_id="m" * 5000), "model_id", "1-128"),
        (pb.EmbedRequest(texts=["hi"], model_id="no/such-model"), "model_id", "unknown"),
        (pb.EmbedRequest(texts=["hi"], input_type=7), "input_type", "unknown value 7"),
        (pb.EmbedRequest(texts=["hi"], truncation=9), "truncation", "unknown value 9"),
        (pb.EmbedRequest(texts=["hi"], normalization=9), "normalization", "unknown value 9"),
    ],
    ids=[
        "id-nul",
        "id-blank",
        "id-dotdot",
        "id-huge",
        "id-unknown",
        "input-type",
        "truncation",
        "normalization",
    ],
)
async def test_malformed_embed_requests_are_invalid_argument_naming_the_field(
    stub: embedder_pb2_grpc.EmbedderStub, request_: pb.EmbedRequest, field: str, problem: str
) -> None:
    details = await _refused(stub.Embed(request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith(f"{field}: "), details
    assert problem in details
    assert len(details) < 400  # a huge id is not echoed back whole


async def test_a_stream_request_id_over_128_characters_is_invalid_argument(
    stub: embedder_pb2_grpc.EmbedderStub,
) -> None:
    requests = [pb.EmbedStreamRequest(request_id="r" * 129, embed=pb.EmbedRequest(texts=["x"]))]

    async def drain() -> None:
        async for _ in stub.EmbedStream(iter(requests)):
            pass

    details = await _refused(drain(), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith("request_id: ")


async def test_an_invalid_stream_request_is_named_by_its_request_id_and_field(
    stub: embedder_pb2_grpc.EmbedderStub,
) -> None:
    requests = [
        pb.EmbedStreamRequest(request_id="ok", embed=pb.EmbedRequest(texts=["fine"])),
        pb.EmbedStreamRequest(request_id="r-2", embed=pb.EmbedRequest(texts=["x", " "])),
    ]
    answered: list[str] = []

    async def drain() -> None:
        async for reply in stub.EmbedStream(iter(requests)):
            answered.append(reply.request_id)

    details = await _refused(drain(), grpc.StatusCode.INVALID_ARGUMENT)
    assert details.startswith("texts[1]: ")
    assert "request_id 'r-2'" in details
    assert answered == ["ok"]


async def test_an_undecodable_request_is_invalid_argument(embedder: str) -> None:
    async with grpc.aio.insecure_channel(embedder) as channel:
        embed = channel.unary_unary("/semantic.v1.Embedder/Embed")
        for raw in (b"\x1a\x02\xff\xfe", b"\xff\xff\xff"):  # bad UTF-8 in model_id; junk
            await _refused(embed(raw), grpc.StatusCode.INVALID_ARGUMENT)


async def test_odd_texts_give_finite_vectors(stub: embedder_pb2_grpc.EmbedderStub) -> None:
    texts = ["\u0000", "a\u0000b", "\u200b\u200b", "\ufffd", "🙂" * 300, "[PAD] [PAD]", "[SEP]"]
    for normalization in (pb.NORMALIZATION_UNSPECIFIED, pb.NORMALIZATION_NONE):
        reply = await stub.Embed(pb.EmbedRequest(texts=texts, normalization=normalization))
        vectors = _vectors(reply)
        assert vectors.shape == (len(texts), 384)
        assert np.isfinite(vectors).all()
    unit = _vectors(await stub.Embed(pb.EmbedRequest(texts=texts)))
    assert np.allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


# --- how many (last: it fills the engine) ---------------------------------------------


async def test_models_load_up_to_the_limit_and_use_the_whole_window_the_graph_takes(
    stub: embedder_pb2_grpc.EmbedderStub, fp32_model_dir: Path, roots: Path
) -> None:
    wide = _variant(fp32_model_dir, roots / "wide", model_id="test/wide-512", max_tokens=512)
    reply = await stub.LoadModel(pb.LoadModelRequest(model_dir=str(wide)), metadata=ADMIN)
    assert (reply.model.id, reply.model.max_tokens, reply.loaded) == ("test/wide-512", 512, True)
    long_text = "word " * 700
    embedded = await stub.Embed(pb.EmbedRequest(texts=[long_text], model_id="test/wide-512"))
    assert (embedded.tokens[0], embedded.truncated[0]) == (702, True)
    assert np.isfinite(_vectors(embedded)).all()

    extra = _variant(fp32_model_dir, roots / "extra", model_id="test/extra")
    details = await _refused(
        stub.LoadModel(pb.LoadModelRequest(model_dir=str(extra)), metadata=ADMIN),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "SEMANTIC_EMBEDDER_MAX_MODELS=2" in details
    again = await stub.LoadModel(pb.LoadModelRequest(model_dir=str(wide)), metadata=ADMIN)
    assert (again.model.id, again.loaded) == ("test/wide-512", False)  # idempotent when full
    info = await stub.Info(pb.InfoRequest())
    assert [m.id for m in info.models] == [DEFAULT_ID, "test/wide-512"]
