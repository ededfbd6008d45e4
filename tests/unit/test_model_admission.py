"""What the embedder admits: safe model ids, graph limits read from the ONNX file, a
manifest checked against a (tiny, built here) graph, the model limit, the model roots,
non-finite vectors never returned, and the tenant rule for methods acting on every tenant."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from pydantic import ValidationError
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace
from tokenizers.processors import TemplateProcessing

from semantic.common import errors
from semantic.common.auth import (
    EVERY_TENANT_METHODS,
    AuthInterceptor,
    AuthSettings,
    Principal,
    Role,
    acting_as,
    require_every_tenant,
)
from semantic.embedder.batcher import BatchPolicy
from semantic.embedder.engine import EmbeddingEngine, EmbedLimits, ModelOutputInvalid
from semantic.embedder.loading import ModelLoading
from semantic.embedder.model.errors import ManifestInvalid, ModelIncompatible
from semantic.embedder.model.graph_limits import GraphLimits, initializer_shapes
from semantic.embedder.model.manifest import Manifest, file_sha256, model_id_problem
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel
from semantic.embedder.settings import EmbedderSettings

DIM = 4
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"]


# --- model ids ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model_id",
    [
        "sentence-transformers/all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2:int8",
        "intfloat/e5-small-v2",
        "BAAI/bge-small-en-v1.5",
        "m",
        "a" * 128,
    ],
)
def test_model_ids_of_real_models_are_accepted(model_id: str) -> None:
    assert model_id_problem(model_id) is None


@pytest.mark.parametrize(
    ("model_id", "problem"),
    [
        ("", "1-128 characters"),
        ("a" * 129, "1-128 characters"),
        ("../etc/passwd", "1-128 characters"),
        ("/absolute", "1-128 characters"),
        ("team/../other", "'..'"),
        ("team/./m", "'..'"),
        ("team//m", "'..'"),
        ("trailing/", "'..'"),
        ("nul\x00byte", "NUL"),
        ("new\nline", "1-128 characters"),
        ("with space", "1-128 characters"),
        ("ünïcode", "1-128 characters"),
    ],
)
def test_unsafe_model_ids_are_refused_saying_why(model_id: str, problem: str) -> None:
    found = model_id_problem(model_id)
    assert found is not None
    assert problem in found


# --- a tiny model directory ---------------------------------------------------------------


def _tiny_model(
    target: Path,
    *,
    positions: int = 16,
    position_table: str = "embeddings.position_embeddings.weight",
    word_table_name: str = "word_table",
    words: int = len(VOCAB),
    max_tokens: int = 16,
    dim: int = DIM,
    poison: bool = False,
    config: dict[str, Any] | None = None,
) -> Path:
    """model.onnx (word + position embeddings, the position table sliced to the input
    length as in BERT), a word-level tokenizer.json and a manifest."""
    target.mkdir(parents=True)
    rng = np.random.default_rng(7)
    word_table = rng.standard_normal((words, DIM)).astype(np.float32)
    pos_table = rng.standard_normal((positions, DIM)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", [word_table_name, "input_ids"], ["words"]),
        helper.make_node("Shape", ["input_ids"], ["seq"], start=1, end=2),
        helper.make_node("Slice", [position_table, "zero", "seq", "zero"], ["positions"]),
        helper.make_node("Add", ["words", "positions"], ["summed"]),
        helper.make_node("Mul", ["summed", "scale"], ["last_hidden_state"]),
    ]
    initializers = [
        helper.make_tensor(
            word_table_name, TensorProto.FLOAT, word_table.shape, word_table.ravel().tolist()
        ),
        helper.make_tensor(
            position_table, TensorProto.FLOAT, pos_table.shape, pos_table.ravel().tolist()
        ),
        helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [float("nan") if poison else 1.0]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "seq", "hidden"]
            )
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, target / "model.onnx")
    tokenizer = Tokenizer(WordLevel({t: i for i, t in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.post_processor = TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tokenizer.save(str(target / "tokenizer.json"))
    Manifest(
        model_id="test/tiny",
        onnx_sha256=file_sha256(target / "model.onnx"),
        dim=dim,
        max_tokens=max_tokens,
    ).save(target)
    if config is not None:
        (target / "config.json").write_text(json.dumps(config))
    return target


def test_graph_limits_are_the_rows_of_the_embedding_tables(tmp_path: Path) -> None:
    model_dir = _tiny_model(tmp_path / "m", positions=16)
    assert GraphLimits.read(model_dir) == GraphLimits(positions=16, vocabulary=None)
    expected = {
        i.name: tuple(i.dims) for i in onnx.load(str(model_dir / "model.onnx")).graph.initializer
    }
    assert dict(initializer_shapes(model_dir / "model.onnx")) == expected


def test_a_config_json_can_only_lower_the_position_limit(tmp_path: Path) -> None:
    lower = _tiny_model(tmp_path / "a", config={"max_position_embeddings": 8})
    assert GraphLimits.read(lower).positions == 8
    higher = _tiny_model(tmp_path / "b", config={"max_position_embeddings": 4096})
    assert GraphLimits.read(higher).positions == 16
    broken = _tiny_model(tmp_path / "c", config={"max_position_embeddings": "many"})
    with pytest.raises(ModelIncompatible, match="positive integer"):
        GraphLimits.read(broken)


def test_packed_dims_are_read_too(tmp_path: Path) -> None:
    # ModelProto{graph: GraphProto{initializer: TensorProto{dims: packed [3, 300], name}}}
    tensor = b"\x0a\x03\x03\xac\x02" + b"\x42\x01t"
    graph = b"\x2a" + bytes([len(tensor)]) + tensor
    model = b"\x08\x08" + b"\x3a" + bytes([len(graph)]) + graph
    (tmp_path / "model.onnx").write_bytes(model)
    assert list(initializer_shapes(tmp_path / "model.onnx")) == [("t", (3, 300))]


@pytest.mark.parametrize("content", [b"", b"\xff\xff\xff", b"\x3a\x10short", b"not onnx at all"])
def test_a_file_that_is_not_onnx_is_incompatible(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "model.onnx").write_bytes(content)
    with pytest.raises(ModelIncompatible, match="not a readable ONNX file"):
        GraphLimits.read(tmp_path)


# --- the manifest against the graph ---------------------------------------------------------


def test_a_manifest_within_the_graph_loads_and_embeds(tmp_path: Path) -> None:
    model = OnnxEmbeddingModel.load(_tiny_model(tmp_path / "m", max_tokens=16))
    vectors, encoded = model.embed(["hello world " * 20])
    assert vectors.shape == (1, DIM)
    assert encoded[0].truncated
    assert len(encoded[0].ids) == 16


def test_a_window_beyond_the_position_table_is_refused_before_any_session(
    tmp_path: Path,
) -> None:
    with pytest.raises(ModelIncompatible, match="max_tokens 17 exceeds the 16 position"):
        OnnxEmbeddingModel.load(_tiny_model(tmp_path / "m", max_tokens=17))


def test_a_window_the_graph_cannot_run_is_found_by_the_trial_run(tmp_path: Path) -> None:
    # The position table has a name nobody recognises: only running the graph tells.
    model_dir = _tiny_model(tmp_path / "m", position_table="pos", max_tokens=32)
    with pytest.raises(ModelIncompatible, match="max_tokens=32 word-pieces does not run"):
        OnnxEmbeddingModel.load(model_dir)


def test_a_tokenizer_with_more_ids_than_the_word_table_is_refused(tmp_path: Path) -> None:
    model_dir = _tiny_model(
        tmp_path / "m", word_table_name="embeddings.word_embeddings.weight", words=4
    )
    assert GraphLimits.read(model_dir).vocabulary == 4
    with pytest.raises(ModelIncompatible, match="6 token ids"):
        OnnxEmbeddingModel.load(model_dir)


def test_a_dim_the_graph_does_not_give_is_refused(tmp_path: Path) -> None:
    # onnxruntime infers the output width here; a graph that hides it meets the trial run
    with pytest.raises(ModelIncompatible, match=r"expected \[batch, seq, 8\]|declares dim 8"):
        OnnxEmbeddingModel.load(_tiny_model(tmp_path / "m", dim=8))


def test_a_graph_giving_nan_is_refused_at_load(tmp_path: Path) -> None:
    with pytest.raises(ModelIncompatible, match="non-finite"):
        OnnxEmbeddingModel.load(_tiny_model(tmp_path / "m", poison=True))


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"pooling": "sum"}, "pooling"),
        ({"max_tokens": 8193}, "max_tokens"),
        ({"model_id": "../x"}, "model_id"),
        ({"base_model_id": "a/../b"}, "base_model_id"),
    ],
)
def test_a_manifest_outside_its_schema_is_refused_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    model_dir = _tiny_model(tmp_path / "m")
    raw = json.loads((model_dir / "manifest.json").read_text())
    (model_dir / "manifest.json").write_text(json.dumps({**raw, **changes}))
    with pytest.raises(ManifestInvalid, match=field):
        Manifest.load(model_dir)


# --- the engine: how many models, finite vectors ------------------------------------------


class FakeModel:
    """A model at the engine's Protocol seam: constant vectors, NaN when asked to."""

    def __init__(self, model_id: str, sha: str = "0" * 64, *, nan: bool = False) -> None:
        self.manifest = Manifest(model_id=model_id, onnx_sha256=sha, dim=DIM, max_tokens=16)
        self.nan = nan

    def encode(self, texts: Sequence[str], input_type: str) -> list[Any]:
        return [_Encoded(np.ones(3, np.int64)) for _ in texts]

    def infer(
        self, batch: Sequence[Any], *, normalize: bool | None = None, shared: bool = False
    ) -> np.ndarray:
        rows = np.ones((len(batch), DIM), np.float32)
        if self.nan:
            rows[0, 0] = np.nan
        return rows


class _Encoded:
    def __init__(self, ids: np.ndarray) -> None:
        self.ids = ids
        self.tokens = len(ids)
        self.truncated = False


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def _engine(models: list[Any], executor: ThreadPoolExecutor, max_models: int) -> EmbeddingEngine:
    return EmbeddingEngine(
        models, executor=executor, policy=BatchPolicy(), limits=EmbedLimits(), max_models=max_models
    )


async def test_the_engine_serves_at_most_max_models_the_default_included(
    executor: ThreadPoolExecutor,
) -> None:
    engine = _engine([FakeModel("default")], executor, max_models=2)
    engine.start()
    try:
        assert await engine.add_model(FakeModel("second"))
        assert engine.admit(FakeModel("second").manifest) is not None  # served: as it is
        with pytest.raises(errors.FailedPrecondition, match="SEMANTIC_EMBEDDER_MAX_MODELS=2"):
            engine.admit(FakeModel("third").manifest)
        with pytest.raises(errors.FailedPrecondition):
            await engine.add_model(FakeModel("third"))
        with pytest.raises(errors.AlreadyExists, match="second"):
            engine.admit(FakeModel("second", sha="1" * 64).manifest)
        assert [m.model_id for m in engine.manifests] == ["default", "second"]
    finally:
        await engine.close()
    with pytest.raises(ValueError, match="at most 1"):
        _engine([FakeModel("a"), FakeModel("b")], executor, max_models=1)


async def test_a_non_finite_vector_is_never_returned(executor: ThreadPoolExecutor) -> None:
    engine = _engine([FakeModel("bad", nan=True)], executor, max_models=1)
    engine.start()
    try:
        with pytest.raises(ModelOutputInvalid, match="non-finite"):
            await engine.embed(["hello"])
    finally:
        await engine.close()


async def test_embed_refuses_unsafe_model_ids_before_looking_them_up(
    executor: ThreadPoolExecutor,
) -> None:
    engine = _engine([FakeModel("default")], executor, max_models=1)
    for model_id, problem in (("a\x00b", "NUL"), ("a/../b", "'..'"), (" ", "letters")):
        with pytest.raises(errors.InvalidArgument, match=problem) as caught:
            await engine.embed(["hi"], model_id=model_id)
        assert caught.value.field == "model_id"


# --- where models may be loaded from ------------------------------------------------------


def _never(path: Path) -> Any:
    raise AssertionError("resolve must not load")


def test_model_dirs_resolve_only_inside_the_roots(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "m").mkdir(parents=True)
    outside.mkdir()
    (root / "escape").symlink_to(outside, target_is_directory=True)
    loading = ModelLoading(_never, [root])
    assert loading.resolve(str(root / "m")) == (root / "m").resolve()
    assert loading.resolve(str(root / "not-yet")) == (root / "not-yet").resolve()
    for bad, problem in (
        (str(outside), "outside"),
        (str(root / ".." / "outside"), "outside"),
        (str(root / "escape"), "outside"),
        ("relative/elsewhere", "outside"),
        (f"{root}/m\x00", "NUL"),
        ("", "must name"),
        ("x" * 5000, "longer than 4096"),
    ):
        with pytest.raises(errors.InvalidArgument, match=problem) as caught:
            loading.resolve(bad)
        assert caught.value.field == "model_dir"


async def test_a_refused_loading_says_why(tmp_path: Path, executor: ThreadPoolExecutor) -> None:
    loading = ModelLoading(_never, [tmp_path], refusal="switched off")
    engine = _engine([FakeModel("default")], executor, max_models=2)
    with pytest.raises(errors.PermissionDenied, match="switched off"):
        await loading.load(engine, str(tmp_path))


def test_settings_bound_the_models_and_default_the_roots(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SEMANTIC_EMBEDDER_MODEL_DIRS", "/m/a,/m/b,/n/c")
    settings = EmbedderSettings(_env_file=None)  # type: ignore[call-arg]
    assert settings.embedder_max_models == 3
    assert settings.model_roots == [Path("/m"), Path("/n")]
    monkeypatch.setenv("SEMANTIC_EMBEDDER_MODEL_ROOTS", "/srv/models, /opt/models")
    assert EmbedderSettings(_env_file=None).model_roots == [  # type: ignore[call-arg]
        Path("/srv/models"),
        Path("/opt/models"),
    ]
    monkeypatch.setenv("SEMANTIC_EMBEDDER_MAX_MODELS", "2")
    with pytest.raises(ValidationError, match="SEMANTIC_EMBEDDER_MAX_MODELS allows 2"):
        EmbedderSettings(_env_file=None)  # type: ignore[call-arg]


# --- methods acting on every tenant -----------------------------------------------------


def test_a_tenant_claim_never_acts_on_every_tenant() -> None:
    pinned = Principal("ops", frozenset({Role.ADMIN}), tenant="acme")
    with (
        acting_as(pinned),
        pytest.raises(errors.PermissionDenied, match="limited to tenant 'acme'"),
    ):
        require_every_tenant()
    reader = Principal("ops", frozenset({Role.READER}))
    with acting_as(reader), pytest.raises(errors.PermissionDenied, match="needs role admin"):
        require_every_tenant()
    with acting_as(Principal("ops", frozenset({Role.ADMIN}))):
        assert require_every_tenant().subject == "ops"


def test_the_interceptor_refuses_every_tenant_methods_to_a_pinned_token() -> None:
    interceptor = AuthInterceptor(
        AuthSettings(_env_file=None, auth_jwt_secret="s" * 40)  # type: ignore[call-arg]
    )
    pinned = Principal("ops", frozenset({Role.ADMIN}), tenant="acme")
    free = Principal("ops", frozenset({Role.ADMIN}))
    for method in sorted(EVERY_TENANT_METHODS - {"/semantic.v1.Embedder/LoadModel"}):
        with pytest.raises(errors.PermissionDenied, match="acts on every tenant"):
            interceptor.check(method, pinned)
        interceptor.check(method, free)
    interceptor.check("/semantic.v1.Search/Stats", pinned)  # takes a tenant instead


@pytest.mark.unit
def test_a_manifest_that_is_not_utf8_is_invalid_not_a_crash(tmp_path: Path) -> None:
    from semantic.embedder.model.manifest import Manifest, ManifestInvalid

    (tmp_path / "manifest.json").write_bytes(b'{"model_id": "\xff\xfe"}')
    with pytest.raises(ManifestInvalid, match="not UTF-8"):
        Manifest.load(tmp_path)


def test_a_pinned_admin_may_explain_recommendations_of_its_tenant_but_not_dead_letters() -> None:
    interceptor = AuthInterceptor(
        AuthSettings(_env_file=None, auth_jwt_secret="s" * 40)  # type: ignore[call-arg]
    )
    pinned = Principal("ops", frozenset({Role.ADMIN}), tenant="acme")
    assert "/semantic.v1.Admin/ExplainRecommendation" not in EVERY_TENANT_METHODS
    interceptor.check("/semantic.v1.Admin/ExplainRecommendation", pinned)
    for name in ("ListDeadLetters", "ReplayDeadLetters", "DiscardDeadLetters"):
        assert f"/semantic.v1.Admin/{name}" in EVERY_TENANT_METHODS
        with pytest.raises(errors.PermissionDenied, match="acts on every tenant"):
            interceptor.check(f"/semantic.v1.Admin/{name}", pinned)
