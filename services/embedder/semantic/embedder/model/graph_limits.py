"""What an ONNX graph can take, read from the graph itself: the rows of its position and
word-piece embedding tables (and ``max_position_embeddings`` of a ``config.json`` beside
it, when the directory has one).

A manifest is checked against these at load: a ``max_tokens`` beyond the position table
or a tokenizer with more ids than the word-piece table would make longer texts fail
inside onnxruntime on the first request that reaches them, instead of at load.

Only the names and shapes of the initializers are needed, so the file is walked at the
protobuf wire level (ModelProto.graph -> GraphProto.initializer -> TensorProto dims and
name), skipping over the weights: tens of milliseconds where parsing the whole model
with ``onnx.load`` takes about half a second for 90 MB.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from semantic.embedder.model.errors import ModelIncompatible
from semantic.embedder.model.manifest import ONNX_FILE

CONFIG_FILE = "config.json"
"""The Hugging Face configuration a model directory may carry (optional)."""


@dataclass(frozen=True)
class GraphLimits:
    """Sizes of a graph's embedding tables; None where the graph has no such table
    (rotary or relative positions, a pooled-only graph with renamed weights)."""

    positions: int | None
    """Rows of the position embedding table: the longest input in word-pieces."""
    vocabulary: int | None
    """Rows of the word-piece embedding table: the largest token id + 1."""

    @classmethod
    def read(cls, model_dir: Path) -> GraphLimits:
        """Read the tables' shapes from ``model.onnx`` (and ``config.json`` if present)."""
        onnx_path = Path(model_dir) / ONNX_FILE
        try:
            shapes = dict(initializer_shapes(onnx_path))
        except (OSError, ValueError) as exc:
            raise ModelIncompatible(onnx_path, f"not a readable ONNX file: {exc}") from exc
        positions = _rows(shapes, "position_embeddings")
        configured = _configured_positions(Path(model_dir) / CONFIG_FILE)
        if configured is not None:
            positions = configured if positions is None else min(positions, configured)
        return cls(positions=positions, vocabulary=_rows(shapes, "word_embeddings"))


def _rows(shapes: dict[str, tuple[int, ...]], table: str) -> int | None:
    """Rows of the first 2-D initializer whose name contains ``table``, or None."""
    for name, dims in shapes.items():
        if table in name and len(dims) == 2:
            return dims[0]
    return None


# Field numbers of onnx.proto: ModelProto.graph, GraphProto.initializer, TensorProto.dims
# and TensorProto.name.
_MODEL_GRAPH, _GRAPH_INITIALIZER, _TENSOR_DIMS, _TENSOR_NAME = 7, 5, 1, 8


def initializer_shapes(onnx_path: Path) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(name, dims) of every initializer of the graph in ``onnx_path``; weights are not
    read. ValueError when the file is not a well-formed ONNX protobuf."""
    data = memoryview(Path(onnx_path).read_bytes())
    if not data:
        raise ValueError("the file is empty")
    for number, graph in _fields(data):
        if number == _MODEL_GRAPH and isinstance(graph, memoryview):
            for field, tensor in _fields(graph):
                if field == _GRAPH_INITIALIZER and isinstance(tensor, memoryview):
                    yield _tensor_shape(tensor)


def _tensor_shape(tensor: memoryview) -> tuple[str, tuple[int, ...]]:
    name, dims = "", []
    for field, value in _fields(tensor):
        if field == _TENSOR_NAME and isinstance(value, memoryview):
            name = bytes(value).decode("utf-8", "replace")
        elif field == _TENSOR_DIMS:
            if isinstance(value, int):
                dims.append(value)
            else:  # packed
                at = 0
                while at < len(value):
                    dim, at = _varint(value, at)
                    dims.append(dim)
    return name, tuple(dims)


def _fields(message: memoryview) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a protobuf message: varints as int, length-delimited
    fields as a view; fixed-width fields are skipped."""
    at, end = 0, len(message)
    while at < end:
        key, at = _varint(message, at)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, at = _varint(message, at)
            yield number, value
        elif wire == 2:
            size, at = _varint(message, at)
            if at + size > end:
                raise ValueError("a field runs past the end of its message")
            yield number, message[at : at + size]
            at += size
        elif wire in (1, 5):
            at += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unexpected protobuf wire type {wire}")
    if at != end:
        raise ValueError("truncated protobuf message")


def _varint(data: memoryview, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise ValueError("truncated or oversized varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, at
        shift += 7


def _configured_positions(path: Path) -> int | None:
    """``max_position_embeddings`` of a config.json, None without the file or the key."""
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_position_embeddings")
    except (OSError, ValueError, AttributeError) as exc:
        raise ModelIncompatible(path, f"unreadable: {exc}") from exc
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ModelIncompatible(path, "max_position_embeddings must be a positive integer")
    return value
