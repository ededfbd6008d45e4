"""int8 against fp32 in one run: paired throughput passes and fidelity to reference vectors.

On a machine shared with other work, two throughputs measured minutes apart are not
comparable; here each round runs the fp32 pass and then the int8 pass over the same texts
(the engine as served: token-budget batches, ``workers`` at a time), and the ratio is the
median of the per-round ratios. Fidelity is the cosine of each model's vector with the
sentence-transformers reference vector of the same text (``minilm-reference.jsonl``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from semantic.embedder.model.manifest import ONNX_FILE
from semantic.embedder.model.onnx_model import DISABLED_OPTIMIZERS, OnnxEmbeddingModel
from semantic.embedder.precision import INT8_FLAGS, cpu_flags

REFERENCE = Path("tests/data/minilm-reference.jsonl")


def cpu_report() -> dict[str, Any]:
    """The CPU the numbers come from: its name and the int8 dot-product flags it has."""
    name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                name = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {"model_name": name, "int8_flags": sorted(cpu_flags() & INT8_FLAGS)}


Pass = Callable[[OnnxEmbeddingModel, list[str]], float]
"""Seconds of one engine pass of a model over texts (warmed up first)."""


def paired_rates(
    fp32: OnnxEmbeddingModel,
    int8: OnnxEmbeddingModel,
    texts: list[str],
    *,
    repeat: int,
    one_pass: Pass,
) -> dict[str, float]:
    """Texts/s of each (median of ``repeat`` rounds, fp32 then int8 in each) and the median
    of the rounds' int8/fp32 ratios."""
    seconds: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(repeat):
        for name, model in (("fp32", fp32), ("int8", int8)):
            seconds[name].append(one_pass(model, texts))
    ratios = [f / i for f, i in zip(seconds["fp32"], seconds["int8"], strict=True)]
    return {
        "fp32": round(len(texts) / statistics.median(seconds["fp32"]), 1),
        "int8": round(len(texts) / statistics.median(seconds["int8"]), 1),
        "int8_vs_fp32": round(statistics.median(ratios), 3),
        "rounds": repeat,
    }


def fidelity(model: OnnxEmbeddingModel, reference: Path = REFERENCE) -> dict[str, Any]:
    """Min and median cosine with the reference vectors, each text embedded alone."""
    rows = [json.loads(line) for line in reference.read_text().splitlines() if line.strip()]
    expected = np.array([row["embedding"] for row in rows], np.float64)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    vectors = np.vstack([model.embed([row["text"]], "document")[0] for row in rows])
    cosines = np.sum(vectors.astype(np.float64) * expected, axis=1)
    worst = int(np.argmin(cosines))
    return {
        "texts": len(rows),
        "min_cosine": round(float(cosines[worst]), 4),
        "median_cosine": round(float(np.median(cosines)), 4),
        "worst_text": str(rows[worst]["text"])[:60],
    }


def rewrites_cost(model: OnnxEmbeddingModel, *, rounds: int = 12) -> dict[str, Any]:
    """One batch of 8 x 256 word-pieces through a graph (one thread) as served (the
    rewrites in ``DISABLED_OPTIMIZERS`` left out) and with every onnxruntime rewrite, in
    alternating runs: median milliseconds of each, and whether the outputs agree."""
    sessions = {}
    for name, disabled in (("served", DISABLED_OPTIMIZERS), ("all_rewrites", [])):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sessions[name] = ort.InferenceSession(
            str(model.path / ONNX_FILE),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=disabled,
        )
    ids = np.random.default_rng(0).integers(1000, 20000, (8, 256)).astype(np.int64)
    names = {i.name for i in sessions["served"].get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.zeros_like(ids)
    outputs = {name: s.run(None, feeds)[0] for name, s in sessions.items()}
    seconds: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, feeds)
            seconds[name].append(time.perf_counter() - started)
    ms = {name: round(statistics.median(s) * 1000, 1) for name, s in seconds.items()}
    return {
        "disabled": list(DISABLED_OPTIMIZERS),
        "batch": "8 x 256 word-pieces, 1 thread",
        "rounds": rounds,
        "ms": ms,
        "served_vs_all_rewrites": round(ms["served"] / ms["all_rewrites"], 3),
        "max_abs_difference": float(np.abs(outputs["served"] - outputs["all_rewrites"]).max()),
    }
