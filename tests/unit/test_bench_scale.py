"""The pure parts of `semantic bench search` at scale: the exact top 10 merged batch by
batch equals the top 10 over everything at once, the sizes measured, and the server sized
for the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from semantic.tools.bench.scale import (
    ScaleBenchConfig,
    _warm_count,
    heap_bytes,
    index_bytes,
    postgres_settings,
)
from semantic.tools.bench.scale_load import ExactTop, build_memory_mb


def test_exact_top_merged_in_batches_equals_the_top_over_everything() -> None:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(2500, 16)).astype(np.float32)
    queries = rng.normal(size=(30, 16)).astype(np.float32)
    top = ExactTop(queries, 10)
    for first in range(0, len(vectors), 700):  # uneven batches, a short last one
        top.add(vectors[first : first + 700], first)
    whole = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    assert top.answer() == [set(row.tolist()) for row in whole]


def test_exact_top_of_fewer_vectors_than_k_keeps_them_all() -> None:
    top = ExactTop(np.eye(4, dtype=np.float32), 10)
    top.add(np.eye(4, dtype=np.float32)[:3], 0)
    assert top.answer() == [{0, 1, 2}] * 4


def test_a_reference_is_measured_only_below_n() -> None:
    model = Path("models/x")
    assert ScaleBenchConfig(model, n=1_000_000).sizes == [100_000, 1_000_000]
    assert ScaleBenchConfig(model, n=100_000, precision="half").sizes == [100_000]


def test_the_server_is_sized_for_the_data() -> None:
    config = ScaleBenchConfig(Path("models/x"), n=1_000_000, precision="both")
    # 384-d float32 rows: about 1.6-2 GB of table and 2 GB of index per million; half the
    # index at half precision.
    assert 1.5e9 < heap_bytes(1_000_000, 384) < 2.2e9
    assert 1.5e9 < index_bytes(1_000_000, 384, "float32") < 2.5e9
    assert index_bytes(1_000_000, 384, "half") < 0.65 * index_bytes(1_000_000, 384, "float32")
    settings = postgres_settings(config)
    assert settings["fsync"] == "off"
    assert int(settings["shared_buffers"].removesuffix("MB")) >= 1024
    assert build_memory_mb(1_000_000, 384) > 2 * 1024  # the graph fits: an in-memory build
    assert build_memory_mb(1000, 384) == 1024


def test_a_space_is_warmed_in_proportion_to_its_size() -> None:
    config = ScaleBenchConfig(Path("models/x"), n=1_000_000, warm_queries=1000)
    assert _warm_count(config, 100_000) == 1000
    assert _warm_count(config, 1_000_000) == 10_000
    assert _warm_count(config, 150_000) == 2000  # a part of a reference size counts whole
    assert _warm_count(config, 5000) == 1000
