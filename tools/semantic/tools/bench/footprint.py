"""Memory of stack processes over time (RSS and PSS of a process with its descendants, read
through psutil) and the facts of the machine a measurement ran on.

RSS counts every page a process has resident, shared ones included; summed over a process
tree whose members share memory (PostgreSQL's backends map one shared-buffers segment) it
counts that memory once per member. PSS divides each shared page among the processes that
map it, so a tree's PSS sums to what the tree really holds. Both come from psutil's
``memory_full_info()`` (on Linux one read of ``/proc/<pid>/smaps_rollup`` for PSS; where the
system has no PSS, the RSS stands in for it).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

Metric = Literal["rss", "pss"]
_MB = 1024 * 1024


@dataclass(frozen=True)
class Footprint:
    """Resident memory of a process tree at one moment."""

    rss_bytes: int
    pss_bytes: int
    processes: int

    def value(self, metric: Metric) -> int:
        """The bytes of ``metric``."""
        return self.rss_bytes if metric == "rss" else self.pss_bytes


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every descendant alive now, parents first (empty once it is gone)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _memory(process: psutil.Process) -> tuple[int, int] | None:
    """(RSS, PSS) bytes of one process, or None once it is gone."""
    try:
        info = process.memory_full_info()
    except psutil.Error:
        return None
    return info.rss, getattr(info, "pss", info.rss)


def footprint(pid: int) -> Footprint:
    """RSS and PSS summed over ``pid`` and its descendants (zero when it is gone)."""
    rss = pss = count = 0
    for member in process_tree(pid):
        reading = _memory(member)
        if reading is not None:
            rss, pss, count = rss + reading[0], pss + reading[1], count + 1
    return Footprint(rss_bytes=rss, pss_bytes=pss, processes=count)


def growth(
    start: Mapping[str, Footprint],
    end: Mapping[str, Footprint],
    *,
    metrics: Mapping[str, Metric],
    peak: Mapping[str, Footprint] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per process: the chosen metric (``metrics``, default RSS) at start, end and peak in
    MB, ``growth_ratio`` = end / start of it (1.0 when the start reading is zero), and both
    metrics and the process count at start and end."""
    out: dict[str, dict[str, Any]] = {}
    for name, first in start.items():
        metric: Metric = metrics.get(name, "rss")
        last = end.get(name, Footprint(0, 0, 0))
        before, after = first.value(metric), last.value(metric)
        top = max(after, before, peak[name].value(metric) if peak and name in peak else 0)
        out[name] = {
            "metric": metric,
            "start_mb": round(before / _MB, 1),
            "end_mb": round(after / _MB, 1),
            "peak_mb": round(top / _MB, 1),
            "growth_ratio": round(after / before, 3) if before else 1.0,
            "rss_mb": [round(first.rss_bytes / _MB, 1), round(last.rss_bytes / _MB, 1)],
            "pss_mb": [round(first.pss_bytes / _MB, 1), round(last.pss_bytes / _MB, 1)],
            "processes": [first.processes, last.processes],
        }
    return out


def growth_within(report: Mapping[str, Mapping[str, Any]], limit: float) -> bool:
    """Whether every process of a :func:`growth` report grew by less than ``limit`` (0.10:
    under 10%)."""
    return all(entry["growth_ratio"] < 1.0 + limit for entry in report.values())


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """CPU count (all, and usable by this process), CPU model, memory, load average."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average": [round(v, 2) for v in psutil.getloadavg()],
        "python": platform.python_version(),
    }
