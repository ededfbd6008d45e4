"""Operating-system processes seen from outside (through psutil): liveness, children, CPU
time of a process tree, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import psutil


def pid_alive(pid: int, name: str | None = None) -> bool:
    """Whether `pid` runs (zombies count as dead) and, if given, its command name is `name`.

    Zombies matter: when a daemon's parent is an init that reaps lazily (containers,
    micro-VMs), a SIGKILLed postmaster lingers as a zombie and would look alive.
    """
    if pid <= 0:
        return False
    try:
        process = psutil.Process(pid)
        if process.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return False
        return name is None or process.name() == name
    except psutil.AccessDenied:
        return name is None  # it exists, but what it runs cannot be told
    except psutil.Error:
        return False


def runs_in(pid: int, directory: Path) -> bool:
    """Whether `pid`'s working directory is `directory` (True when that cannot be read).

    A postmaster works inside its data directory, so this tells a recycled pid or
    another cluster's server apart from the one a postmaster.pid file names.
    """
    try:
        return Path(psutil.Process(pid).cwd()).resolve() == directory.resolve()
    except (psutil.Error, OSError, RuntimeError):
        return True


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (empty once it is gone)."""
    try:
        return [child.pid for child in psutil.Process(pid).children()]
    except psutil.Error:
        return []


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and every live descendant, plus the
    children they reaped (0.0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in tree:
        with contextlib.suppress(psutil.Error):
            times = member.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
    return total


def kill_and_wait(pids: list[int], sig: signal.Signals, timeout: float) -> bool:
    """Send `sig` to every pid, then wait until all are dead; False if some outlive `timeout`."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(pid_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def log_tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note that it does not exist."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 16_384))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return f"(no log file at {path})"
    return "\n".join(text.splitlines()[-lines:])
