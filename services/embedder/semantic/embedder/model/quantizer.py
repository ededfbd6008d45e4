"""int8 variant of an fp32 graph: per-token activation and per-channel weight quantization."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from semantic.embedder.model.errors import ModelBuildError

QUANTIZER_VERSION = "1"
_MS_DOMAIN = "com.microsoft"


@dataclass(frozen=True, slots=True)
class Int8Recipe:
    """How a graph's MatMuls are quantized.

    Every MatMul whose right operand is a 2-D float initializer becomes an integer GEMM
    (onnxruntime's ``MatMulIntegerToFloat``, uint8 activations x int8 weights) unless its
    name contains one of ``exclude``:

    * weights: symmetric, one scale per output channel, ``weight_bits`` bits. 7 bits
      keep onnxruntime's AVX2 u8s8 kernel (``vpmaddubsw``) from saturating its 16-bit
      pair sums, which silently corrupts results with full 8-bit weights on CPUs
      without VNNI;
    * activations: symmetric, one scale per token (row), computed at run time from the
      row's own maximum, so a text's vector does not depend on its batch-mates.
    """

    weight_bits: int = 7
    exclude: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """Identifies the recipe in the manifest's builder version."""
        excluded = ",".join(self.exclude)
        return f"q{QUANTIZER_VERSION}-w{self.weight_bits}-x[{excluded}]"


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, recipe: Int8Recipe) -> None:
        self.model = model
        self.recipe = recipe
        self.inits = {init.name: init for init in model.graph.initializer}
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self._quantized: dict[str, tuple[str, str]] = {}
        self._zero_points: str | None = None

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        self.new_inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(
            helper.make_node(op_type, inputs, [name], name=name, domain=domain, **attrs)
        )
        return name

    def is_target(self, node: onnx.NodeProto) -> bool:
        if node.op_type != "MatMul" or node.input[1] not in self.inits:
            return False
        weight = self.inits[node.input[1]]
        if len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            return False
        return not any(pattern in node.name for pattern in self.recipe.exclude)

    def quantize_rows(self, x: str) -> tuple[str, str]:
        """uint8 codes (zero point 128) of a [rows, k] activation and its [rows, 1] scales."""
        if x in self._quantized:
            return self._quantized[x]
        if self._zero_points is None:
            rows = self.op("Shape", [x], "int8/rows", start=0, end=1)
            zero = helper.make_tensor("zp", TensorProto.UINT8, [1], [128])
            self._zero_points = self.op(
                "ConstantOfShape", [rows], "int8/row_zero_points", value=zero
            )
        amax = self.op(
            "ReduceMax", [self.op("Abs", [x], f"{x}/abs")], f"{x}/amax", axes=[1], keepdims=1
        )
        floor = self.const(f"{x}/tiny", np.array(1e-12, np.float32))
        inv127 = self.const(f"{x}/inv127", np.array(1.0 / 127.0, np.float32))
        scale = self.op(
            "Mul", [self.op("Max", [amax, floor], f"{x}/amax_safe"), inv127], f"{x}/scale"
        )
        flat = self.op(
            "Reshape", [scale, self.const(f"{x}/flat", np.array([-1], np.int64))], f"{x}/scale_1d"
        )
        codes = self.op("QuantizeLinear", [x, flat, self._zero_points], f"{x}/codes", axis=0)
        self._quantized[x] = (codes, scale)
        return codes, scale

    def quantize_weight(self, name: str) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        weight = numpy_helper.to_array(self.inits[name]).astype(np.float64)
        qmax = 2 ** (self.recipe.weight_bits - 1) - 1
        scale = np.abs(weight).max(axis=0) / qmax
        scale[scale == 0] = 1.0
        codes = np.clip(np.rint(weight / scale), -qmax, qmax).astype(np.int8)
        return codes, scale.astype(np.float32)

    def rewrite(self, node: onnx.NodeProto) -> None:
        x, weight = node.input
        codes, row_scale = self.quantize_rows(x)
        w_codes, w_scale = self.quantize_weight(weight)
        prefix = node.name or node.output[0]
        w = self.const(f"{prefix}/w_int8", w_codes)
        ws = self.const(f"{prefix}/w_scale", w_scale)
        one = self.const(f"{prefix}/a_scale", np.array(1.0, np.float32))
        zp = self.const(f"{prefix}/a_zero_point", np.array(128, np.uint8))
        product = self.op(
            "MatMulIntegerToFloat", [codes, w, one, ws, zp], f"{prefix}/int8", domain=_MS_DOMAIN
        )
        self.nodes.append(
            helper.make_node(
                "Mul", [product, row_scale], [node.output[0]], name=f"{prefix}/rescale"
            )
        )

    def run(self) -> onnx.ModelProto:
        count = 0
        for node in self.model.graph.node:
            if self.is_target(node):
                self.rewrite(node)
                count += 1
            else:
                self.nodes.append(node)
        if count == 0:
            raise ModelBuildError("no MatMul with a constant weight to quantize")
        used = {name for node in self.nodes for name in node.input}
        kept = [init for init in self.model.graph.initializer if init.name in used]
        graph = helper.make_graph(
            self.nodes,
            self.model.graph.name,
            list(self.model.graph.input),
            list(self.model.graph.output),
            kept + self.new_inits,
        )
        opsets = [o for o in self.model.opset_import if o.domain not in ("", _MS_DOMAIN)]
        out = helper.make_model(
            graph,
            opset_imports=[
                *opsets,
                helper.make_opsetid(
                    "",
                    max(o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")),
                ),
                helper.make_opsetid(_MS_DOMAIN, 1),
            ],
            producer_name=self.model.producer_name,
        )
        out.ir_version = self.model.ir_version
        return out


def quantize_int8(model: onnx.ModelProto, recipe: Int8Recipe | None = None) -> onnx.ModelProto:
    """A new model whose MatMuls with constant 2-D weights run in int8 (see Int8Recipe).

    The activations entering those MatMuls must be 2-D [tokens, features], as the graphs
    of :func:`semantic.embedder.model.bert_graph.build_bert_graph` are.
    """
    return _Rewriter(model, recipe or Int8Recipe()).run()
