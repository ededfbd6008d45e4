"""CPU accounting of a process tree (what `semantic bench indexer` reports per process)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from semantic.tools.devstack.process import child_pids, cpu_seconds

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc (Linux)")

# burns 0.6 s of CPU, then sleeps
_CHILD = (
    "import time\n"
    "end = time.process_time() + 0.6\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(30)\n"
)


def test_counts_a_live_child_of_the_process() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            f"subprocess.Popen([sys.executable, '-c', {_CHILD!r}])\n"
            "time.sleep(30)\n",
        ]
    )
    try:
        deadline = time.monotonic() + 20
        while cpu_seconds(parent.pid) < 0.6 and time.monotonic() < deadline:
            time.sleep(0.1)
        # the parent itself only sleeps: the burnt CPU is its child's
        assert cpu_seconds(parent.pid) >= 0.6
    finally:
        for child in child_pids(parent.pid):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()


def test_grows_with_the_work_done_and_is_zero_for_a_gone_process() -> None:
    before = cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert cpu_seconds(os.getpid()) - before >= 0.25
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_seconds(child.pid) == 0.0
