"""int8 variant of an fp32 graph: per-token activations, per-channel weights, smoothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from semantic.embedder.model.errors import ModelBuildError

QUANTIZER_VERSION = "4"
_MS_DOMAIN = "com.microsoft"
_GELU_MIN = 0.17
"""Just above -min(GELU(x)) = 0.16997: the magnitude bound of a GELU output's negatives."""


@dataclass(frozen=True, slots=True)
class Int8Recipe:
    """How a graph's MatMuls are quantized.

    Every MatMul whose right operand is a 2-D float initializer becomes onnxruntime's
    ``MatMulIntegerToFloat`` (uint8 activations x int8 weights, int32 accumulation)
    unless its name contains one of ``exclude``:

    * activations: symmetric, one scale per token (row) from the row's own maximum,
      computed at run time, so a text's vector never depends on its batch-mates; the
      [rows, 1] scales are the kernel's ``a_scale``, applied as it writes its output;
    * weights: symmetric, one scale per output channel, ``weight_bits`` bits. 7 bits keep
      onnxruntime's AVX2 u8s8 kernel (``vpmaddubsw``, CPUs without VNNI) from saturating
      its 16-bit pair sums, which silently corrupts results with full 8-bit weights;
    * smoothing (SmoothQuant): LayerNorm outputs carry a few outlier channels (one
      channel of all-MiniLM-L6-v2's residual stream reaches 30 where the median is 2)
      that would set every token's scale. Each such activation is divided per channel by
      ``s = amax_x ** alpha / amax_w ** (1 - alpha)`` (rounded to a quarter octave) and
      the weights' input rows are multiplied by it. ``amax_x`` comes from a calibration run
      of the fp32 graph; ``smooth_alpha=0`` turns smoothing off.
    """

    weight_bits: int = 7
    smooth_alpha: float = 0.5
    exclude: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """Identifies the recipe in the manifest's builder version."""
        excluded = ",".join(self.exclude)
        return f"q{QUANTIZER_VERSION}-w{self.weight_bits}-s{self.smooth_alpha:g}-x[{excluded}]"


def quantize_int8(
    model: onnx.ModelProto,
    recipe: Int8Recipe | None = None,
    calibration: Sequence[np.ndarray[Any, Any]] = (),
) -> onnx.ModelProto:
    """A new model whose MatMuls with constant 2-D weights run in int8 (see Int8Recipe).

    The activations entering those MatMuls must be 2-D [tokens, features], as in the
    graphs of :func:`semantic.tools.modelbuild.bert_graph.build_bert_graph`, and the model
    must use ONNX opset 21 or later. ``calibration`` holds token-id sequences (1-D int64)
    run through the fp32 graph to measure activation ranges; it is required when the
    recipe smooths.
    """
    recipe = recipe or Int8Recipe()
    if recipe.smooth_alpha and not calibration:
        raise ModelBuildError("smoothing needs calibration sequences")
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 21:
        raise ModelBuildError(f"int8 rewriting needs ONNX opset >= 21, the graph has {opset}")
    return _Rewriter(model, recipe, calibration).run()


def _channel_amax(
    model: onnx.ModelProto, names: list[str], calibration: Sequence[np.ndarray[Any, Any]]
) -> dict[str, np.ndarray[Any, Any]]:
    """Per-channel max |value| of intermediate [tokens, features] tensors over a calibration run."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in names:
        probe.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        probe.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds_names = {i.name for i in session.get_inputs()}
    amax: dict[str, np.ndarray[Any, Any]] = {}
    for ids in calibration:
        row = np.asarray(ids, np.int64)[None, :]
        feeds = {"input_ids": row, "attention_mask": np.ones_like(row)}
        if "token_type_ids" in feeds_names:
            feeds["token_type_ids"] = np.zeros_like(row)
        for name, value in zip(names, session.run(names, feeds), strict=True):
            peak = np.abs(np.asarray(value)).reshape(-1, value.shape[-1]).max(axis=0)
            amax[name] = np.maximum(amax[name], peak) if name in amax else peak
    return amax


class _Rewriter:
    def __init__(
        self,
        model: onnx.ModelProto,
        recipe: Int8Recipe,
        calibration: Sequence[np.ndarray[Any, Any]],
    ) -> None:
        self.model = model
        self.recipe = recipe
        self.inits = {init.name: init for init in model.graph.initializer}
        self.producers = {out: node for node in model.graph.node for out in node.output}
        self.targets = [node for node in model.graph.node if self.is_target(node)]
        if not self.targets:
            raise ModelBuildError("no MatMul with a constant weight to quantize")
        self.smoothing = self.smoothing_factors(calibration) if recipe.smooth_alpha else {}
        self.nodes: list[onnx.NodeProto] = []
        self.new_inits: list[onnx.TensorProto] = []
        self._quantized: dict[str, tuple[str, str]] = {}
        self._shared: dict[str, str] = {}

    def is_target(self, node: onnx.NodeProto) -> bool:
        if node.op_type != "MatMul" or node.input[1] not in self.inits:
            return False
        weight = self.inits[node.input[1]]
        if len(weight.dims) != 2 or weight.data_type != TensorProto.FLOAT:
            return False
        return not any(pattern in node.name for pattern in self.recipe.exclude)

    def weight(self, node: onnx.NodeProto) -> np.ndarray[Any, Any]:
        return np.asarray(numpy_helper.to_array(self.inits[node.input[1]]), np.float64)

    def smoothing_factors(
        self, calibration: Sequence[np.ndarray[Any, Any]]
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Per-channel divisors (quarter octaves) for the LayerNorm outputs feeding targets."""
        sites = sorted(
            {
                node.input[0]
                for node in self.targets
                if self._producer_type(node.input[0]) == "LayerNormalization"
            }
        )
        if not sites:
            return {}
        amax = _channel_amax(self.model, sites, calibration)
        alpha = self.recipe.smooth_alpha
        factors: dict[str, np.ndarray[Any, Any]] = {}
        for site in sites:
            w_amax = np.max(
                [np.abs(self.weight(n)).max(axis=1) for n in self.targets if n.input[0] == site],
                axis=0,
            )
            raw = np.maximum(amax[site], 1e-5) ** alpha / np.maximum(w_amax, 1e-5) ** (1 - alpha)
            # Centre on 1 (geometric mean) and round to quarter octaves: tiny run-to-run
            # differences of the calibration then do not change the weights written.
            log2 = np.log2(raw)
            factors[site] = np.exp2(np.rint((log2 - log2.mean()) * 4) / 4)
        return factors

    def _producer_type(self, name: str) -> str:
        producer = self.producers.get(name)
        return producer.op_type if producer is not None else ""

    def _is_gelu(self, name: str) -> bool:
        """Whether ``name`` is an exact GELU output: a Gelu op, or the product that exporters
        write, x * (1 + Erf(x / sqrt(2))) * 0.5, with its factors in any order."""
        producer = self.producers.get(name)
        if producer is None or producer.op_type in ("Gelu", "BiasGelu"):
            return producer is not None
        factors: list[str] = []
        pending = [name]
        while pending and len(factors) < 4:
            current = pending.pop()
            node = self.producers.get(current)
            if node is not None and node.op_type == "Mul":
                pending.extend(node.input)
            else:
                factors.append(current)
        halves = [f for f in factors if self._scalar(f) == 0.5]
        for factor in factors:
            node = self.producers.get(factor)
            if node is None or node.op_type != "Add" or len(halves) != 1:
                continue
            erf = next((self.producers.get(i) for i in node.input if self._scalar(i) is None), None)
            if (
                erf is None
                or erf.op_type != "Erf"
                or not any(self._scalar(i) == 1.0 for i in node.input)
            ):
                continue
            div = self.producers.get(erf.input[0])
            if div is not None and div.op_type == "Div" and div.input[0] in factors:
                return True
        return False

    def _scalar(self, name: str) -> float | None:
        """The value of a one-element float initializer, else None."""
        init = self.inits.get(name)
        if init is None or init.data_type != TensorProto.FLOAT:
            return None
        value = numpy_helper.to_array(init)
        return float(value.reshape(-1)[0]) if value.size == 1 else None

    def const(self, name: str, value: np.ndarray[Any, Any]) -> str:
        self.new_inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, domain: str = "", **attrs: Any) -> str:
        self.nodes.append(
            helper.make_node(op_type, inputs, [name], name=name, domain=domain, **attrs)
        )
        return name

    def shared(self, name: str, value: np.ndarray[Any, Any]) -> str:
        if name not in self._shared:
            self._shared[name] = self.const(f"int8/{name}", value)
        return self._shared[name]

    def row_amax(self, x: str) -> str:
        """[rows, 1] max |x| per row, reading x once or twice but never writing a copy."""
        axes = self.shared("axis1", np.array([1], np.int64))
        top = self.op("ReduceMax", [x, axes], f"{x}/row_max", keepdims=1)
        if self._is_gelu(x):  # GELU outputs are > -0.17: only the maximum matters
            return self.op(
                "Max",
                [top, self.shared("gelu_min", np.array(_GELU_MIN, np.float32))],
                f"{x}/row_amax",
            )
        bottom = self.op("ReduceMin", [x, axes], f"{x}/row_min", keepdims=1)
        return self.op("Max", [top, self.op("Neg", [bottom], f"{x}/row_min_neg")], f"{x}/row_amax")

    def quantize_rows(self, x: str, width: int) -> tuple[str, str]:
        """uint8 codes (zero point 128) of a [rows, width] activation and its [rows, 1] scales."""
        if x in self._quantized:
            return self._quantized[x]
        source = x
        if x in self.smoothing:
            divisor = self.const(f"{x}/smooth", (1.0 / self.smoothing[x]).astype(np.float32))
            source = self.op("Mul", [x, divisor], f"{x}/smoothed")
        floor = self.shared("tiny", np.array(1e-12, np.float32))
        inv127 = self.shared("inv127", np.array(1.0 / 127.0, np.float32))
        amax = self.op("Max", [self.row_amax(source), floor], f"{x}/amax_safe")
        scale = self.op("Mul", [amax, inv127], f"{x}/scale")
        if "zero_points" not in self._shared:
            rows = self.op("Shape", [x], "int8/rows", start=0, end=1)
            shape = self.op(
                "Concat",
                [rows, self.shared("one_1d", np.array([1], np.int64))],
                "int8/zp_shape",
                axis=0,
            )
            value = helper.make_tensor("zp", TensorProto.UINT8, [1], [128])
            self._shared["zero_points"] = self.op(
                "ConstantOfShape", [shape], "int8/zero_points", value=value
            )
        codes = self.op(
            "QuantizeLinear",
            [source, scale, self._shared["zero_points"]],
            f"{x}/codes",
            axis=1,
            block_size=width,  # one block per row: a per-token scale
        )
        self._quantized[x] = (codes, scale)
        return codes, scale

    def quantize_weight(
        self, node: onnx.NodeProto
    ) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        weight = self.weight(node)
        smoothing = self.smoothing.get(node.input[0])
        if smoothing is not None:
            weight = weight * smoothing[:, None]
        qmax = 2 ** (self.recipe.weight_bits - 1) - 1
        scale = np.abs(weight).max(axis=0) / qmax
        scale[scale == 0] = 1.0
        codes = np.clip(np.rint(weight / scale), -qmax, qmax).astype(np.int8)
        return codes, scale.astype(np.float32)

    def rewrite(self, node: onnx.NodeProto) -> None:
        """One MatMulIntegerToFloat whose ``a_scale`` is the [rows, 1] per-token scale: the
        kernel applies token and channel scales to the int32 sums as it writes them.

        The bias stays a separate Add: with a per-row ``a_scale`` onnxruntime (1.31)
        multiplies its ``bias`` input by that scale too, which would corrupt every row.
        """
        codes, row_scale = self.quantize_rows(node.input[0], self.inits[node.input[1]].dims[0])
        w_codes, w_scale = self.quantize_weight(node)
        prefix = node.name or node.output[0]
        w = self.const(f"{prefix}/w_int8", w_codes)
        ws = self.const(f"{prefix}/w_scale", w_scale)
        zp = self.shared("a_zero_point", np.array(128, np.uint8))
        self.nodes.append(
            helper.make_node(
                "MatMulIntegerToFloat",
                [codes, w, row_scale, ws, zp],
                [node.output[0]],
                name=f"{prefix}/int8",
                domain=_MS_DOMAIN,
            )
        )

    def run(self) -> onnx.ModelProto:
        targets = {id(node) for node in self.targets}
        for node in self.model.graph.node:
            if id(node) in targets:
                self.rewrite(node)
            else:
                self.nodes.append(node)
        used = {name for node in self.nodes for name in node.input}
        kept = [init for init in self.model.graph.initializer if init.name in used]
        graph = helper.make_graph(
            self.nodes,
            self.model.graph.name,
            list(self.model.graph.input),
            list(self.model.graph.output),
            kept + self.new_inits,
        )
        opsets = [o for o in self.model.opset_import if o.domain != _MS_DOMAIN]
        out = helper.make_model(
            graph,
            opset_imports=[*opsets, helper.make_opsetid(_MS_DOMAIN, 1)],
            producer_name=self.model.producer_name,
        )
        out.ir_version = self.model.ir_version
        return out
