"""Operating-system processes seen from outside: liveness, children, log tails."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, or None if it is gone."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def pid_alive(pid: int, name: str | None = None) -> bool:
    """Whether `pid` runs (zombies count as dead) and, if given, its command name is `name`.

    Zombies matter: when a daemon's parent is an init that reaps lazily (containers,
    micro-VMs), a SIGKILLed postmaster lingers as a zombie and would look alive.
    """
    if pid <= 0:
        return False
    if not _PROC.is_dir():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if name is None:
        return True
    try:
        comm = (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return False
    return comm == name


def runs_in(pid: int, directory: Path) -> bool:
    """Whether `pid`'s working directory is `directory` (True when that cannot be read).

    A postmaster works inside its data directory, so this tells a recycled pid or
    another cluster's server apart from the one a postmaster.pid file names.
    """
    try:
        return (_PROC / str(pid) / "cwd").resolve(strict=True) == directory.resolve()
    except (OSError, RuntimeError):
        return True


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (Linux only; empty elsewhere)."""
    if not _PROC.is_dir():
        return []
    children: list[int] = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) used so far by `pid` and every live descendant, plus the
    children they reaped (Linux only; 0.0 elsewhere or once it is gone)."""
    if not _PROC.is_dir():
        return 0.0
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, int] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                parents[int(entry.name)] = int(fields[1])
                times[int(entry.name)] = sum(int(f) for f in fields[11:15])
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, its_parent in parents.items():
            if its_parent == parent and child not in tree:
                tree.add(child)
                frontier.append(child)
    return sum(times.get(p, 0) for p in tree) / tick


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
