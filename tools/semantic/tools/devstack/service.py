"""A service as a child process: spawn `python -m <module>` on a loopback port, wait until
its gRPC health reports SERVING, stop it with SIGTERM (SIGKILL once the wait runs out).

The one way `semantic dev`, :class:`~semantic.tools.devstack.stack.LocalStack`, the benches
and the tests start a service process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from semantic.tools.devstack.health import wait_serving
from semantic.tools.devstack.ports import free_port


def service_environment(
    base: Mapping[str, str], env: Mapping[str, str], host: str, port: int
) -> dict[str, str]:
    """A child's environment: ``base``, then metrics and the HTTP port on a free port
    (the search service's; ``env`` names one to reach it), then ``env``; the gRPC host and
    port last (the spawner picked them and waits on them)."""
    return {
        **base,
        "SEMANTIC_METRICS_PORT": "0",
        "SEMANTIC_HTTP_HOST": host,
        "SEMANTIC_HTTP_PORT": "0",
        **env,
        "SEMANTIC_GRPC_HOST": host,
        "SEMANTIC_GRPC_PORT": str(port),
    }


@dataclass
class ServiceProcess:
    """A service started as ``python -m <module>``, serving gRPC at ``address``."""

    module: str
    address: str
    process: subprocess.Popen[bytes]

    @classmethod
    def spawn(
        cls,
        module: str,
        env: Mapping[str, str] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """Start ``module`` on ``host:port`` (a free port when None), metrics off.

        The child's environment is ``base_env`` (default: ours), then
        ``SEMANTIC_METRICS_PORT=0``, then ``env``; the gRPC host and port are this call's.
        """
        port = free_port(host) if port is None else port
        environment = service_environment(
            os.environ if base_env is None else base_env, env or {}, host, port
        )
        process = subprocess.Popen([sys.executable, "-m", module], env=environment)
        return cls(module, f"{host}:{port}", process)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once the process has ended, None while it runs."""
        return self.process.poll()

    async def wait_serving(self, timeout_s: float = 300.0) -> None:
        """Wait until the service reports SERVING; DevstackError if it exits first or the
        timeout runs out."""
        await wait_serving(
            self.address, exit_code=self.process.poll, name=self.module, timeout_s=timeout_s
        )

    async def exited(self) -> int:
        """Wait for the process to end (however it ends); its exit code."""
        return await asyncio.to_thread(self.process.wait)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM (a graceful drain), wait up to ``timeout_s``, then SIGKILL; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        """SIGKILL (no graceful anything) and wait; the exit code."""
        if self.process.poll() is None:
            self.process.kill()
        return self.process.wait()
