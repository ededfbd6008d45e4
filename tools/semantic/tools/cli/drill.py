"""`semantic drill restore`: export, drop, restore and compare, on a throw-away database."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic drill` and its one drill, `restore`."""
    drill = sub.add_parser(
        "drill",
        help="operational drills on a throw-away stack (restore: snapshot, drop, restore)",
    )
    drills = drill.add_subparsers(dest="drill", required=True, metavar="DRILL")
    restore = drills.add_parser(
        "restore",
        help="ingest a BEIR set, track users, export, drop, import; compare everything",
        description="On a throw-away PostgreSQL: ingest the dataset and score it, track "
        "events of synthetic users, checksum every table, export a snapshot, drop and "
        "recreate the database, import the snapshot, checksum and score again. Exit code 1 "
        "when a checksum or a score differs.",
    )
    restore.add_argument("--dataset", type=Path, required=True, help="BEIR folder")
    restore.add_argument(
        "--model", type=Path, default=Path("models/all-minilm-l6-v2"), help="model directory"
    )
    restore.add_argument("--users", type=int, default=20, help="synthetic users (default 20)")
    restore.add_argument(
        "--ef-search",
        type=int,
        default=1000,
        help="HNSW ef_search of both evaluations (default 1000, the largest: nearly exact)",
    )
    restore.add_argument("--threads", type=int, default=2, help="embedder intra-op threads")
    restore.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the drill; 0 when everything is equal, 1 when something differs or fails."""
    import asyncpg
    import pyarrow as pa

    from semantic.common import validation
    from semantic.common.errors import SemanticError
    from semantic.tools.devstack.errors import DevstackError
    from semantic.tools.evaluation.beir import DatasetFormatError
    from semantic.tools.evaluation.drill import DrillConfig, DrillFailed, run_drill

    try:
        validation.integer(args.users, "--users", minimum=1, maximum=100_000)
        validation.integer(args.threads, "--threads", minimum=1, maximum=64)
        validation.integer(args.ef_search, "--ef-search", minimum=1, maximum=1000)
        config = DrillConfig(
            dataset=args.dataset,
            model_dir=args.model,
            users=args.users,
            threads=args.threads,
            ef_search=args.ef_search,
        )
        report = run_drill(config, progress=lambda line: print(f"# {line}", file=sys.stderr))
    except (
        SemanticError,
        DrillFailed,
        DevstackError,
        DatasetFormatError,
        asyncpg.PostgresError,
        pa.ArrowException,
        OSError,
    ) as exc:
        print(f"drill failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        verdict = "equal" if report["equal"] else "DIFFERENT"
        print(f"restore drill on {report['dataset']}: {verdict}")
        print(
            f"  {report['documents']} documents, {report['vectors']} vectors, "
            f"{report['users']} users, {report['events']} events"
        )
        print(
            f"  export {report['export']['seconds']} s ({report['export']['rows']} rows), "
            f"import {report['import']['seconds']} s ({report['import']['rows']} rows)"
        )
        checks = report["checksums"]
        print(
            f"  checksums of {checks['tables']} tables equal: {checks['equal']} {checks['differ']}"
        )
        for mode, before in report["ndcg@10"]["before"].items():
            print(f"  {mode:8} nDCG@10 {before:.4f} -> {report['ndcg@10']['after'][mode]:.4f}")
    return 0 if report["equal"] else 1
