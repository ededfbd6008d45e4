"""`semantic eval-recommend`: next-item recommendation quality on a BEIR dataset's qrels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic eval-recommend`."""
    parser = sub.add_parser(
        "eval-recommend",
        help="hit-rate@10 and nDCG@10 of a held-out item per user, vs. baselines",
        description="Ingest the dataset through Search.Upsert on a throw-away local stack; each "
        "query with 2+ relevant documents is a user whose documents (seeded order) are a "
        "journey; all but the last go in as VIEW events through Search.Track, then "
        "Search.Recommend is scored on the held-out one. Baselines in the same run: "
        "popularity, nearest to the last item (Search.Nearest), random.",
    )
    parser.add_argument("--dataset", type=Path, required=True, help="BEIR folder (corpus.jsonl …)")
    parser.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model directory"
    )
    parser.add_argument("--split", default="test", help="qrels split (default test)")
    parser.add_argument("--seed", type=int, default=0, help="journey order and random baseline")
    parser.add_argument("--max-users", type=int, help="evaluate only the first N users")
    parser.add_argument("--threads", type=int, default=2, help="embedder intra-op threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the report."""
    from semantic.tools.evaluation.recommend_eval import RecommendEvalConfig, run_recommend_eval

    config = RecommendEvalConfig(
        dataset=args.dataset,
        model_dir=args.model,
        split=args.split,
        seed=args.seed,
        max_users=args.max_users,
        threads=args.threads,
    )
    report = run_recommend_eval(config, progress=lambda line: print(f"# {line}", file=sys.stderr))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"{report['dataset']} ({report['model']}, {report['users']} users)")
        for method, scores in report["methods"].items():
            print(f"  {method:16} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return 0
