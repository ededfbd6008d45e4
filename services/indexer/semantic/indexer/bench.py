"""`semantic bench indexer`: events/s from publish to committed, and freshness.

One run measures, on a throw-away stack (embedded PostgreSQL and NATS, the embedder,
search and indexer as processes):

* ``embedder_in_process``: the model's own throughput on exactly the texts the indexer
  will embed (each document's chunks), in this process, before the stack starts: the
  ceiling the indexer is compared with;
* ``indexer``: N ContentEvents published as fast as possible, timed from the first
  publish until the durable consumer has nothing pending or unacked (every event
  committed);
* ``freshness``: new events published at a steady rate; for each, the time from publish
  until its node has vectors in PostgreSQL, which is when Search can find it (search
  reads committed rows; nothing is cached);
* ``one_by_one_baseline``: the same kind of documents embedded and written one at a time
  through the same write path (one embed call and one transaction per document).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import nats
from tokenizers import Tokenizer

from semantic.common.chunking import Chunker
from semantic.common.embedder_client import EmbedderClient
from semantic.devstack.stack import LocalStack
from semantic.embedder.bench import engine_rate
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel
from semantic.indexer.settings import IndexerSettings
from semantic.search import spaces
from semantic.search.db import connection, create_pool
from semantic.search.domain import NodeRecord
from semantic.search.node_store import NodeRepository
from semantic.search.writer import ContentWriter, WriterConfig
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2


@dataclass(frozen=True)
class IndexerBenchConfig:
    """What to measure."""

    model_dir: Path
    n: int = 20_000
    dataset: Path | None = None
    rate: float = 50.0
    freshness_events: int = 1000
    baseline_n: int = 300
    threads: int = 2
    batch_size: int = IndexerSettings.model_fields["indexer_batch_size"].default
    seed: int = 7


def documents(config: IndexerBenchConfig, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """(title, body) pairs: the dataset's documents in order, or generated 30-90 word texts."""
    if config.dataset is not None:
        docs: list[tuple[str, str]] = []
        with (config.dataset / "corpus.jsonl").open(encoding="utf-8") as corpus:
            for line in corpus:
                row = json.loads(line)
                if row.get("text", "").strip():
                    docs.append((row.get("title", ""), row["text"]))
                if len(docs) >= count:
                    break
        return [docs[i % len(docs)] for i in range(count)]
    vocab = Tokenizer.from_file(str(config.model_dir / "tokenizer.json")).get_vocab()
    words = sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3)
    return [
        (" ".join(rng.choices(words, k=4)), " ".join(rng.choices(words, k=rng.randint(30, 90))))
        for _ in range(count)
    ]


def _event(node_id: str, title: str, body: str) -> bytes:
    return events_pb2.ContentEvent(
        event_id=str(uuid.uuid4()),
        op=events_pb2.CONTENT_OP_UPSERT,
        version=1,
        node=cpb.Node(id=node_id, content_type="page", title=title, body=body),
        source="bench",
    ).SerializeToString()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    if not ordered:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000, 1)

    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": round(ordered[-1] * 1000, 1)}


async def _drained(js: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = await js.consumer_info("SEMANTIC", "indexer")
        if not info.num_pending and not info.num_ack_pending:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the indexer did not drain the stream in time")


async def _throughput(stack: LocalStack, docs: list[tuple[str, str]]) -> dict[str, float]:
    nc = await nats.connect(stack.nats_url)
    try:
        js = nc.jetstream()
        payloads = [_event(f"t{i}", t, b) for i, (t, b) in enumerate(docs)]
        started = time.perf_counter()
        for start in range(0, len(payloads), 256):  # pipelined publishes, acked by JetStream
            await asyncio.gather(
                *(js.publish("semantic.content._.page", p) for p in payloads[start : start + 256])
            )
        published = time.perf_counter() - started
        await _drained(js, timeout_s=3600)
        elapsed = time.perf_counter() - started
    finally:
        await nc.close()
    return {
        "events": len(docs),
        "seconds": round(elapsed, 2),
        "publish_seconds": round(published, 2),
        "events_per_s": round(len(docs) / elapsed, 1),
    }


async def _freshness(
    stack: LocalStack, docs: list[tuple[str, str]], rate: float
) -> dict[str, float]:
    nc = await nats.connect(stack.nats_url)
    conn = await asyncpg.connect(stack.database_url)
    published: dict[str, float] = {}
    visible: dict[str, float] = {}
    done = asyncio.Event()
    try:
        js = nc.jetstream()
        table = await conn.fetchval("SELECT space_id FROM semantic.space_aliases")
        query = (
            f"SELECT DISTINCT node_id FROM semantic.vectors_{int(table)}"
            " WHERE tenant = '' AND node_id = ANY($1::text[])"
        )

        async def watch() -> None:
            while not done.is_set() or len(visible) < len(published):
                waiting = [k for k in published if k not in visible]
                if waiting:
                    for row in await conn.fetch(query, waiting):
                        visible[row["node_id"]] = time.perf_counter()
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        interval = 1.0 / rate
        start = time.perf_counter()
        for i, (title, body) in enumerate(docs):
            due = start + i * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            node_id = f"f{i}"
            await js.publish("semantic.content._.page", _event(node_id, title, body))
            published[node_id] = time.perf_counter()
        done.set()
        await asyncio.wait_for(watcher, timeout=120)
    finally:
        await conn.close()
        await nc.close()
    delays = [visible[k] - published[k] for k in published]
    return {"rate_per_s": rate, "events": len(delays), **_percentiles(delays)}


async def _one_by_one(
    stack: LocalStack, docs: list[tuple[str, str]], config: IndexerBenchConfig
) -> dict[str, float]:
    pool = await create_pool(stack.database_url, min_size=1, max_size=2)
    embedder = EmbedderClient(stack.embedder_address)
    try:
        model = await embedder.default_model(wait_s=30)
        async with connection(pool) as conn:
            space = await spaces.active_space(conn)
        chunker = Chunker(config.model_dir / "tokenizer.json", window=model.max_tokens)
        writer = ContentWriter(pool, NodeRepository(), embedder, chunker, WriterConfig())
        started = time.perf_counter()
        for i, (title, body) in enumerate(docs):
            node = NodeRecord(tenant="", id=f"b{i}", content_type="page", title=title, body=body)
            await writer.upsert(space, [node])
        elapsed = time.perf_counter() - started
    finally:
        await embedder.close()
        await pool.close()
    return {"documents": len(docs), "docs_per_s": round(len(docs) / elapsed, 1)}


def _chunk_texts(config: IndexerBenchConfig, docs: list[tuple[str, str]]) -> list[str]:
    """The texts the write path embeds for these documents (title + body, chunked)."""
    chunker = Chunker(config.model_dir / "tokenizer.json", window=256)
    texts = [" ".join(p for p in (t.strip(), b.strip()) if p) for t, b in docs]
    return [
        text[c.start : c.end]
        for text, chunks in zip(texts, chunker.split(texts), strict=True)
        for c in chunks
    ]


def run_indexer_bench(
    config: IndexerBenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Every measurement of the module doc; returns the JSON-ready report."""
    rng = random.Random(config.seed)
    docs = documents(config, config.n + config.freshness_events + config.baseline_n, rng)
    main_docs = docs[: config.n]
    fresh_docs = docs[config.n : config.n + config.freshness_events]
    baseline_docs = docs[config.n + config.freshness_events :]
    chunks = _chunk_texts(config, main_docs)
    report: dict[str, Any] = {
        "benchmark": "indexer",
        "documents": config.n,
        "documents_from": str(config.dataset) if config.dataset else "generated (30-90 words)",
        "chunks": len(chunks),
        "intra_op_threads": config.threads,
        "indexer_batch_size": config.batch_size,
    }
    progress("embedder in-process on the same texts")
    model = OnnxEmbeddingModel.load(config.model_dir, intra_op_threads=config.threads)
    chunk_rate = engine_rate(model, chunks, repeat=1)
    del model
    per_doc = len(chunks) / max(1, len(main_docs))
    report["embedder_in_process"] = {
        "chunks_per_s": chunk_rate,
        "docs_per_s": round(chunk_rate / per_doc, 1),
    }
    indexer_env = {
        "SEMANTIC_INDEXER_HEAL_INTERVAL_S": "0",
        "SEMANTIC_INDEXER_BATCH_SIZE": str(config.batch_size),
    }
    with LocalStack([config.model_dir], threads=config.threads, indexer_env=indexer_env) as stack:
        progress(f"indexer: {config.n} events, publish to committed")
        report["indexer"] = asyncio.run(_throughput(stack, main_docs))
        report["indexer"]["chunks_per_s"] = round(report["indexer"]["events_per_s"] * per_doc, 1)
        progress(f"freshness at {config.rate:g} events/s")
        report["freshness"] = asyncio.run(_freshness(stack, fresh_docs, config.rate))
        progress("baseline: one document at a time")
        report["one_by_one_baseline"] = asyncio.run(_one_by_one(stack, baseline_docs, config))
    report["ratios"] = {
        "indexer_vs_embedder_in_process": round(
            report["indexer"]["chunks_per_s"] / max(chunk_rate, 1e-9), 3
        ),
        "indexer_vs_one_by_one": round(
            report["indexer"]["events_per_s"]
            / max(report["one_by_one_baseline"]["docs_per_s"], 1e-9),
            2,
        ),
    }
    return report
