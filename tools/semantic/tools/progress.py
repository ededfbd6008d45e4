"""Progress bars of the tooling (tqdm on stderr, so that `--json` on stdout stays clean)."""

from __future__ import annotations

import sys
from typing import NoReturn

from tqdm import tqdm


def progress_bar(total: int, what: str) -> tqdm[NoReturn]:
    """A bar counting ``total`` ``what`` (documents, events ...); off when stderr is not a
    terminal (logs and test output stay free of it)."""
    return tqdm(total=total, desc=what, unit="", file=sys.stderr, disable=None, leave=False)
