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

OPSET = 21
"""LayerNormalization needs opset 17; 21 allows per-row (blocked) QuantizeLinear for int8."""
IR_VERSION = 10
"""The IR version of opset 21 (onnx 1.23 would write 14; onnxruntime 1.31 reads at most 13)."""
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
OUTPUT_NAME = "last_hidden_state"
CONTRIB_DOMAIN = "com.microsoft"
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
    one 2-D GEMM, and the int8 rewrite can scale each token's row); only attention sees
    [batch, heads, sequence, head_size]. With standard operators the query, key and value
    projections are one GEMM with the three weights side by side; with ``fused`` they are
    three GEMMs feeding onnxruntime's MultiHeadAttention.
    """

    def __init__(
        self, weights: Mapping[str, np.ndarray[Any, Any]], config: BertConfig, *, fused: bool
    ) -> None:
        self.w = weights
        self.c = config
        self.fused = fused
        self.g = _GraphWriter()
        self.batch_seq = self.g.op("Shape", ["input_ids"], "batch_seq")
        self.mask = self.padding_keys() if fused else self.mask_bias()

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

    def attention(self, x: str, prefix: str) -> str:
        """Self-attention, output projection, residual and LayerNorm."""
        context = (
            self.fused_attention_core(x, f"{prefix}.self")
            if self.fused
            else self.attention_core(x, f"{prefix}.self")
        )
        return self.dense_residual_norm(context, x, f"{prefix}.output")

    def attention_core(self, x: str, prefix: str) -> str:
        """Standard operators; one GEMM for query, key and value, 1/sqrt(d) folded into query."""
        g = self.g
        c = self.c
        parts = [f"{prefix}.{name}" for name in ("query", "key", "value")]
        qkv = self.linear(x, parts, f"{prefix}.qkv", [1.0 / math.sqrt(c.head_size), 1.0, 1.0])
        heads = g.const(f"{prefix}/heads", np.array([3, c.num_heads, c.head_size], np.int64))
        heads_shape = g.op("Concat", [self.batch_seq, heads], f"{prefix}/heads_shape", axis=0)
        split = g.op("Reshape", [qkv, heads_shape], f"{prefix}/split")
        # [3, batch, heads, seq, head_size]
        stacked = g.op("Transpose", [split], f"{prefix}/stacked", perm=[2, 0, 3, 1, 4])
        q, k, v = (
            g.op(
                "Gather",
                [stacked, g.const(f"{prefix}/{name}_index", np.array(i, np.int64))],
                f"{prefix}/{name}",
                axis=0,
            )
            for i, name in enumerate(("q", "k", "v"))
        )
        k_t = g.op("Transpose", [k], f"{prefix}/k_t", perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [q, k_t], f"{prefix}/scores")
        masked = g.op("Add", [scores, self.mask], f"{prefix}/masked")
        probs = g.op("Softmax", [masked], f"{prefix}/probs", axis=-1)
        context = g.op("MatMul", [probs, v], f"{prefix}/context")
        merged = g.op("Transpose", [context], f"{prefix}/context_t", perm=[0, 2, 1, 3])
        rows = g.const(f"{prefix}/rows", np.array([-1, c.hidden_size], np.int64))
        return g.op("Reshape", [merged, rows], f"{prefix}/merged")

    def padding_keys(self) -> str:
        """[tokens, heads * (head_size + 1)]: 0 everywhere but in each head's extra key
        column, where padding gets -10000 * sqrt(head_size) (see fused_attention_core)."""
        g = self.g
        c = self.c
        mask = g.op("Cast", ["attention_mask"], "mask/float", to=TensorProto.FLOAT)
        inverted = g.op("Sub", [g.const("one", np.array(1.0, np.float32)), mask], "mask/inverted")
        rows = g.op(
            "Reshape",
            [inverted, g.const("mask/rows_shape", np.array([-1, 1], np.int64))],
            "mask/rows",
        )
        extra = np.zeros((c.num_heads, c.head_size + 1), np.float32)
        extra[:, -1] = _MASK_FILL * math.sqrt(c.head_size)
        return g.op("Mul", [rows, g.const("mask/extra_column", extra.reshape(-1))], "mask/keys")

    def fused_attention_core(self, x: str, prefix: str) -> str:
        """onnxruntime's MultiHeadAttention: scale, softmax and heads in one kernel.

        The kernel's flash-attention path (tiled, no [seq, seq] scores in memory) runs only
        without a padding mask, so padding is written into the keys instead: query and key
        heads get one extra column, 1 in every query and 0 in every key but padding's,
        where it is -10000 * sqrt(head_size). A padded key then scores -10000 after
        scaling, whose exp() is exactly 0, as with a mask; the extra columns come from
        zero weights and a bias, so the projections stay single GEMMs.
        """
        g = self.g
        c = self.c
        heads, size = c.num_heads, c.head_size

        def with_extra_column(value: np.ndarray[Any, Any], fill: float) -> np.ndarray[Any, Any]:
            """[..., heads * size] -> [..., heads * (size + 1)], ``fill`` in each new column."""
            split = value.reshape(*value.shape[:-1], heads, size)
            column = np.full((*split.shape[:-1], 1), fill, np.float32)
            return np.concatenate([split, column], axis=-1).reshape(*value.shape[:-1], -1)

        projected = []
        biases = []
        for name in ("query", "key", "value"):
            weight = self.weight(f"{prefix}.{name}.weight").T
            bias = self.weight(f"{prefix}.{name}.bias")
            if name != "value":
                weight = with_extra_column(weight, 0.0)
                bias = with_extra_column(bias, 1.0 if name == "query" else 0.0)
            product = g.op(
                "MatMul",
                [x, g.const(f"{prefix}.{name}.weight", np.ascontiguousarray(weight))],
                f"{prefix}.{name}/MatMul",
            )
            if name == "key":
                product = g.op("Add", [product, self.mask], f"{prefix}.key/padding")
            width = g.const(f"{prefix}/{name}_width", np.array([weight.shape[1]], np.int64))
            shape = g.op("Concat", [self.batch_seq, width], f"{prefix}/{name}_shape", axis=0)
            projected.append(g.op("Reshape", [product, shape], f"{prefix}.{name}/bsh"))
            biases.append(bias)
        attended = g.op(
            "MultiHeadAttention",
            [*projected, g.const(f"{prefix}.qkv.bias", np.concatenate(biases))],
            f"{prefix}/mha",
            domain=CONTRIB_DOMAIN,
            num_heads=heads,
            scale=1.0 / math.sqrt(size),
        )
        rows = g.const(f"{prefix}/rows", np.array([-1, c.hidden_size], np.int64))
        return g.op("Reshape", [attended, rows], f"{prefix}/merged")

    def gelu(self, x: str, prefix: str) -> str:
        """Exact GELU, 0.5 * x * (1 + erf(x / sqrt(2))), in the pattern exporters emit."""
        g = self.g
        sqrt2 = g.const(f"{prefix}/sqrt2", np.array(math.sqrt(2.0), np.float32))
        erf = g.op("Erf", [g.op("Div", [x, sqrt2], f"{prefix}/div")], f"{prefix}/erf")
        one = g.const(f"{prefix}/one", np.array(1.0, np.float32))
        half = g.const(f"{prefix}/half", np.array(0.5, np.float32))
        gated = g.op("Mul", [x, g.op("Add", [erf, one], f"{prefix}/add")], f"{prefix}/mul")
        return g.op("Mul", [gated, half], f"{prefix}/gelu")

    def layer(self, x: str, index: int) -> str:
        prefix = f"encoder.layer.{index}"
        attended = self.attention(x, f"{prefix}.attention")
        up = self.linear(attended, [f"{prefix}.intermediate.dense"], f"{prefix}.intermediate.dense")
        return self.dense_residual_norm(
            self.gelu(up, f"{prefix}.intermediate"), attended, f"{prefix}.output"
        )

    def dense_residual_norm(self, x: str, residual: str, prefix: str) -> str:
        """LayerNorm(x @ W.T + b + residual) for ``{prefix}.dense`` and ``{prefix}.LayerNorm``.

        Standard operators in both graphs: onnxruntime's SkipLayerNormalization, which
        fuses the bias, the residual and the norm, ran slower than the three (1.31, CPU).
        """
        out = self.linear(x, [f"{prefix}.dense"], f"{prefix}.dense")
        residual = self.g.op("Add", [out, residual], f"{prefix}/residual")
        return self.layer_norm(residual, f"{prefix}.LayerNorm")

    def model(self) -> onnx.ModelProto:
        g = self.g
        x = self.embeddings()
        for index in range(self.c.num_layers):
            x = self.layer(x, index)
        hidden = g.const("out/hidden", np.array([self.c.hidden_size], np.int64))
        out_shape = g.op("Concat", [self.batch_seq, hidden], "out/shape", axis=0)
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
        opsets = [helper.make_opsetid("", OPSET)]
        if self.fused:
            opsets.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name="semantic")
        model.ir_version = IR_VERSION
        return model


def build_bert_graph(
    weights: Mapping[str, np.ndarray[Any, Any]],
    config: BertConfig,
    *,
    fused_attention: bool = False,
) -> onnx.ModelProto:
    """The encoder as an ONNX model: int64 ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` [batch, sequence] in, float32 ``last_hidden_state``
    [batch, sequence, hidden] out (right padding; padded rows are meaningless).

    ``weights`` are the checkpoint tensors by name, without a ``bert.`` prefix, Linear
    weights stored [out, in] as PyTorch saves them. ``fused_attention`` writes the
    attention core as onnxruntime's ``MultiHeadAttention`` instead of standard operators
    (the graph then runs on onnxruntime only).
    """
    model = _BertWriter(weights, config, fused=fused_attention).model()
    onnx.checker.check_model(model, full_check=False)
    return model
