"""The fuzz suite's strategies, offline: every RPC of the contract has one (a new RPC
without a strategy fails here), and each builds what its RPC takes."""

from __future__ import annotations

import pytest
from fuzz_events import MAX_PUBLISH_BYTES, Publication, publications
from fuzz_kit import describe
from fuzz_strategies import (
    garbage_credentials,
    method_path,
    raw_request_strategy,
    request_strategies,
    rpc_methods,
)
from fuzz_values import Pools
from fuzz_wire import BAD_UTF8, deep_groups, deep_struct, string_paths, wrap
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import DecodeError, Message
from hypothesis import HealthCheck, given, settings

from semantic.v1 import common_pb2, embedder_pb2, search_pb2

OFFLINE = settings(
    max_examples=10,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
METHODS = rpc_methods()


def _input_class(method: MethodDescriptor) -> type[Message]:
    module = embedder_pb2 if method.containing_service.name == "Embedder" else search_pb2
    cls: type[Message] = getattr(module, method.input_type.name)
    return cls


def test_every_rpc_of_the_contract_has_a_request_strategy() -> None:
    described = {method_path(m) for m in METHODS}
    assert {s.name for s in embedder_pb2.DESCRIPTOR.services_by_name.values()} == {"Embedder"}
    assert {s.name for s in search_pb2.DESCRIPTOR.services_by_name.values()} == {"Search", "Admin"}
    strategies = set(request_strategies(Pools()))
    assert described - strategies == set(), "RPCs without a fuzz strategy"
    assert strategies - described == set(), "strategies for RPCs that do not exist"
    assert len(described) == 33


@pytest.mark.parametrize("method", METHODS, ids=method_path)
def test_each_request_strategy_builds_requests_its_rpc_takes(method: MethodDescriptor) -> None:
    cls = _input_class(method)

    @OFFLINE
    @given(request=request_strategies(Pools())[method_path(method)])
    def run(request: object) -> None:
        items = request if method.client_streaming else [request]
        assert isinstance(items, list)
        for item in items:
            assert isinstance(item, cls)
            item.SerializeToString()  # sendable as it is
        assert describe(request)

    run()


@pytest.mark.parametrize("method", METHODS, ids=method_path)
def test_raw_requests_are_bytes(method: MethodDescriptor) -> None:
    strategy = raw_request_strategy(method, request_strategies(Pools())[method_path(method)])

    @OFFLINE
    @given(raw=strategy)
    def run(raw: object) -> None:
        items = raw if method.client_streaming else [raw]
        assert isinstance(items, list)
        assert all(isinstance(item, bytes) for item in items)

    run()


def test_bad_utf8_on_the_wire_is_undecodable_where_a_string_is_expected() -> None:
    paths = string_paths(common_pb2.Node.DESCRIPTOR)
    assert paths
    for path in paths:
        for bad in BAD_UTF8:
            with pytest.raises(DecodeError):
                common_pb2.Node.FromString(wrap(path, bad))


def test_deep_nesting_exceeds_the_decoders_limit() -> None:
    with pytest.raises(DecodeError):
        search_pb2.GetRequest.FromString(deep_groups(101))
    deep = deep_struct(search_pb2.UpsertRequest.DESCRIPTOR, 101)
    assert deep is not None
    with pytest.raises(DecodeError):
        search_pb2.UpsertRequest.FromString(deep)
    shallow = deep_struct(search_pb2.UpsertRequest.DESCRIPTOR, 20)
    assert shallow is not None
    search_pb2.UpsertRequest.FromString(shallow)


@OFFLINE
@given(publication=publications(Pools()))
def test_publications_target_the_indexer_subjects(publication: Publication) -> None:
    prefix = "semantic.content." if publication.kind == "content" else "semantic.user."
    assert publication.subject.startswith(prefix)
    assert set(publication.headers) <= {"Content-Type"}
    assert isinstance(publication.payload, bytes)
    assert len(publication.payload) <= MAX_PUBLISH_BYTES
    assert publication.encoding in {"protobuf", "json", "hostile_json", "raw"}


@OFFLINE
@given(credentials=garbage_credentials("s" * 40, "semantic"))
def test_garbage_credentials_are_valid_grpc_metadata(credentials: list[tuple[str, str]]) -> None:
    for name, value in credentials:
        assert name == "authorization"
        assert value.isascii()
        assert value.isprintable()


def test_a_long_request_is_described_briefly() -> None:
    node = common_pb2.Node(id="n1", body="word " * 200_000, tags=["t"] * 1_000)
    text = describe(search_pb2.UpsertRequest(nodes=[node] * 3))
    assert len(text) < 1_000
    assert "1000000 chars" in text
    assert "1000 items" in text
