"""`semantic bench discover`: how many documents of a BEIR corpus get a discovered `similar`
relation at each threshold, and what discovery costs next to ingesting them.

One run, on a throw-away stack (embedded PostgreSQL, the embedder, the search service; the
search service's default chunking):

* ``ingest``: every document upserted through ``Search.Upsert`` (embed + write), timed:
  the baseline;
* ``thresholds``: every document's close nodes, found the way discovery finds them (the
  HNSW index's nearest, scored by mean `content` vectors) at the lowest threshold asked;
  per threshold, the share of documents with at least one at or above it and the mean
  number of edges a document would get at ``k``;
* ``discovery``: a whole discovery run over the corpus at ``threshold`` and ``k`` (what the
  heal loop does after a bulk load), timed, with the edges it wrote;
* ``due_count_ms``: the count of due nodes each heal-loop step ends with (median of 5);
* ``examples``: with ``examples`` > 0, that many pairs of titles per band of similarity
  (deterministic: the pairs whose ids hash lowest), to see what a threshold means.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from semantic.core.discovery import START, DiscoveryConfig, RelationDiscovery
from semantic.core.settings import RelationDiscoverySettings
from semantic.store.postgres.db import create_pool, default_session_settings
from semantic.store.postgres.discovery import PostgresDiscovery
from semantic.store.postgres.spaces import PostgresSpaces
from semantic.tools.devstack.stack import LocalStack
from semantic.tools.evaluation.beir import BeirDataset, load_beir
from semantic.tools.evaluation.runner import ingest_corpus
from semantic.v1 import search_pb2_grpc

_DEFAULTS = RelationDiscoverySettings.model_fields
SCAN_BATCH = 256


@dataclass(frozen=True)
class DiscoverBenchConfig:
    """What to measure."""

    dataset: Path
    model_dir: Path
    thresholds: Sequence[float] = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
    threshold: float = _DEFAULTS["relations_similar_threshold"].default
    k: int = _DEFAULTS["relations_similar_k"].default
    batch_size: int = _DEFAULTS["relations_discover_batch_size"].default
    threads: int = 2
    upsert_batch: int = 32
    examples: int = 0


def run_discover_bench(
    config: DiscoverBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build the stack, ingest, measure; the JSON-ready report."""
    data = load_beir(config.dataset)
    progress(f"loaded {data.name}: {len(data.corpus)} documents")
    manifest = json.loads((config.model_dir / "manifest.json").read_text())
    with LocalStack([config.model_dir], threads=config.threads) as stack:
        report = asyncio.run(_measure(stack, data, config, progress))
    return {"dataset": data.name, "model": manifest["model_id"], **report}


async def _measure(
    stack: LocalStack,
    data: BeirDataset,
    config: DiscoverBenchConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(stack.search_address) as channel:
        started = time.perf_counter()
        vectors = await ingest_corpus(
            search_pb2_grpc.SearchStub(channel), data, batch=config.upsert_batch
        )
        ingest_s = time.perf_counter() - started
    documents = len(data.corpus)
    progress(f"ingested {documents} documents ({vectors} vectors) in {ingest_s:.0f} s")
    pool = await create_pool(
        stack.database_url, min_size=1, max_size=2, session_settings=default_session_settings()
    )
    try:
        space = await PostgresSpaces(pool).active()
        store = PostgresDiscovery(pool)
        thresholds = sorted(config.thresholds)
        scan = RelationDiscovery(store, DiscoveryConfig(thresholds[0], config.k, SCAN_BATCH))
        due = await store.due(space, START, documents + 1)
        best: list[list[float]] = []
        pairs: dict[tuple[str, str], float] = {}
        started = time.perf_counter()
        for i in range(0, len(due), SCAN_BATCH):
            batch = due[i : i + SCAN_BATCH]
            for tenant in sorted({n.tenant for n in batch}):
                nodes = [n for n in batch if n.tenant == tenant]
                close = await scan.close_to(space, tenant, nodes, {})
                for node in nodes:
                    best.append([n.similarity for n in close[node.node_id]])
                    for n in close[node.node_id]:
                        pairs[min(node.node_id, n.node_id), max(node.node_id, n.node_id)] = (
                            n.similarity
                        )
        scan_s = time.perf_counter() - started
        progress(f"scored the neighbours of {len(best)} documents in {scan_s:.0f} s")
        shares = {
            f"{t:g}": {
                "share_with_an_edge": round(sum(1 for s in best if s and s[0] >= t) / len(best), 4),
                "mean_edges": round(
                    sum(min(config.k, sum(1 for x in s if x >= t)) for s in best) / len(best), 3
                ),
            }
            for t in thresholds
        }
        discovery = RelationDiscovery(
            store, DiscoveryConfig(config.threshold, config.k, config.batch_size)
        )
        started = time.perf_counter()
        done = await discovery.run(space)
        run_s = time.perf_counter() - started
        progress(f"discovery examined {done.examined} nodes in {run_s:.0f} s")
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            await store.pending(space)
            timings.append((time.perf_counter() - started) * 1000)
    finally:
        await pool.close()
    return {
        "documents": documents,
        "vectors": vectors,
        "ingest": {
            "seconds": round(ingest_s, 1),
            "documents_per_s": round(documents / ingest_s, 1),
        },
        "thresholds": shares,
        "discovery": {
            "threshold": config.threshold,
            "k": config.k,
            "seconds": round(run_s, 1),
            "nodes_per_s": round(done.examined / run_s, 1) if run_s else None,
            "share_of_ingest_time": round(run_s / ingest_s, 3),
            **done.as_dict(),
        },
        "due_count_ms": round(statistics.median(timings), 1),
        "examples": _examples(pairs, thresholds, data, config.examples),
    }


def _examples(
    pairs: dict[tuple[str, str], float], bands: Sequence[float], data: BeirDataset, count: int
) -> dict[str, list[dict[str, Any]]]:
    """``count`` pairs of titles per band [bands[i], bands[i + 1]), the last one open."""
    if count <= 0:
        return {}

    def rank(pair: tuple[str, str]) -> str:
        return hashlib.sha256("\x00".join(pair).encode()).hexdigest()

    out: dict[str, list[dict[str, Any]]] = {}
    edges = [*bands, 1.01]
    for low, high in itertools.pairwise(edges):
        inside = sorted((p for p, s in pairs.items() if low <= s < high), key=rank)[:count]
        out[f"{low:g}-{min(high, 1.0):g}"] = [
            {
                "cosine": round(pairs[p], 3),
                "a": f"{p[0]}: {data.corpus[p[0]].title}",
                "b": f"{p[1]}: {data.corpus[p[1]].title}",
            }
            for p in inside
        ]
    return out
