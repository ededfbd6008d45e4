"""`semantic eval`: retrieval quality on a BEIR dataset, through the real services."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

MODES = ("dense", "keyword", "hybrid")


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
    parser.add_argument("--split", default="test", help="qrels split (default test)")
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

    config = EvalConfig(
        dataset=args.dataset,
        model_dir=args.model,
        modes=MODES if args.mode == "all" else (args.mode,),
        chunking=args.chunking == "on",
        split=args.split,
        threads=args.threads,
        modifiers=args.modifiers,
    )
    report = run_eval(config, progress=lambda line: print(f"# {line}", file=sys.stderr))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['dataset']} ({report['model']}, chunking {args.chunking})")
        for mode, scores in report["modes"].items():
            print(f"  {mode:8} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
        for mode, entry in report.get("modifiers", {}).get("modes", {}).items():
            print(f"  modifiers, {mode}: nDCG@10 {entry['ndcg@10']:.4f} without")
            for signal in ("correlated", "uncorrelated"):
                deltas = ", ".join(f"w {w}: {v['delta']:+.4f}" for w, v in entry[signal].items())
                print(f"    {signal:12} {deltas}")
    return 0
