"""The auth interceptor in a real grpc.aio server built by ServerKit (so it sits outside
ErrorInterceptor, as in production), with handlers under the contract's method names."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import REGISTRY

from semantic.common.auth import (
    METHOD_ROLES,
    AuthInterceptor,
    AuthSettings,
    Role,
    current_principal,
    enforce_tenant,
    mint_token,
)
from semantic.common.server import ServerKit

SECRET = "integration-secret-long-enough-for-hs256-0123456789"
AUDIENCE = "semantic"
SEARCH, ADMIN, PROBE = "semantic.v1.Search", "semantic.v1.Admin", "semantic.test.Probe"
# The contract's table plus a streaming probe; Search/Secret is registered but not listed.
TABLE: Mapping[str, Role] = {
    **METHOD_ROLES,
    **{f"/{PROBE}/{name}": Role.READER for name in ("Count", "Written", "Collect")},
}


def _describe() -> bytes:
    p = current_principal()
    return f"{p.subject}|{','.join(sorted(p.roles))}|{p.tenant}".encode()


async def _search(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    await asyncio.sleep(float(request or b"0"))  # lets concurrent calls interleave
    return _describe()


async def _upsert(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return enforce_tenant(request.decode()).encode()  # PermissionDenied -> ErrorInterceptor


async def _describe_handler(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return _describe()


async def _count(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    for i in range(3):
        await asyncio.sleep(0)
        yield f"{i}:{current_principal().subject}".encode()


async def _written(request: bytes, context: grpc.aio.ServicerContext) -> None:
    for i in range(2):  # a coroutine streaming through context.write, like health Watch
        await context.write(f"{i}:{current_principal().subject}".encode())


async def _collect(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> bytes:
    parts = [part async for part in requests]
    return b"+".join(parts) + b"|" + current_principal().subject.encode()


def _register(server: grpc.aio.Server) -> None:
    unary = grpc.unary_unary_rpc_method_handler
    search = {
        "Search": unary(_search),
        "Upsert": unary(_upsert),
        "Secret": unary(_describe_handler),
    }
    admin = {"Heal": unary(_describe_handler)}
    probe = {
        "Count": grpc.unary_stream_rpc_method_handler(_count),
        "Written": grpc.unary_stream_rpc_method_handler(_written),
        "Collect": grpc.stream_unary_rpc_method_handler(_collect),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SEARCH, search),
            grpc.method_handlers_generic_handler(ADMIN, admin),
            grpc.method_handlers_generic_handler(PROBE, probe),
        )
    )


@asynccontextmanager
async def _serve(settings: AuthSettings) -> AsyncIterator[grpc.aio.Channel]:
    kit = ServerKit(
        name="auth-probe",
        service_names=[SEARCH, ADMIN, PROBE],
        extra_interceptors=[AuthInterceptor(settings, method_roles=TABLE)],
    )
    port = await kit.start([_register])
    await kit.set_serving()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await kit.stop()


def _settings(**values: Any) -> AuthSettings:
    return AuthSettings(_env_file=None, **values)


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    async with _serve(_settings(auth_jwt_secret=SECRET, auth_jwt_audience=AUDIENCE)) as ch:
        yield ch


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _token(*roles: str, key: str | bytes = SECRET, **kwargs: Any) -> str:
    kwargs.setdefault("audience", AUDIENCE)
    return mint_token(key, subject=kwargs.pop("subject", "alice"), roles=roles, **kwargs)


async def _call(
    channel: grpc.aio.Channel, method: str, token: str | None, request: bytes = b""
) -> bytes:
    metadata = _bearer(token) if token is not None else None
    reply: bytes = await channel.unary_unary(method)(request, metadata=metadata, timeout=10)
    return reply


async def _status(
    channel: grpc.aio.Channel, method: str, token: str | None, request: bytes = b""
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await _call(channel, method, token, request)
    return caught.value.code(), caught.value.details() or ""


def _none_token() -> str:
    claims = {"sub": "mallory", "roles": ["admin"], "aud": AUDIENCE, "exp": time.time() + 600}
    return jwt.encode(claims, "", algorithm="none")


BAD_TOKENS: dict[str, tuple[Callable[[], str | None], str]] = {
    "missing": (lambda: None, "missing token"),
    "expired": (lambda: _token("admin", issued_at=time.time() - 7200), "token expired"),
    "badly_signed": (
        lambda: _token("admin", key="some-other-secret-that-is-long-enough-to-use"),
        "bad token signature",
    ),
    "wrong_audience": (lambda: _token("admin", audience="billing"), "wrong token audience"),
    "alg_none": (_none_token, "token algorithm 'none' is not accepted"),
    "malformed": (lambda: "definitely.not.a-jwt", "malformed token"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_or_missing_token_is_unauthenticated_with_the_reason(
    channel: grpc.aio.Channel, case: str
) -> None:
    make, reason = BAD_TOKENS[case]
    token = make()
    code, details = await _status(channel, f"/{SEARCH}/Search", token)
    assert code is grpc.StatusCode.UNAUTHENTICATED
    assert reason in details
    assert token is None or token not in details


async def test_reader_calling_upsert_is_permission_denied_naming_method_and_role(
    channel: grpc.aio.Channel,
) -> None:
    code, details = await _status(channel, f"/{SEARCH}/Upsert", _token("reader"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert f"/{SEARCH}/Upsert" in details
    assert "needs role writer" in details


async def test_writer_calling_admin_heal_is_permission_denied(channel: grpc.aio.Channel) -> None:
    code, details = await _status(channel, f"/{ADMIN}/Heal", _token("writer"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "needs role admin" in details


async def test_admin_may_call_everything(channel: grpc.aio.Channel) -> None:
    admin = _token("admin", subject="root")
    for method in (f"/{SEARCH}/Search", f"/{SEARCH}/Upsert", f"/{ADMIN}/Heal"):
        await _call(channel, method, admin)
    assert (await _call(channel, f"/{ADMIN}/Heal", admin)).startswith(b"root|admin|")


async def test_reader_may_search_and_the_handler_sees_the_principal(
    channel: grpc.aio.Channel,
) -> None:
    reply = await _call(channel, f"/{SEARCH}/Search", _token("reader", tenant="acme"))
    assert reply == b"alice|reader|acme"


async def test_method_of_ours_missing_from_the_table_is_denied_even_to_admin(
    channel: grpc.aio.Channel,
) -> None:
    code, details = await _status(channel, f"/{SEARCH}/Secret", _token("admin"))
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert "not open to any role" in details


async def test_tenant_claim_is_enforced_by_the_handler_through_error_mapping(
    channel: grpc.aio.Channel,
) -> None:
    token = _token("writer", tenant="acme")
    assert await _call(channel, f"/{SEARCH}/Upsert", token, b"") == b"acme"
    assert await _call(channel, f"/{SEARCH}/Upsert", token, b"acme") == b"acme"
    code, details = await _status(channel, f"/{SEARCH}/Upsert", token, b"globex")
    assert code is grpc.StatusCode.PERMISSION_DENIED
    assert details == "token is limited to tenant 'acme'"
    untenanted = _token("writer")
    assert await _call(channel, f"/{SEARCH}/Upsert", untenanted, b"globex") == b"globex"


async def test_health_and_reflection_need_no_token(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SEARCH))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names: set[str] = set()
    async for answer in stub.ServerReflectionInfo(iter([request])):
        names |= {s.name for s in answer.list_services_response.service}
    assert {SEARCH, ADMIN} <= names


async def test_streaming_handler_sees_the_principal_on_every_item_and_rejects_alike(
    channel: grpc.aio.Channel,
) -> None:
    count = channel.unary_stream(f"/{PROBE}/Count")
    items = [item async for item in count(b"", metadata=_bearer(_token("reader")))]
    assert items == [b"0:alice", b"1:alice", b"2:alice"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _ = [item async for item in count(b"")]
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_write_style_stream_and_client_stream_handlers_see_the_principal(
    channel: grpc.aio.Channel,
) -> None:
    metadata = _bearer(_token("reader"))
    written = channel.unary_stream(f"/{PROBE}/Written")
    assert [item async for item in written(b"", metadata=metadata)] == [b"0:alice", b"1:alice"]
    collect = channel.stream_unary(f"/{PROBE}/Collect")
    assert await collect(iter([b"a", b"b"]), metadata=metadata) == b"a+b|alice"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(iter([b"a"]))
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_concurrent_calls_each_see_their_own_principal(channel: grpc.aio.Channel) -> None:
    calls = [
        _call(channel, f"/{SEARCH}/Search", _token("reader", subject=f"user{i}"), b"0.05")
        for i in range(8)
    ]
    replies = await asyncio.gather(*calls)
    assert [r.split(b"|")[0] for r in replies] == [f"user{i}".encode() for i in range(8)]


async def test_rejections_are_counted_in_the_rpc_metrics(channel: grpc.aio.Channel) -> None:
    labels = {"method": f"/{ADMIN}/Heal", "code": "PERMISSION_DENIED"}
    before = REGISTRY.get_sample_value("semantic_grpc_server_handled_total", labels) or 0.0
    await _status(channel, f"/{ADMIN}/Heal", _token("reader"))
    after = REGISTRY.get_sample_value("semantic_grpc_server_handled_total", labels)
    assert after == before + 1


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_asymmetric_tokens_verify_with_the_public_key(algorithm: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if algorithm == "RS256"
        else ec.generate_private_key(ec.SECP256R1())
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    settings = _settings(auth_jwt_algorithms=algorithm, auth_jwt_public_key=public_pem.decode())
    async with _serve(settings) as channel:
        token = _token("writer", key=private_pem, algorithm=algorithm)
        assert await _call(channel, f"/{SEARCH}/Upsert", token, b"acme") == b"acme"
        hs_token = _token("writer")  # right claims, but HS256 is not configured here
        code, details = await _status(channel, f"/{SEARCH}/Upsert", hs_token)
        assert code is grpc.StatusCode.UNAUTHENTICATED
        assert f"allowed: {algorithm}" in details


async def test_disabled_mode_lets_calls_through_as_the_all_roles_principal() -> None:
    async with _serve(_settings(auth_mode="disabled")) as channel:
        reply = await _call(channel, f"/{ADMIN}/Heal", None)
        assert reply == b"anonymous|admin,reader,service,writer|None"
        assert await _call(channel, f"/{SEARCH}/Upsert", None, b"any") == b"any"
