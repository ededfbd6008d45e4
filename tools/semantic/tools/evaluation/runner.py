"""`semantic eval`: a BEIR dataset through the real write path and gRPC Search.

Documents (title + " " + text) are upserted through ``Search.Upsert`` on a throw-away
local stack (embedded PostgreSQL, the embedder with the chosen model, the search
service; or a given database, where the ingest may be skipped to score what is already
there, as the restore drill does), then every query of the split is asked through
``Search.Search`` in each mode and the rankings are scored with trec_eval's definitions.

Hybrid mode may be asked once per fusion and keyword weight (a sweep over one ingest), and
the queries of several splits may be scored on the same stack: tune on ``dev``, report
``test``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from semantic.tools.devstack.stack import LocalStack
from semantic.tools.evaluation.beir import BeirDataset, load_beir
from semantic.tools.evaluation.metrics import evaluate
from semantic.tools.evaluation.modifiers import modifier_effect
from semantic.tools.progress import progress_bar
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

MODES = {
    "dense": pb.SEARCH_MODE_DENSE,
    "keyword": pb.SEARCH_MODE_KEYWORD,
    "hybrid": pb.SEARCH_MODE_HYBRID,
}
FUSIONS = {
    "rrf": pb.FUSION_RRF,
    "relative_score": pb.FUSION_RELATIVE_SCORE,
    "distribution": pb.FUSION_DISTRIBUTION,
}


@dataclass(frozen=True)
class Run:
    """One way of asking the queries: a mode, and for hybrid a fusion, a keyword weight, an
    RRF k, a number of candidates per side and a query expansion (each None: the server
    default)."""

    mode: str
    fusion: str | None = None
    keyword_weight: float | None = None
    rrf_k: int | None = None
    candidates: int | None = None
    expansion_docs: int | None = None
    expansion_weight: float | None = None

    @property
    def label(self) -> str:
        """The run's name in the report: the mode, then the hybrid choices made."""
        parts = [self.mode]
        if self.fusion is not None:
            parts.append(self.fusion)
        if self.keyword_weight is not None:
            parts.append(f"kw={self.keyword_weight:g}")
        if self.rrf_k is not None:
            parts.append(f"k={self.rrf_k}")
        if self.candidates is not None:
            parts.append(f"candidates={self.candidates}")
        if self.expansion_docs is not None:
            parts.append(f"expansion={self.expansion_docs}")
        if self.expansion_weight is not None:
            parts.append(f"expansion_weight={self.expansion_weight:g}")
        return " ".join(parts)

    def request(self, text: str, top_k: int) -> pb.SearchRequest:
        """The Search request of this run for one query."""
        request = pb.SearchRequest(text=text, mode=MODES[self.mode], top_k=top_k)
        if self.fusion is not None:
            request.hybrid.fusion = FUSIONS[self.fusion]
        if self.keyword_weight is not None:
            request.hybrid.keyword_weight = self.keyword_weight
        if self.rrf_k is not None:
            request.hybrid.rrf_k = self.rrf_k
        if self.candidates is not None:
            request.hybrid.candidates = self.candidates
        if self.expansion_docs is not None:
            request.hybrid.expansion_docs = self.expansion_docs
        if self.expansion_weight is not None:
            request.hybrid.expansion_weight = self.expansion_weight
        return request


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate."""

    dataset: Path
    model_dir: Path
    modes: Sequence[str] = ("dense", "keyword", "hybrid")
    chunking: bool = True
    split: str = "test"
    more_splits: Sequence[str] = ()
    """Also score the queries of these splits (same ingest), reported under ``splits``."""
    fusions: Sequence[str] = ()
    """Hybrid mode once per fusion (empty: once, with the server default)."""
    keyword_weights: Sequence[float] = ()
    """Hybrid mode once per keyword weight, dense weight 1 (empty: the server default)."""
    rrf_ks: Sequence[int] = ()
    """RRF runs once per k (empty: the server default); the score fusions do not use k."""
    candidates: Sequence[int] = ()
    """Hybrid mode once per number of candidates per side (empty: the server default)."""
    expansion_docs: Sequence[int] = ()
    """Hybrid mode once per number of query expansion hits (empty: the server default)."""
    expansion_weights: Sequence[float] = ()
    """Hybrid mode once per query expansion weight (empty: the server default); with 0
    expansion hits only the first weight runs (the weight does not matter then)."""
    top_k: int = 100
    threads: int = 2
    batch: int = 32
    concurrency: int = 2
    database_url: str | None = None
    """Run the stack on this database instead of a throw-away PostgreSQL."""
    ingest: bool = True
    """False: query the documents already in the database (after a restore, say)."""
    search_env: Mapping[str, str] = field(default_factory=dict)
    """More environment for the search service (e.g. ``SEMANTIC_SEARCH_EF_SEARCH``)."""
    modifiers: bool = False
    """Also measure score modifiers on synthetic success rates (``evaluation.modifiers``)."""


async def ingest_corpus(
    stub: search_pb2_grpc.SearchStub, data: BeirDataset, *, batch: int = 32, concurrency: int = 2
) -> int:
    """Upsert every document of ``data`` (``batch`` per call, ``concurrency`` calls at a time)
    as a node of content type "document"; returns the vectors written."""
    docs = list(data.corpus.values())
    batches = [docs[i : i + batch] for i in range(0, len(docs), batch)]
    queue = list(reversed(batches))

    async def worker() -> int:
        written = 0
        while queue:
            chunk = queue.pop()
            nodes = [
                cpb.Node(id=d.id, content_type="document", title=d.title, body=d.text)
                for d in chunk
            ]
            reply = await stub.Upsert(pb.UpsertRequest(nodes=nodes), timeout=600)
            written += sum(r.vectors_written for r in reply.results)
            bar.update(len(chunk))
        return written

    with progress_bar(len(docs), "documents") as bar:
        return sum(await asyncio.gather(*(worker() for _ in range(concurrency))))


def runs_of(config: EvalConfig) -> list[Run]:
    """Every run the config asks for, in report order."""
    out: list[Run] = []
    for mode in config.modes:
        if mode != "hybrid":
            out.append(Run(mode))
            continue
        fusions: Sequence[str | None] = config.fusions or [None]
        weights: Sequence[float | None] = config.keyword_weights or [None]
        candidates: Sequence[int | None] = config.candidates or [None]
        all_docs: Sequence[int | None] = config.expansion_docs or [None]
        all_weights: Sequence[float | None] = config.expansion_weights or [None]
        expansions = [
            (docs, expansion_weight)
            for docs in all_docs
            for expansion_weight in (all_weights[:1] if docs == 0 else all_weights)
        ]
        for fusion in fusions:
            ks: Sequence[int | None] = (
                config.rrf_ks if config.rrf_ks and fusion in (None, "rrf") else [None]
            )
            out.extend(
                Run(mode, fusion, weight, k, pool, docs, expansion_weight)
                for docs, expansion_weight in expansions
                for pool in candidates
                for k in ks
                for weight in weights
            )
    return out


async def _run_mode(
    stub: search_pb2_grpc.SearchStub, data: BeirDataset, run: Run, config: EvalConfig
) -> dict[str, list[str]]:
    ranked: dict[str, list[str]] = {}
    pending = list(data.queries.items())

    async def worker() -> None:
        while pending:
            query_id, text = pending.pop()
            reply = await stub.Search(run.request(text, config.top_k), timeout=120)
            ranked[query_id] = [hit.node.id for hit in reply.hits]

    await asyncio.gather(*(worker() for _ in range(config.concurrency)))
    return ranked


async def _evaluate(
    address: str,
    splits: Sequence[BeirDataset],
    config: EvalConfig,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    data = splits[0]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        vectors, ingest_s = 0, 0.0
        if config.ingest:
            started = time.perf_counter()
            vectors = await ingest_corpus(
                stub, data, batch=config.batch, concurrency=config.concurrency
            )
            ingest_s = time.perf_counter() - started
            progress(
                f"ingested {len(data.corpus)} documents ({vectors} vectors) in {ingest_s:.0f} s"
            )
        by_split: dict[str, dict[str, dict[str, float]]] = {}
        for split in splits:
            modes = by_split.setdefault(split.split, {})
            for run in runs_of(config):
                started = time.perf_counter()
                scores = evaluate(await _run_mode(stub, split, run, config), split.qrels)
                modes[run.label] = {name: round(value, 4) for name, value in scores.items()}
                elapsed = time.perf_counter() - started
                progress(f"{split.split}, {run.label}: {modes[run.label]} ({elapsed:.0f} s)")
        extra: dict[str, Any] = {}
        if config.modifiers:
            started = time.perf_counter()
            chosen = {m: MODES[m] for m in config.modes if m != "keyword"}
            extra["modifiers"] = await modifier_effect(
                stub, data, chosen, concurrency=config.concurrency
            )
            progress(f"modifiers: {extra['modifiers']} ({time.perf_counter() - started:.0f} s)")
    return {
        "documents": len(data.corpus),
        "queries": len(data.queries),
        "vectors": vectors,
        "ingest_seconds": round(ingest_s, 1),
        "modes": by_split[data.split],
        **({"splits": by_split} if len(splits) > 1 else {}),
        **extra,
    }


def run_eval(
    config: EvalConfig, progress: Callable[[str], None] = lambda _: None
) -> dict[str, Any]:
    """Build the stack (on ``config.database_url`` when given), ingest unless told not to,
    query every mode; returns the JSON-ready report."""
    unknown = [m for m in config.modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {sorted(MODES)}")
    unknown = [f for f in config.fusions if f not in FUSIONS]
    if unknown:
        raise ValueError(f"unknown fusion(s) {unknown}; choose from {sorted(FUSIONS)}")
    names = list(dict.fromkeys([config.split, *config.more_splits]))
    splits = [load_beir(config.dataset, split) for split in names]
    data = splits[0]
    queries = ", ".join(f"{len(s.queries)} {s.split} queries" for s in splits)
    progress(f"loaded {data.name}: {len(data.corpus)} documents, {queries}")
    manifest = (config.model_dir / "manifest.json").read_text()
    model_id = json.loads(manifest)["model_id"]
    search_env = {
        "SEMANTIC_SEARCH_CHUNKING": "true" if config.chunking else "false",
        **config.search_env,
    }
    with LocalStack(
        [config.model_dir],
        threads=config.threads,
        search_env=search_env,
        database_url=config.database_url,
    ) as stack:
        report = asyncio.run(_evaluate(stack.search_address, splits, config, progress))
    return {
        "dataset": data.name,
        "split": config.split,
        "model": model_id,
        "chunking": config.chunking,
        **report,
    }
