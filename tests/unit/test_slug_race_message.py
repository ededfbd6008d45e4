"""A slug race's ALREADY_EXISTS names the slug, never the database's own text."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from semantic.store.postgres.node_store import _raced_slug


def _writes(*slugs: str) -> list[SimpleNamespace]:
    return [SimpleNamespace(node=SimpleNamespace(slug=s)) for s in slugs]


@pytest.mark.parametrize(
    ("slugs", "detail", "message"),
    [
        (("a",), "Key (tenant, slug)=(t, a) already exists.", "'a' was given to another node"),
        (("a", "b, c"), "Key (tenant, slug)=(t, b, c) already exists.", "'b, c' was given"),
        (("a", "b"), "", "one of the slugs was given to another node"),
        (("a", "", "a"), "", "'a' was given to another node"),
    ],
)
def test_the_message_names_the_raced_slug(
    slugs: tuple[str, ...], detail: str, message: str
) -> None:
    said = _raced_slug(_writes(*slugs), detail)  # type: ignore[arg-type]
    assert said.startswith(message)
    assert "Key (" not in said
