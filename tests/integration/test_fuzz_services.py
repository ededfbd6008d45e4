"""Fuzzing the real embedder and search processes: every RPC of Embedder, Search and
Admin gets arbitrary requests (valid and hostile) and raw undecodable bytes. Whatever the
request, the answer is a status a client can act on (never INTERNAL, UNKNOWN or a hang),
and the process stays alive and SERVING. With auth on, garbage credentials are
UNAUTHENTICATED on every guarded RPC.

Examples per RPC come from the Hypothesis profile in SEMANTIC_FUZZ_PROFILE (`ci` by
default, `fuzz` for `make fuzz`); see fuzz_strategies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from fuzz_kit import FORBIDDEN, Shown, Target, describe
from fuzz_strategies import (
    fuzz_settings,
    garbage_credentials,
    method_path,
    raw_request_strategy,
    request_strategies,
    rpc_methods,
)
from fuzz_values import Pools
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import example, given
from hypothesis import strategies as st

from semantic.common.auth import EMBEDDER_OPEN_METHODS
from semantic.tools.devstack import EmbeddedNats, EmbeddedPostgres
from semantic.v1 import embedder_pb2, search_pb2

pytestmark = pytest.mark.fuzz

SECRET = "fuzz-secret-0123456789-abcdefghijklmnopqrstuvwxyz"
AUDIENCE = "semantic"
METHODS = rpc_methods()
# Costly RPCs (a model load, a re-embedding pass) get a part of the profile's budget.
SHARE = {"LoadModel": 0.4, "Reindex": 0.5, "Heal": 0.5, "EmbedStream": 0.5}
CONCURRENT_CALLS = 8
SPACE_IDS = (*(str(i) for i in range(1, 9)), "s1", "0", "-1")


def _id(method: MethodDescriptor) -> str:
    return f"{method.containing_service.name}/{method.name}"


def _start(
    starter: Callable[[str, dict[str, str]], Any],
    module: str,
    env: dict[str, str],
    services: list[str],
) -> tuple[Any, Target]:
    process = starter(module, env)
    asyncio.run(process.wait_serving(timeout_s=180))
    target = Target(module, process.address, lambda: process.process.poll() is None, services)
    return process, target


def _stop(process: Any, target: Target) -> None:
    target.close()
    code = process.stop()
    assert code == 0, f"{target.name} exited with {code} after the fuzz run"


# --- services under test ------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_database(pg_server: EmbeddedPostgres) -> Iterator[str]:
    name = f"fuzz_{uuid.uuid4().hex}"
    pg_server.create_database(name)
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="module")
def model_dirs(
    tmp_path_factory: pytest.TempPathFactory, fp32_model_dir: Path, int8_model_dir: Path
) -> tuple[Path, tuple[str, ...]]:
    """(a root of broken model directories, every directory LoadModel and Reindex may be
    pointed at): served, servable, broken in each file, outside the roots, not a path."""
    root = tmp_path_factory.mktemp("fuzz-models")
    fp32 = json.loads((fp32_model_dir / "manifest.json").read_text())
    int8 = json.loads((int8_model_dir / "manifest.json").read_text())

    def make(name: str, manifest: Any, onnx: Path | bytes, tokenizer: Path | bytes) -> Path:
        folder = root / name
        folder.mkdir()
        for file, content in (("model.onnx", onnx), ("tokenizer.json", tokenizer)):
            if isinstance(content, Path):
                (folder / file).symlink_to(content)
            else:
                (folder / file).write_bytes(content)
        text = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
        (folder / "manifest.json").write_bytes(text)
        return folder

    onnx, tokenizer = fp32_model_dir / "model.onnx", fp32_model_dir / "tokenizer.json"
    junk = os.urandom(4096)
    dirs = [
        make("garbage", b"\xff{not json", os.urandom(512), b"{}"),
        make(
            "bad-onnx",
            {**fp32, "model_id": "fuzz/bad-onnx", "onnx_sha256": hashlib.sha256(junk).hexdigest()},
            junk,
            tokenizer,
        ),
        make("bad-tokenizer", {**fp32, "model_id": "fuzz/bad-tokenizer"}, onnx, b'{"model": 5}'),
        make(
            "hostile-manifest",
            {**fp32, "model_id": "", "dim": 2**63, "max_tokens": -1, "pooling": "sum"},
            onnx,
            tokenizer,
        ),
        make(
            "huge-window",
            {**fp32, "model_id": "fuzz/huge-window", "max_tokens": 10**6},
            onnx,
            tokenizer,
        ),
        make("wrong-dim", {**fp32, "model_id": "fuzz/wrong-dim", "dim": 7}, onnx, tokenizer),
        make(
            "same-id",
            {**int8, "model_id": fp32["model_id"]},
            int8_model_dir / "model.onnx",
            tokenizer,
        ),
        make("renamed", {**fp32, "model_id": "fuzz/renamed"}, onnx, tokenizer),
    ]
    (root / "empty").mkdir()
    (root / "manifest-is-a-folder").mkdir()
    (root / "manifest-is-a-folder" / "manifest.json").mkdir()
    (root / "loop").symlink_to(root / "loop")
    paths = (
        str(fp32_model_dir),
        str(int8_model_dir),
        *(str(d) for d in dirs),
        str(root / "empty"),
        str(root / "manifest-is-a-folder"),
        str(root / "loop"),
        str(root / "missing"),
        str(fp32_model_dir / "manifest.json"),
        f"{fp32_model_dir}/../../../../etc",
        "models/all-minilm-l6-v2",
        "/",
        "/etc",
        "/dev/null",
        "~",
        f"{fp32_model_dir}\x00/etc",
    )
    return root, paths


@pytest.fixture(scope="module")
def embedder(
    model_dirs: tuple[Path, tuple[str, ...]],
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[Target]:
    """An embedder of its own (LoadModel changes what it serves), auth off."""
    env = {
        "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
        "SEMANTIC_EMBEDDER_MODEL_ROOTS": f"{fp32_model_dir.parent},{model_dirs[0]}",
        "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        "SEMANTIC_AUTH_MODE": "disabled",
    }
    process, target = _start(service_starter, "semantic.embedder", env, ["semantic.v1.Embedder"])
    yield target
    _stop(process, target)


def _search_env(
    database_url: str,
    embedder: Target,
    fp32_model_dir: Path,
    nats_server: EmbeddedNats,
    snapshots: Path,
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "NATS_URL": nats_server.url,
        "SEMANTIC_EMBEDDER_ADDRESS": embedder.address,
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_SEARCH_TOKENIZER": str(fp32_model_dir / "tokenizer.json"),
        "SEMANTIC_SEARCH_CHUNK_WINDOW": "64",
        # Snapshots really get written (into a folder of the test's own).
        "SEMANTIC_SNAPSHOT_LOCATION": str(snapshots),
    }


SEARCH_SERVICES = ["semantic.v1.Search", "semantic.v1.Admin"]


@pytest.fixture(scope="module")
def search(
    *,
    fuzz_database: str,
    embedder: Target,
    fp32_model_dir: Path,
    nats_server: EmbeddedNats,
    service_starter: Callable[[str, dict[str, str]], Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    """The search process (Search and Admin) on a database of its own, auth off."""
    env = _search_env(
        fuzz_database, embedder, fp32_model_dir, nats_server, tmp_path_factory.mktemp("snapshots")
    )
    process, target = _start(service_starter, "semantic.search", env, SEARCH_SERVICES)
    yield target
    _stop(process, target)


@pytest.fixture(scope="module")
def pools(embedder: Target, model_dirs: tuple[Path, tuple[str, ...]]) -> Pools:
    """Realistic values: the served models' ids, the directories, the likely spaces."""
    info = embedder_pb2.InfoResponse.FromString(
        embedder.channel.unary_unary("/semantic.v1.Embedder/Info")(
            embedder_pb2.InfoRequest().SerializeToString(), timeout=30
        )
    )
    ids = tuple(m.id for m in info.models)
    return Pools(
        model_ids=(*ids, f"{ids[0]}:int8", "fuzz/renamed", "unknown/model"),
        model_dirs=model_dirs[1],
        space_ids=SPACE_IDS,
    )


def _target(method: MethodDescriptor, request: pytest.FixtureRequest) -> Target:
    name = "embedder" if method.containing_service.name == "Embedder" else "search"
    target: Target = request.getfixturevalue(name)
    return target


# --- fuzzing -----------------------------------------------------------------------------


# Minimal failing examples found by fuzz campaigns, tried first on every run (by RPC name).
REGRESSIONS: dict[str, list[Any]] = {}


def _known_cases(method: MethodDescriptor, pools: Pools) -> list[Any]:
    """Requests every run tries before the drawn ones, whatever the profile: each model
    directory of the pool for LoadModel and Reindex, and the recorded regressions."""
    cases = list(REGRESSIONS.get(method.name, []))
    if method.name == "LoadModel":
        cases += [embedder_pb2.LoadModelRequest(model_dir=d) for d in pools.model_dirs]
    if method.name == "Reindex":
        cases += [search_pb2.ReindexRequest(model_dir=d) for d in pools.model_dirs]
    return cases


@pytest.mark.parametrize("method", METHODS, ids=_id)
def test_any_request_gets_a_client_status_and_the_service_keeps_serving(
    method: MethodDescriptor, request: pytest.FixtureRequest, pools: Pools
) -> None:
    target = _target(method, request)
    strategy = request_strategies(pools)[method_path(method)].map(Shown)

    def check(shown: Shown) -> None:
        target.check_answer(method, shown.value)

    for case in reversed(_known_cases(method, pools)):
        check = example(shown=Shown(case))(check)
    fuzz_settings(SHARE.get(method.name, 1.0))(given(shown=strategy)(check))()


@pytest.mark.parametrize("method", METHODS, ids=_id)
def test_undecodable_bytes_get_a_client_status_and_the_service_keeps_serving(
    method: MethodDescriptor, request: pytest.FixtureRequest, pools: Pools
) -> None:
    target = _target(method, request)
    requests = request_strategies(pools)[method_path(method)]
    strategy = raw_request_strategy(method, requests).map(Shown)

    @fuzz_settings(0.5)
    @given(shown=strategy)
    def run(shown: Shown) -> None:
        target.check_answer(method, shown.value, raw=True)

    run()


def test_concurrent_requests_get_client_statuses_and_the_services_keep_serving(
    embedder: Target, search: Target, pools: Pools
) -> None:
    """Requests to every RPC at once (writes, reads, heals, reindexes, space switches and
    model loads side by side): each still gets a client status, nothing deadlocks."""
    strategies = request_strategies(pools)
    by_path = {method_path(m): m for m in METHODS}
    calls = st.lists(
        st.sampled_from(sorted(by_path)).flatmap(lambda p: strategies[p].map(lambda r: (p, r))),
        min_size=2,
        max_size=CONCURRENT_CALLS,
    )

    def target_of(path: str) -> Target:
        return embedder if path.startswith("/semantic.v1.Embedder/") else search

    with ThreadPoolExecutor(CONCURRENT_CALLS) as pool:

        @fuzz_settings(0.5)
        @given(shown=calls.map(Shown))
        def run(shown: Shown) -> None:
            embedder.require_healthy()
            search.require_healthy()
            futures = [pool.submit(target_of(p).call, by_path[p], r) for p, r in shown.value]
            answers = [future.result() for future in futures]
            bad = [
                f"{path} answered {code.name}: {details!r} to {describe(request)}"
                for (path, request), (code, details) in zip(shown.value, answers, strict=True)
                if code in FORBIDDEN
            ]
            assert not bad, "\n".join(bad)
            for target in (embedder, search):
                target.assert_serving(f"after the concurrent calls {describe(shown.value)}")

        run()


# --- auth on -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def secured_search(
    *,
    fuzz_database: str,
    embedder: Target,
    fp32_model_dir: Path,
    nats_server: EmbeddedNats,
    service_starter: Callable[[str, dict[str, str]], Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    env = {
        **_search_env(
            fuzz_database,
            embedder,
            fp32_model_dir,
            nats_server,
            tmp_path_factory.mktemp("snapshots"),
        ),
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
    }
    process, target = _start(service_starter, "semantic.search", env, SEARCH_SERVICES)
    yield target
    _stop(process, target)


@pytest.fixture(scope="module")
def secured_embedder(
    model_dirs: tuple[Path, tuple[str, ...]],
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[Target]:
    env = {
        "SEMANTIC_EMBEDDER_MODEL_DIRS": str(fp32_model_dir),
        "SEMANTIC_EMBEDDER_MODEL_ROOTS": f"{fp32_model_dir.parent},{model_dirs[0]}",
        "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": "1",
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
    }
    process, target = _start(service_starter, "semantic.embedder", env, ["semantic.v1.Embedder"])
    yield target
    _stop(process, target)


def _plain_request(method: MethodDescriptor, pools: Pools) -> Any:
    """A well-formed request, so only the credentials can be wrong."""
    module = embedder_pb2 if method.containing_service.name == "Embedder" else search_pb2
    cls = getattr(module, method.input_type.name)
    if method.name == "LoadModel":
        return cls(model_dir=pools.model_dirs[0])
    if method.name == "Embed":
        return cls(texts=["hello world"])
    if method.name == "EmbedStream":
        return [cls(request_id="r1", embed=embedder_pb2.EmbedRequest(texts=["hello world"]))]
    return cls()


@pytest.mark.parametrize("method", METHODS, ids=_id)
def test_garbage_credentials_never_get_past_authentication(
    method: MethodDescriptor, request: pytest.FixtureRequest, pools: Pools
) -> None:
    on_embedder = method.containing_service.name == "Embedder"
    target: Target = request.getfixturevalue(
        "secured_embedder" if on_embedder else "secured_search"
    )
    call = _plain_request(method, pools)
    guarded = method_path(method) not in EMBEDDER_OPEN_METHODS

    @fuzz_settings(0.25)
    @given(credentials=garbage_credentials(SECRET, AUDIENCE).map(Shown))
    def run(credentials: Shown) -> None:
        target.require_healthy()
        code, details = target.call(method, call, metadata=credentials.value)
        shown = f"{_id(method)} with {describe(credentials.value)}: {code.name} {details!r}"
        if guarded:
            assert code is grpc.StatusCode.UNAUTHENTICATED, shown
        else:  # open RPC: the token is not looked at
            assert code not in FORBIDDEN, shown
        target.assert_serving(f"after {shown}")

    run()


def test_the_services_still_do_their_work_after_the_fuzz(embedder: Target, search: Target) -> None:
    methods = {m.name: m for m in METHODS}
    upsert = search_pb2.UpsertRequest()
    node = upsert.nodes.add(
        id=f"canary-{uuid.uuid4().hex}",
        content_type="page",
        title="Canary",
        body="Written after the fuzz run; must be stored and read back.",
    )
    written = search.invoke(methods["Upsert"], upsert)
    assert [r.id for r in written.results] == [node.id]  # type: ignore[attr-defined]
    read = search.invoke(methods["Get"], search_pb2.GetRequest(ids=[node.id]))
    assert [n.title for n in read.nodes] == ["Canary"]  # type: ignore[attr-defined]
    embedded = embedder.invoke(methods["Embed"], embedder_pb2.EmbedRequest(texts=["still here"]))
    assert embedded.count == 1  # type: ignore[attr-defined]
