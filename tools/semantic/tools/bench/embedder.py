"""`semantic bench embedder`: throughput and latency, with the naive baseline in the same run.

Sets (seeded, reproducible): 1,000 short texts (10-15 words), 1,000 long texts (150-250
words, truncated at the model window) and 1,000 mixed (both kinds shuffled). Words come
from a BEIR corpus when ``--dataset`` is given, else from the tokenizer's vocabulary.

Measured, each as texts/s (median of ``--repeat`` runs):
- ``in_process``: the engine (token-budget micro-batches, length buckets), fp32 and int8;
  int8 against fp32 as paired passes (fp32 then int8 in each round, the ratio the median
  of the rounds'), with each model's min cosine against the reference vectors;
- ``naive``: the same model, batches of 32 in arrival order, no bucketing (the baseline);
- ``grpc``: the embedder as a separate process, ``--clients`` concurrent clients each
  sending requests of ``--request-texts`` texts;
- single short-text gRPC latency p50/p99 (sequential calls).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from tokenizers import Tokenizer

from semantic.embedder.batcher import BatchPolicy
from semantic.embedder.engine import EmbeddingEngine, EmbedLimits
from semantic.embedder.model.onnx_model import OnnxEmbeddingModel
from semantic.embedder.settings import shared_threads
from semantic.tools.bench.precision import (
    REFERENCE,
    cpu_report,
    fidelity,
    paired_rates,
    rewrites_cost,
)
from semantic.tools.devstack.service import ServiceProcess
from semantic.v1 import embedder_pb2 as pb
from semantic.v1 import embedder_pb2_grpc


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and how."""

    model_dir: Path
    int8_model_dir: Path | None
    dataset: Path | None = None
    n: int = 1000
    clients: int = 16
    request_texts: int = 8
    threads: int = 2
    workers: int = 2
    repeat: int = 3
    latency_calls: int = 300
    seed: int = 13
    reference: Path | None = REFERENCE
    """Reference vectors for the fidelity check (skipped when the file is missing)."""
    precision_only: bool = False
    """Only the paired int8/fp32 passes and fidelity (no naive, gRPC or latency runs)."""


def _words(config: BenchConfig) -> list[str]:
    if config.dataset is not None:
        words: list[str] = []
        with (config.dataset / "corpus.jsonl").open() as corpus:
            for line in corpus:
                words.extend(json.loads(line)["text"].split())
                if len(words) > 200_000:
                    break
        return words
    vocab = Tokenizer.from_file(str(config.model_dir / "tokenizer.json")).get_vocab()
    return sorted(w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3)


def make_texts(words: Sequence[str], n: int, low: int, high: int, rng: random.Random) -> list[str]:
    """``n`` texts of ``low``-``high`` words drawn from ``words``."""
    return [" ".join(rng.choices(words, k=rng.randint(low, high))) for _ in range(n)]


def _rate(n: int, runs: Callable[[], None], repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        runs()
        timings.append(time.perf_counter() - started)
    return round(n / statistics.median(timings), 1)


def naive_rate(model: OnnxEmbeddingModel, texts: list[str], repeat: int) -> float:
    """Batches of 32 in arrival order, padded to each batch's longest text."""

    def run() -> None:
        for start in range(0, len(texts), 32):
            model.embed(texts[start : start + 32], "document")

    return _rate(len(texts), run, repeat)


def engine_rate(
    model: OnnxEmbeddingModel, texts: list[str], repeat: int, *, workers: int = 1
) -> float:
    """All texts offered at once, as many 8-text callers would; the batcher buckets them."""
    timings = engine_seconds(model, texts, repeat=repeat, warmup=texts, workers=workers)
    return round(len(texts) / statistics.median(timings), 1)


def engine_seconds(
    model: OnnxEmbeddingModel,
    texts: list[str],
    *,
    repeat: int = 1,
    warmup: list[str],
    workers: int = 1,
) -> list[float]:
    """Seconds of each of ``repeat`` passes of the engine (``workers`` batches at a time)
    over ``texts`` (offered at once, in 8-text calls), after one untimed pass over
    ``warmup``."""

    async def run_once(engine: EmbeddingEngine, batch: list[str]) -> None:
        calls = [engine.embed(batch[i : i + 8]) for i in range(0, len(batch), 8)]
        await asyncio.gather(*calls)

    async def measure() -> list[float]:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            engine = EmbeddingEngine(
                [model],
                executor=pool,
                policy=BatchPolicy(max_pending=max(len(texts), len(warmup)) + 64, workers=workers),
                limits=EmbedLimits(),
            )
            engine.start()
            try:
                await run_once(engine, warmup)
                timings = []
                for _ in range(repeat):
                    started = time.perf_counter()
                    await run_once(engine, texts)
                    timings.append(time.perf_counter() - started)
            finally:
                await engine.close()
        return timings

    return asyncio.run(measure())


def _server(model_dirs: Sequence[Path], threads: int, workers: int) -> ServiceProcess:
    """The embedder as a child process on a free port."""
    return ServiceProcess.spawn(
        "semantic.embedder",
        {
            "SEMANTIC_EMBEDDER_MODEL_DIRS": ",".join(str(p) for p in model_dirs),
            "SEMANTIC_EMBEDDER_INTRA_OP_THREADS": str(threads),
            "SEMANTIC_EMBEDDER_WORKERS": str(workers),
            "SEMANTIC_EMBEDDER_MAX_PENDING": "100000",
            "SEMANTIC_LOG_LEVEL": "warning",
        },
    )


async def _grpc_rate(
    address: str, texts: list[str], *, clients: int, per_request: int, repeat: int, model_id: str
) -> float:
    requests = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)

        async def run_once() -> None:
            queue = list(reversed(requests))

            async def client() -> None:
                while queue:
                    batch = queue.pop()
                    await stub.Embed(pb.EmbedRequest(texts=batch, model_id=model_id))

            await asyncio.gather(*(client() for _ in range(clients)))

        await run_once()  # warm-up
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            await run_once()
            timings.append(time.perf_counter() - started)
    return round(len(texts) / statistics.median(timings), 1)


async def _latency(address: str, queries: list[str]) -> dict[str, float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        for query in queries[:20]:  # warm-up
            await stub.Embed(pb.EmbedRequest(texts=[query], input_type=pb.INPUT_TYPE_QUERY))
        samples = []
        for query in queries:
            started = time.perf_counter()
            await stub.Embed(pb.EmbedRequest(texts=[query], input_type=pb.INPUT_TYPE_QUERY))
            samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2], 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "calls": len(ordered),
    }


def load_as_served(model_dir: Path, threads: int, workers: int) -> OnnxEmbeddingModel:
    """The model as the service loads it with these threads and workers."""
    return OnnxEmbeddingModel.load(
        model_dir, intra_op_threads=threads, shared_threads=shared_threads(threads, workers)
    )


def run_bench(
    config: BenchConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Run every measurement; returns the JSON-ready report."""
    rng = random.Random(config.seed)
    fp32 = load_as_served(config.model_dir, config.threads, config.workers)
    words = _words(config)
    short = make_texts(words, config.n, 10, 15, rng)
    long = make_texts(words, config.n, 150, 250, rng)
    mixed = short[: config.n // 2] + long[: config.n - config.n // 2]
    rng.shuffle(mixed)
    sets = {"short": short, "long": long, "mixed": mixed}
    report: dict[str, Any] = {
        "benchmark": "embedder",
        "model": fp32.manifest.model_id,
        "texts_per_set": config.n,
        "intra_op_threads": config.threads,
        "workers": config.workers,
        "cpu_count": os.cpu_count(),
        "words_from": str(config.dataset) if config.dataset else "tokenizer vocabulary",
        "unit": "texts/s (median of repeats)",
    }
    if not config.precision_only:
        progress("naive baseline")
        report["naive_fp32"] = {k: naive_rate(fp32, v, config.repeat) for k, v in sets.items()}
        progress("in-process fp32")
        report["in_process_fp32"] = {
            k: engine_rate(fp32, v, config.repeat, workers=config.workers) for k, v in sets.items()
        }
    models = {"fp32": (config.model_dir, fp32.manifest.model_id)}
    if config.int8_model_dir is not None:
        int8 = load_as_served(config.int8_model_dir, config.threads, config.workers)
        report.update(compare_precisions(config, fp32, int8, sets, progress))
        models["int8"] = (config.int8_model_dir, int8.manifest.model_id)
    if config.precision_only:
        return report
    del fp32
    server = _server([m[0] for m in models.values()], config.threads, config.workers)
    try:
        asyncio.run(server.wait_serving())
        for name, (_, model_id) in models.items():
            progress(f"grpc {name}")
            report[f"grpc_{name}_{config.clients}_clients"] = {
                k: asyncio.run(
                    _grpc_rate(
                        server.address,
                        sets[k],
                        clients=config.clients,
                        per_request=config.request_texts,
                        repeat=config.repeat,
                        model_id=model_id,
                    )
                )
                for k in ("short", "long")
            }
        progress("latency")
        queries = make_texts(words, config.latency_calls, 3, 8, rng)
        report["grpc_single_query_latency"] = asyncio.run(_latency(server.address, queries))
    finally:
        server.stop()
    report["ratios"] = _ratios(report, config.clients)
    return report


def compare_precisions(
    config: BenchConfig,
    fp32: OnnxEmbeddingModel,
    int8: OnnxEmbeddingModel,
    sets: dict[str, list[str]],
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """int8 against fp32: paired engine passes on short and long texts, fidelity to the
    reference vectors, and the CPU (see ``semantic.tools.bench.precision``)."""

    def one_pass(model: OnnxEmbeddingModel, texts: list[str]) -> float:
        warmup = texts[: min(len(texts), 64)]
        return engine_seconds(model, texts, warmup=warmup, workers=config.workers)[0]

    progress("int8 vs fp32, interleaved")
    paired = {
        k: paired_rates(fp32, int8, sets[k], repeat=config.repeat, one_pass=one_pass)
        for k in ("short", "long")
    }
    out: dict[str, Any] = {
        "cpu": cpu_report(),
        "int8_vs_fp32_paired": paired,
        "in_process_int8": {k: v["int8"] for k, v in paired.items()},
    }
    progress("int8 graph as served against every onnxruntime rewrite")
    out["int8_rewrites"] = rewrites_cost(int8)
    if config.reference is not None and config.reference.is_file():
        progress("fidelity to the reference vectors")
        out["fidelity"] = {"fp32": fidelity(fp32, config.reference)}
        out["fidelity"]["int8"] = fidelity(int8, config.reference)
    return out


def _ratios(report: dict[str, Any], clients: int) -> dict[str, float]:
    ours, naive = report["in_process_fp32"], report["naive_fp32"]
    grpc_fp32 = report[f"grpc_fp32_{clients}_clients"]
    ratios = {
        "mixed_in_process_vs_naive": round(ours["mixed"] / naive["mixed"], 3),
        "short_in_process_vs_naive": round(ours["short"] / naive["short"], 3),
        "long_in_process_vs_naive": round(ours["long"] / naive["long"], 3),
        "grpc_vs_in_process_short": round(grpc_fp32["short"] / ours["short"], 3),
        "grpc_vs_in_process_long": round(grpc_fp32["long"] / ours["long"], 3),
    }
    if "int8_vs_fp32_paired" in report:
        paired = report["int8_vs_fp32_paired"]
        ratios["int8_vs_fp32_long"] = paired["long"]["int8_vs_fp32"]
        ratios["int8_vs_fp32_short"] = paired["short"]["int8_vs_fp32"]
    return ratios
