"""The exception tree of the embedded dev stack.

DevstackError                                   base; never raised directly
├── BinaryNotFound(name, searched)              a server binary is not installed
├── ModelNotFound(missing, folder)              the built model is not where services look
├── CommandError(command, returncode, output)   a helper command (initdb, psql ...) failed
└── ServerStartError(server, reason, log_path, log_tail)   a server did not come up
    ├── PostgresStartError
    └── NatsStartError
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


class DevstackError(Exception):
    """Base of every error the dev stack raises on purpose."""


class ModelNotFound(DevstackError):
    """Settings left to their relative defaults name model files that are not under the
    folder the services start in."""

    def __init__(self, missing: Sequence[str], folder: Path) -> None:
        self.missing = tuple(missing)
        self.folder = folder
        super().__init__(
            f"no built model under {folder}: run `semantic dev` from the project root (where"
            " `make models` builds models/), or set " + "; ".join(self.missing)
        )


class BinaryNotFound(DevstackError):
    """A server binary is missing: the `embedded` extra is probably not installed."""

    def __init__(self, name: str, searched: Sequence[str]) -> None:
        self.name = name
        self.searched = tuple(searched)
        super().__init__(
            f"{name} not found (looked in: {', '.join(self.searched)}); "
            "install the embedded stack with `pip install 'semantic[embedded]'`"
        )


class CommandError(DevstackError):
    """A helper command exited with a non-zero status or timed out."""

    def __init__(self, command: Sequence[str], returncode: int | None, output: str) -> None:
        self.command = tuple(command)
        self.returncode = returncode
        self.output = output
        status = "timed out" if returncode is None else f"exited with {returncode}"
        super().__init__(f"{self.command[0]} {status}: {output.strip()[-2000:]}")


class ServerStartError(DevstackError):
    """A server process did not become ready; the message ends with its log's tail."""

    def __init__(self, server: str, reason: str, log_path: Path, log_tail: str) -> None:
        self.server = server
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(
            f"{server} did not start: {reason}\n--- last lines of {log_path} ---\n{log_tail}"
        )


class PostgresStartError(ServerStartError):
    """PostgreSQL did not start (initdb, pg_ctl or the data directory failed)."""

    def __init__(self, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__("PostgreSQL", reason, log_path, log_tail)


class NatsStartError(ServerStartError):
    """nats-server exited early or JetStream did not become ready in time."""

    def __init__(self, reason: str, log_path: Path, log_tail: str) -> None:
        super().__init__("nats-server", reason, log_path, log_tail)
