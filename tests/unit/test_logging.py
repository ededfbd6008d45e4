"""Logging: console text never prints a frame's local variables (a DSN with its password)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from semantic.common.log import configure_logging


def _fail_with_a_secret_in_a_local() -> None:
    dsn = "postgresql://app:" + "S3cret" + "Passw0rd@127.0.0.1:1/semantic"
    raise ConnectionRefusedError(f"connect to {dsn.rsplit('@', 1)[1]} refused")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_a_logged_traceback_shows_no_local_variables(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        configure_logging("info", fmt)  # type: ignore[arg-type]
        try:
            _fail_with_a_secret_in_a_local()
        except ConnectionRefusedError:
            logging.getLogger("asyncpg.pool").warning("floor not restored", exc_info=True)
    finally:
        configure_logging()
    text = err.getvalue()
    assert "ConnectionRefusedError" in text
    assert "127.0.0.1:1/semantic" in text  # the message itself is kept
    assert "S3cretPassw0rd" not in text
