"""Which variant of the default model to serve: int8 on CPUs that multiply int8 fast.

``SEMANTIC_EMBEDDER_PRECISION`` is ``auto`` (the default), ``int8`` or ``fp32``; it picks
the default model directories when ``SEMANTIC_EMBEDDER_MODEL_DIRS`` is not set:

    fp32  -> [models/all-minilm-l6-v2]
    int8  -> [models/all-minilm-l6-v2-int8, models/all-minilm-l6-v2]
    auto  -> int8 when the CPU has an int8 dot-product instruction onnxruntime uses
             (AVX-512 VNNI, AVX-VNNI or AMX), fp32 otherwise; int8 also needs its
             directory to be there (`semantic model build` writes both)

With int8 the fp32 model is served too, second: spaces built with it keep answering, and
``semantic reindex --model-id sentence-transformers/all-MiniLM-L6-v2:int8`` moves an
fp32 deployment over in one command (``semantic rollback`` moves it back). Without VNNI
the int8 kernels (AVX2 ``vpmaddubsw``) gain too little over fp32 to be the default (see
README_vector.md, "Models").
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Literal

Precision = Literal["auto", "int8", "fp32"]
Variant = Literal["int8", "fp32"]

INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
"""x86 flags (as /proc/cpuinfo names them) of the int8 dot products onnxruntime's MLAS uses."""
INT8_SUFFIX = "-int8"
"""`semantic model build` writes a model's int8 variant beside it under this suffix."""
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags of the first processor (empty when unreadable, e.g. not Linux)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    return parse_flags(text.splitlines())


def parse_flags(lines: Iterable[str]) -> frozenset[str]:
    """The ``flags`` (x86) or ``Features`` (arm) of the first processor in cpuinfo lines."""
    for line in lines:
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def int8_is_fast(flags: frozenset[str]) -> bool:
    """Whether the CPU has one of the int8 dot-product instructions in INT8_FLAGS."""
    return bool(flags & INT8_FLAGS)


def int8_dir(fp32_dir: Path) -> Path:
    """Where `semantic model build` puts the int8 variant of ``fp32_dir``."""
    return fp32_dir.with_name(fp32_dir.name + INT8_SUFFIX)


def choose(precision: Precision, fp32_dir: Path, flags: frozenset[str]) -> Variant:
    """The variant ``precision`` asks for on a CPU with ``flags``."""
    if precision != "auto":
        return precision
    if int8_is_fast(flags) and (int8_dir(fp32_dir) / "manifest.json").is_file():
        return "int8"
    return "fp32"


def default_dirs(fp32_dir: Path, variant: Variant) -> list[Path]:
    """The directories served by default: int8 first (the default model) and fp32 beside
    it, or fp32 alone."""
    return [int8_dir(fp32_dir), fp32_dir] if variant == "int8" else [fp32_dir]
