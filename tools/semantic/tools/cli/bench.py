"""`semantic bench ...`: benchmarks that print JSON with their baseline from the same run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def served_default_model() -> Path:
    """The model the embedder would serve by default on this machine (its own settings'
    choice): what a deployment's text queries are embedded with."""
    from semantic.embedder.precision import cpu_flags
    from semantic.embedder.settings import EmbedderSettings

    return EmbedderSettings().served_model_dirs(cpu_flags())[0]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic bench` and its targets."""
    bench = sub.add_parser("bench", help="run a benchmark and print its numbers")
    targets = bench.add_subparsers(dest="target", required=True, metavar="TARGET")
    embedder = targets.add_parser(
        "embedder",
        help="embedder throughput and latency vs. the naive baseline",
        description="Throughput (texts/s) for short, long and mixed texts: naive baseline, "
        "in-process engine (fp32, int8), gRPC with concurrent clients; single-query latency.",
    )
    embedder.add_argument("--json", action="store_true", help="print one JSON object")
    embedder.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="fp32 model dir"
    )
    embedder.add_argument(
        "--int8-model",
        type=Path,
        default=Path("models/all-minilm-l6-v2-int8"),
        help="int8 model dir ('' to skip)",
    )
    embedder.add_argument("--dataset", type=Path, help="BEIR folder to draw words from")
    embedder.add_argument("--n", type=int, default=1000, help="texts per set")
    embedder.add_argument("--clients", type=int, default=16, help="concurrent gRPC clients")
    embedder.add_argument("--request-texts", type=int, default=8, help="texts per gRPC call")
    embedder.add_argument(
        "--threads", type=int, default=2, help="onnxruntime threads of a batch running alone"
    )
    embedder.add_argument(
        "--workers", type=int, default=2, help="embedder batches at a time (1 thread each)"
    )
    embedder.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    embedder.add_argument(
        "--precision-only",
        action="store_true",
        help="only int8 against fp32 (paired passes, fidelity to the reference vectors)",
    )
    embedder.add_argument(
        "--reference",
        type=Path,
        default=Path("tests/data/minilm-reference.jsonl"),
        help="reference vectors for the fidelity check",
    )

    search = targets.add_parser(
        "search",
        help="search recall and latency at N nodes vs. exact search",
        description="Loads N clustered 384-d vectors into PostgreSQL with COPY and builds the "
        "HNSW index with the product's DDL, then measures through gRPC recall@10 vs. exact, "
        "vector and text query latency against their floor, and queries/s against the "
        "service's own SQL on asyncpg (alternating rounds); baseline: exact scan.",
    )
    search.add_argument("--json", action="store_true", help="print one JSON object")
    search.add_argument("--n", type=int, default=100_000, help="nodes to load")
    search.add_argument(
        "--queries",
        type=int,
        help="queries per measurement (default 200; 1000 when --n is above --reference-n "
        "or --precision is not float32)",
    )
    search.add_argument(
        "--precision",
        choices=("float32", "half", "both"),
        default="float32",
        help="HNSW index precision(s) measured; half or both: a half-precision space too",
    )
    search.add_argument(
        "--ef-search",
        type=int,
        help="the search service's SEMANTIC_SEARCH_EF_SEARCH in a scale run (default: its default)",
    )
    search.add_argument(
        "--reference-n",
        type=int,
        default=100_000,
        help="above this N, the same run measures this many nodes first (the reference)",
    )
    search.add_argument("--clients", type=int, default=8, help="concurrent clients")
    search.add_argument(
        "--model",
        type=Path,
        default=None,
        help="model dir (default: the embedder's own default on this CPU, int8 with VNNI or "
        "AMX, else fp32)",
    )
    http = targets.add_parser(
        "http",
        help="HTTP GET vector-search vs gRPC Search on the same queries; console page times",
        description="Loads N nodes (as `bench search`), then alternates rounds of the same text "
        "queries over gRPC and over HTTP with the same concurrency (p50/p99, queries/s, ratio), "
        "and reads each console page's server time from its Server-Timing header.",
    )
    http.add_argument("--json", action="store_true", help="print one JSON object")
    http.add_argument("--n", type=int, default=100_000, help="nodes to load")
    http.add_argument("--queries", type=int, default=200, help="queries per round and transport")
    http.add_argument("--clients", type=int, default=16, help="concurrent clients")
    http.add_argument("--rounds", type=int, default=4, help="alternating rounds")
    http.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )
    recommend = targets.add_parser(
        "recommend",
        help="Track and Recommend latency at N nodes and U users vs. a dense search",
        description="Loads N clustered 384-d vectors (as `bench search`), tracks U users' events "
        "through Search.Track, then measures single-event Track and Recommend (journey and cold "
        "users) p50/p99 through gRPC; baseline in the same run: dense vector Search.",
    )
    recommend.add_argument("--json", action="store_true", help="print one JSON object")
    recommend.add_argument("--nodes", type=int, default=100_000, help="nodes to load")
    recommend.add_argument("--users", type=int, default=10_000, help="users to track")
    recommend.add_argument("--events-per-user", type=int, default=10, help="events per user")
    recommend.add_argument("--queries", type=int, default=300, help="calls per measurement")
    recommend.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )
    indexer = targets.add_parser(
        "indexer",
        help="indexer events/s and freshness vs. the embedder alone and one-by-one writes",
        description="Publishes N content events to a throw-away stack and times publish to "
        "committed; freshness (publish -> searchable) at a steady rate; baselines in the same "
        "run: the embedder in-process on the same texts, one document at a time.",
    )
    indexer.add_argument("--json", action="store_true", help="print one JSON object")
    indexer.add_argument("--n", type=int, default=20_000, help="events for the throughput run")
    indexer.add_argument("--dataset", type=Path, help="BEIR folder to take documents from")
    indexer.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[50.0],
        help="events/s for freshness (several: one measurement each)",
    )
    indexer.add_argument("--freshness-events", type=int, default=1000, help="events at each --rate")
    indexer.add_argument(
        "--rounds",
        type=int,
        default=4,
        help="the N events in this many rounds, each timed in process then through the stack",
    )
    indexer.add_argument("--baseline-n", type=int, default=300, help="one-by-one documents")
    indexer.add_argument(
        "--batch-size", type=int, help="indexer fetch batch (default: the service's default)"
    )
    indexer.add_argument(
        "--threads", type=int, default=2, help="onnxruntime threads of a batch running alone"
    )
    indexer.add_argument(
        "--workers", type=int, default=2, help="embedder batches at a time (1 thread each)"
    )
    indexer.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )
    snapshot = targets.add_parser(
        "snapshot",
        help="semantic export / import vs. pg_dump / pg_restore at N nodes",
        description="Loads N nodes with 384-d vectors into a throw-away PostgreSQL, then "
        "alternates `semantic export` and `pg_dump -Fc` of it, `semantic import` and "
        "`pg_restore` into new databases: seconds, vectors/s, bytes, peak RSS, ratios; and "
        "the export's peak RSS at N/4 nodes; then dense reads answered from the search "
        "service's local index with PostgreSQL stopped against normal ones (p50/p99, recall).",
    )
    snapshot.add_argument("--json", action="store_true", help="print one JSON object")
    snapshot.add_argument("--n", type=int, default=200_000, help="nodes to load")
    snapshot.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    snapshot.add_argument(
        "--batch-size", type=int, default=5_000, help="export and import rows per batch"
    )
    snapshot.add_argument(
        "--model",
        type=Path,
        default=Path("models/all-minilm-l6-v2"),
        help="model dir of the degraded-read part ('' to skip it)",
    )
    snapshot.add_argument(
        "--queries", type=int, default=200, help="query vectors of the degraded-read part"
    )
    knowledge = targets.add_parser(
        "knowledge",
        help="Related (depth 2) and Check (rules on a long file) against a plain Get",
        description="Starts a throw-away stack, loads nodes with relations and guardian "
        "rules (client vectors: nothing is embedded), then times Get, Related at depth 2 and "
        "Check of a long file in alternating rounds: p50/p99 and ratios to Get.",
    )
    knowledge.add_argument("--json", action="store_true", help="print one JSON object")
    knowledge.add_argument("--nodes", type=int, default=2000, help="nodes loaded")
    knowledge.add_argument("--relations", type=int, default=5, help="relations per node")
    knowledge.add_argument("--rules", type=int, default=500, help="guardian rules")
    knowledge.add_argument("--lines", type=int, default=2000, help="lines of the checked file")
    knowledge.add_argument("--calls", type=int, default=200, help="calls of each kind per round")
    knowledge.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    knowledge.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )
    discover = targets.add_parser(
        "discover",
        help="share of a BEIR corpus with a discovered `similar` relation per threshold, "
        "and discovery's time vs. ingest",
        description="Upserts a BEIR corpus into a throw-away stack (baseline: that ingest's "
        "time), scores every document's nearest neighbours the way relation discovery does "
        "and reports, per threshold, the share of documents with a neighbour at or above it; "
        "then times a whole discovery run at --threshold and --k.",
    )
    discover.add_argument("--json", action="store_true", help="print one JSON object")
    discover.add_argument("--dataset", type=Path, required=True, help="BEIR folder")
    discover.add_argument(
        "--thresholds",
        type=float,
        nargs="+",
        default=[0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
        help="thresholds to report the share at",
    )
    discover.add_argument(
        "--threshold", type=float, help="threshold of the timed run (default: the setting's)"
    )
    discover.add_argument("--k", type=int, help="edges per node (default: the setting's)")
    discover.add_argument("--threads", type=int, default=2, help="embedder threads")
    discover.add_argument(
        "--examples", type=int, default=0, help="pairs of titles to show per band of similarity"
    )
    discover.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )
    soak = targets.add_parser(
        "soak",
        help="the whole stack under mixed load for N minutes: errors, latency, events, memory",
        description="Starts a throw-away stack (PostgreSQL, NATS, embedder, search, indexer), "
        "loads a starting corpus through Upsert, then runs concurrent clients mixing Search, "
        "Nearest, Recommend, Get, Upsert and Track plus a steady stream of content and user "
        "events on NATS; reports calls by RPC and status code, p50/p99 per RPC, events "
        "published/applied/dead-lettered and each process's memory after warm-up and at the end.",
    )
    soak.add_argument("--json", action="store_true", help="print one JSON object")
    soak.add_argument("--minutes", type=float, default=10.0, help="measured time (after warm-up)")
    soak.add_argument("--clients", type=int, default=16, help="concurrent gRPC clients")
    soak.add_argument("--rate", type=float, default=20.0, help="NATS events/s (0: none)")
    soak.add_argument("--corpus", type=int, default=2000, help="documents loaded before the soak")
    soak.add_argument(
        "--dataset",
        type=Path,
        help="BEIR folder for the documents (default: ../shared/data/nfcorpus when present, "
        "else generated text)",
    )
    soak.add_argument(
        "--warmup", type=float, default=120.0, help="seconds of load before measuring"
    )
    soak.add_argument(
        "--settle-max",
        type=float,
        default=600.0,
        help="after --warmup, keep warming up until memory settles, at most this many seconds",
    )
    soak.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model dir"
    )


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark."""
    if args.target == "embedder":
        from semantic.tools.bench.embedder import BenchConfig, run_bench

        int8 = args.int8_model if str(args.int8_model) not in ("", ".") else None
        config = BenchConfig(
            model_dir=args.model,
            int8_model_dir=int8,
            dataset=args.dataset,
            n=args.n,
            clients=args.clients,
            request_texts=args.request_texts,
            threads=args.threads,
            workers=args.workers,
            repeat=args.repeat,
            reference=args.reference,
            precision_only=args.precision_only,
        )
        report = run_bench(config, progress=lambda step: print(f"# {step}", file=sys.stderr))
        _print(report, args.json)
        return 0
    if args.target == "search":
        progress = lambda step: print(f"# {step}", file=sys.stderr)  # noqa: E731
        args.model = args.model or served_default_model()
        if args.n > args.reference_n or args.precision != "float32":
            from semantic.tools.bench.scale import ScaleBenchConfig, run_scale_bench

            report = run_scale_bench(
                ScaleBenchConfig(
                    model_dir=args.model,
                    n=args.n,
                    precision=args.precision,
                    reference_n=args.reference_n,
                    queries=args.queries or 1000,
                    warm_queries=args.queries or 1000,
                    **({"ef_search": args.ef_search} if args.ef_search else {}),
                ),
                progress=progress,
            )
        else:
            from semantic.tools.bench.search import SearchBenchConfig, run_search_bench

            report = run_search_bench(
                SearchBenchConfig(
                    model_dir=args.model,
                    n=args.n,
                    queries=args.queries or 200,
                    clients=args.clients,
                ),
                progress=progress,
            )
        _print(report, args.json)
        return 0
    if args.target == "http":
        from semantic.tools.bench.http import HttpBenchConfig, run_http_bench

        report = run_http_bench(
            HttpBenchConfig(
                model_dir=args.model,
                n=args.n,
                queries=args.queries,
                clients=args.clients,
                rounds=args.rounds,
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "recommend":
        from semantic.tools.bench.recommend import RecommendBenchConfig, run_recommend_bench

        report = run_recommend_bench(
            RecommendBenchConfig(
                model_dir=args.model,
                nodes=args.nodes,
                users=args.users,
                events_per_user=args.events_per_user,
                queries=args.queries,
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "indexer":
        from semantic.tools.bench.indexer import IndexerBenchConfig, run_indexer_bench

        report = run_indexer_bench(
            IndexerBenchConfig(
                model_dir=args.model,
                n=args.n,
                dataset=args.dataset,
                rates=tuple(args.rate),
                rounds=args.rounds,
                freshness_events=args.freshness_events,
                baseline_n=args.baseline_n,
                threads=args.threads,
                workers=args.workers,
                **({"batch_size": args.batch_size} if args.batch_size else {}),
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "snapshot":
        from semantic.tools.bench.snapshot import SnapshotBenchConfig, run_snapshot_bench

        report = run_snapshot_bench(
            SnapshotBenchConfig(
                n=args.n,
                rounds=args.rounds,
                batch_size=args.batch_size,
                model_dir=args.model if str(args.model) not in ("", ".") else None,
                queries=args.queries,
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "knowledge":
        from semantic.tools.bench.knowledge import KnowledgeConfig, run_knowledge_bench

        report = run_knowledge_bench(
            KnowledgeConfig(
                model_dir=args.model,
                nodes=args.nodes,
                relations_per_node=args.relations,
                rules=args.rules,
                lines=args.lines,
                calls=args.calls,
                rounds=args.rounds,
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "soak":
        from semantic.tools.bench.soak import SoakConfig, run_soak

        report = run_soak(
            SoakConfig(
                model_dir=args.model,
                minutes=args.minutes,
                clients=args.clients,
                rate=args.rate,
                corpus=args.corpus,
                dataset=args.dataset,
                warmup_s=args.warmup,
                settle_max_s=args.settle_max,
            ),
            progress=lambda step: print(f"# {step}", file=sys.stderr),
        )
        _print(report, args.json)
        return 0
    if args.target == "discover":
        from semantic.tools.bench.discover import DiscoverBenchConfig, run_discover_bench

        chosen = {"threshold": args.threshold, "k": args.k}
        measure = DiscoverBenchConfig(
            dataset=args.dataset,
            model_dir=args.model,
            thresholds=args.thresholds,
            threads=args.threads,
            examples=args.examples,
            **{name: value for name, value in chosen.items() if value is not None},
        )
        report = run_discover_bench(
            measure, progress=lambda step: print(f"# {step}", file=sys.stderr)
        )
        _print(report, args.json)
        return 0
    raise AssertionError(f"unhandled bench target {args.target}")


def _print(report: dict[str, object], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key:32} {value}")
