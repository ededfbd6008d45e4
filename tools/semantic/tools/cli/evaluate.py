"""`semantic eval`: retrieval quality on a BEIR dataset, through the real services."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODES = ("dense", "keyword", "hybrid")
FUSIONS = ("rrf", "relative_score", "distribution")


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic eval`."""
    parser = sub.add_parser(
        "eval",
        help="nDCG@10, recall@100 and MRR@10 on a BEIR dataset, per search mode",
        description="Ingest the dataset through Search.Upsert on a throw-away local stack, "
        "ask its test queries through Search.Search, score the rankings (trec_eval definitions).",
    )
    parser.add_argument("--dataset", type=Path, required=True, help="BEIR folder (corpus.jsonl …)")
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all", help="search mode(s)")
    parser.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model directory"
    )
    parser.add_argument(
        "--chunking",
        choices=["on", "off"],
        default="on",
        help="off: each document truncated at the model window, as published benchmarks do",
    )
    parser.add_argument(
        "--split",
        default="test",
        help="qrels split (default test); several comma-separated (dev,test) are scored on one "
        "ingest, the first one's numbers printed first",
    )
    parser.add_argument(
        "--fusion",
        default="",
        help="hybrid mode once per fusion, comma-separated (rrf, relative_score, distribution) "
        "or all; default: the server default only",
    )
    parser.add_argument(
        "--keyword-weight",
        type=float,
        nargs="+",
        default=[],
        help="hybrid mode once per keyword weight (dense weight 1); default: the server default",
    )
    parser.add_argument(
        "--rrf-k",
        type=int,
        nargs="+",
        default=[],
        help="RRF runs once per k; default: the server default",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        nargs="+",
        default=[],
        help="hybrid mode once per number of candidates per side; default: the server default",
    )
    parser.add_argument(
        "--expansion-docs",
        type=int,
        nargs="+",
        default=[],
        help="hybrid mode once per number of first-pass hits the query is expanded with "
        "(0: off); default: the server default",
    )
    parser.add_argument(
        "--expansion-weight",
        type=float,
        nargs="+",
        default=[],
        help="hybrid mode once per query expansion weight; default: the server default",
    )
    parser.add_argument("--threads", type=int, default=2, help="embedder intra-op threads")
    parser.add_argument(
        "--modifiers",
        action="store_true",
        help="also measure score modifiers on synthetic success rates (one correlated with "
        "relevance, one not) at several weights, dense and hybrid",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the report."""
    from semantic.tools.evaluation.runner import EvalConfig, run_eval

    splits = [split.strip() for split in args.split.split(",") if split.strip()] or ["test"]
    fusions = FUSIONS if args.fusion == "all" else [f for f in args.fusion.split(",") if f]
    unknown = [f for f in fusions if f not in FUSIONS]
    if unknown:
        print(f"unknown fusion(s) {unknown}; choose from {', '.join(FUSIONS)}", file=sys.stderr)
        return 2
    config = EvalConfig(
        dataset=args.dataset,
        model_dir=args.model,
        modes=MODES if args.mode == "all" else (args.mode,),
        chunking=args.chunking == "on",
        split=splits[0],
        more_splits=tuple(splits[1:]),
        fusions=tuple(fusions),
        keyword_weights=tuple(args.keyword_weight),
        rrf_ks=tuple(args.rrf_k),
        candidates=tuple(args.candidates),
        expansion_docs=tuple(args.expansion_docs),
        expansion_weights=tuple(args.expansion_weight),
        threads=args.threads,
        modifiers=args.modifiers,
    )
    report = run_eval(config, progress=lambda line: print(f"# {line}", file=sys.stderr))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['dataset']} ({report['model']}, chunking {args.chunking})")
        by_split = report.get("splits") or {report["split"]: report["modes"]}
        for split, modes in by_split.items():
            if len(by_split) > 1:
                print(f" {split}")
            width = max(8, *(len(label) for label in modes))
            for label, scores in modes.items():
                print(f"  {label:{width}} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        for mode, entry in report.get("modifiers", {}).get("modes", {}).items():
            print(f"  modifiers, {mode}: nDCG@10 {entry['ndcg@10']:.4f} without")
            for signal in ("correlated", "uncorrelated"):
                deltas = ", ".join(f"w {w}: {v['delta']:+.4f}" for w, v in entry[signal].items())
                print(f"    {signal:12} {deltas}")
    return 0
