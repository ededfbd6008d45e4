"""A BERT encoder as an ONNX graph, written from its weights with onnx.helper and numpy."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from semantic.embedder.model.errors import ModelBuildError

OPSET = 17
"""LayerNormalization is an ONNX operator from opset 17 on."""
IR_VERSION = 8
"""The IR version that goes with opset 17; onnxruntime 1.31 reads at most 13."""
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
_MASK_FILL = -10000.0
"""Added to the attention scores of padding; exp() of it is exactly 0 in float32."""


@dataclass(frozen=True, slots=True)
class BertConfig:
    """The shape of a BERT encoder, from a Hugging Face ``config.json``."""

    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    layer_norm_eps: float
    vocab_size: int
    max_positions: int
    type_vocab_size: int

    @property
    def head_size(self) -> int:
        """Width of one attention head."""
        return self.hidden_size // self.num_heads

    @classmethod
    def from_json(cls, path: Path) -> BertConfig:
        """Read a ``config.json``; only absolute-position BERT with exact GELU is supported."""
        raw: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("model_type") != "bert":
            raise ModelBuildError(f"{path}: model_type {raw.get('model_type')!r} is not 'bert'")
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ModelBuildError(f"{path}: hidden_act {raw['hidden_act']!r} is not 'gelu'")
        if raw.get("position_embedding_type", "absolute") != "absolute":
            raise ModelBuildError(f"{path}: only absolute position embeddings are supported")
        config = cls(
            hidden_size=int(raw["hidden_size"]),
            num_heads=int(raw["num_attention_heads"]),
            num_layers=int(raw["num_hidden_layers"]),
            intermediate_size=int(raw["intermediate_size"]),
            layer_norm_eps=float(raw["layer_norm_eps"]),
            vocab_size=int(raw["vocab_size"]),
            max_positions=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw["type_vocab_size"]),
        )
        if config.hidden_size % config.num_heads:
            raise ModelBuildError(f"{path}: hidden_size is not a multiple of the head count")
        return config


class _GraphWriter:
    """Accumulates nodes and initializers with unique, readable names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._names: set[str] = set()

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        assert name not in self._names, name
        self._names.add(name)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        assert name not in self._names, name
        self._names.add(name)
        self.nodes.append(helper.make_node(op_type, inputs, [name], name=name, **attrs))
        return name


class _BertWriter:
    """Writes the encoder layer by layer; names follow the checkpoint's weight names.

    Hidden states are kept as a [tokens, hidden] matrix between layers (every Linear is
    one 2-D GEMM); only attention reshapes to [batch, heads, sequence, head_size]. The
    query, key and value projections are one GEMM with the three weights side by side.
    """

    def __init__(self, weights: Mapping[str, np.ndarray[Any, Any]], config: BertConfig) -> None:
        self.w = weights
        self.c = config
        self.g = _GraphWriter()

    def weight(self, key: str) -> np.ndarray[Any, Any]:
        try:
            return np.ascontiguousarray(self.w[key], dtype=np.float32)
        except KeyError as exc:
            raise ModelBuildError(f"weight {key!r} is missing from the checkpoint") from exc

    def linear(
        self, x: str, prefixes: list[str], name: str, scales: list[float] | None = None
    ) -> str:
        """x @ W.T + b for checkpoint Linears (weights stored [out, in]), side by side."""
        factors = scales or [1.0] * len(prefixes)
        w = np.concatenate(
            [self.weight(f"{p}.weight").T * f for p, f in zip(prefixes, factors, strict=True)],
            axis=1,
        )
        b = np.concatenate(
            [self.weight(f"{p}.bias") * f for p, f in zip(prefixes, factors, strict=True)]
        )
        product = self.g.op("MatMul", [x, self.g.const(f"{name}.weight", w)], f"{name}/MatMul")
        return self.g.op("Add", [product, self.g.const(f"{name}.bias", b)], name)

    def layer_norm(self, x: str, prefix: str) -> str:
        gamma = self.g.const(f"{prefix}.weight", self.weight(f"{prefix}.weight"))
        beta = self.g.const(f"{prefix}.bias", self.weight(f"{prefix}.bias"))
        return self.g.op(
            "LayerNormalization", [x, gamma, beta], prefix, axis=-1, epsilon=self.c.layer_norm_eps
        )

    def embeddings(self) -> str:
        """LayerNorm(word + position + token type embeddings) as [tokens, hidden]."""
        g = self.g
        table = {
            part: g.const(
                f"embeddings.{part}_embeddings.weight",
                self.weight(f"embeddings.{part}_embeddings.weight"),
            )
            for part in ("word", "position", "token_type")
        }
        seq_len = g.op("Shape", ["input_ids"], "seq_len", start=1, end=2)
        zero = g.const("zero_1d", np.array([0], np.int64))
        positions = g.op("Slice", [table["position"], zero, seq_len, zero], "embeddings/positions")
        words = g.op("Gather", [table["word"], "input_ids"], "embeddings/words")
        types = g.op("Gather", [table["token_type"], "token_type_ids"], "embeddings/types")
        summed = g.op(
            "Add",
            [g.op("Add", [words, types], "embeddings/words_types"), positions],
            "embeddings/sum",
        )
        normed = self.layer_norm(summed, "embeddings.LayerNorm")
        rows = g.const("shape_rows", np.array([-1, self.c.hidden_size], np.int64))
        return g.op("Reshape", [normed, rows], "embeddings/rows")

    def mask_bias(self) -> str:
        """[batch, 1, 1, seq] additive bias: 0 for tokens, -10000 for padding."""
        g = self.g
        mask = g.op("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
        inverted = g.op("Sub", [g.const("one", np.array(1.0, np.float32)), mask], "mask/inverted")
        fill = g.const("mask_fill", np.array(_MASK_FILL, np.float32))
        bias = g.op("Mul", [inverted, fill], "mask/bias")
        return g.op(
            "Unsqueeze", [bias, g.const("mask_axes", np.array([1, 2], np.int64))], "mask/bias4d"
        )

    def attention(self, x: str, mask: str, prefix: str) -> str:
        g = self.g
        c = self.c
        # One GEMM for query, key and value; 1/sqrt(head_size) is folded into the query.
        parts = [f"{prefix}.self.{name}" for name in ("query", "key", "value")]
        qkv = self.linear(x, parts, f"{prefix}.self.qkv", [1.0 / math.sqrt(c.head_size), 1.0, 1.0])
        batch_seq = g.op("Shape", ["input_ids"], f"{prefix}.self/batch_seq")
        heads_shape = g.op(
            "Concat",
            [
                batch_seq,
                g.const(f"{prefix}.self/heads", np.array([3, c.num_heads, c.head_size], np.int64)),
            ],
            f"{prefix}.self/heads_shape",
            axis=0,
        )
        split = g.op("Reshape", [qkv, heads_shape], f"{prefix}.self/split")
        # [3, batch, heads, seq, head_size]
        stacked = g.op("Transpose", [split], f"{prefix}.self/stacked", perm=[2, 0, 3, 1, 4])
        q, k, v = (
            g.op(
                "Gather",
                [stacked, g.const(f"{prefix}.self/{name}_index", np.array(i, np.int64))],
                f"{prefix}.self/{name}",
                axis=0,
            )
            for i, name in enumerate(("q", "k", "v"))
        )
        k_t = g.op("Transpose", [k], f"{prefix}.self/k_t", perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [q, k_t], f"{prefix}.self/scores")
        masked = g.op("Add", [scores, mask], f"{prefix}.self/masked")
        probs = g.op("Softmax", [masked], f"{prefix}.self/probs", axis=-1)
        context = g.op("MatMul", [probs, v], f"{prefix}.self/context")
        merged = g.op("Transpose", [context], f"{prefix}.self/context_t", perm=[0, 2, 1, 3])
        rows = g.const(f"{prefix}.self/rows", np.array([-1, c.hidden_size], np.int64))
        flat = g.op("Reshape", [merged, rows], f"{prefix}.self/merged")
        out = self.linear(flat, [f"{prefix}.output.dense"], f"{prefix}.output.dense")
        residual = g.op("Add", [out, x], f"{prefix}.output/residual")
        return self.layer_norm(residual, f"{prefix}.output.LayerNorm")

    def gelu(self, x: str, prefix: str) -> str:
        """Exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), in the pattern exporters emit."""
        g = self.g
        sqrt2 = g.const(f"{prefix}/sqrt2", np.array(math.sqrt(2.0), np.float32))
        erf = g.op("Erf", [g.op("Div", [x, sqrt2], f"{prefix}/div")], f"{prefix}/erf")
        one = g.const(f"{prefix}/one", np.array(1.0, np.float32))
        half = g.const(f"{prefix}/half", np.array(0.5, np.float32))
        gated = g.op("Mul", [x, g.op("Add", [erf, one], f"{prefix}/add")], f"{prefix}/mul")
        return g.op("Mul", [gated, half], f"{prefix}/gelu")

    def layer(self, x: str, mask: str, index: int) -> str:
        prefix = f"encoder.layer.{index}"
        attended = self.attention(x, mask, f"{prefix}.attention")
        up = self.linear(attended, [f"{prefix}.intermediate.dense"], f"{prefix}.intermediate.dense")
        down = self.linear(
            self.gelu(up, f"{prefix}.intermediate"),
            [f"{prefix}.output.dense"],
            f"{prefix}.output.dense",
        )
        residual = self.g.op("Add", [down, attended], f"{prefix}.output/residual")
        return self.layer_norm(residual, f"{prefix}.output.LayerNorm")

    def model(self) -> onnx.ModelProto:
        g = self.g
        x = self.embeddings()
        mask = self.mask_bias()
        for index in range(self.c.num_layers):
            x = self.layer(x, mask, index)
        out_shape = g.op(
            "Concat",
            [
                g.op("Shape", ["input_ids"], "out/batch_seq"),
                g.const("out/hidden", np.array([self.c.hidden_size], np.int64)),
            ],
            "out/shape",
            axis=0,
        )
        g.nodes.append(helper.make_node("Reshape", [x, out_shape], [OUTPUT_NAME], name=OUTPUT_NAME))
        dims = ["batch", "sequence"]
        graph = helper.make_graph(
            g.nodes,
            "bert_encoder",
            [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in INPUT_NAMES],
            [
                helper.make_tensor_value_info(
                    OUTPUT_NAME, TensorProto.FLOAT, [*dims, self.c.hidden_size]
                )
            ],
            g.initializers,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="semantic"
        )
        model.ir_version = IR_VERSION
        return model


def build_bert_graph(
    weights: Mapping[str, np.ndarray[Any, Any]], config: BertConfig
) -> onnx.ModelProto:
    """The encoder as an ONNX model: int64 ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` [batch, sequence] in, float32 ``last_hidden_state``
    [batch, sequence, hidden] out (right padding; padded rows are meaningless).

    ``weights`` are the checkpoint tensors by name, without a ``bert.`` prefix, Linear
    weights stored [out, in] as PyTorch saves them.
    """
    model = _BertWriter(weights, config).model()
    onnx.checker.check_model(model, full_check=False)
    return model
