"""A heavy content event goes after the rest of its batch, alone, only where the order of
application cannot matter."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from semantic.core.domain import NodeRecord
from semantic.indexer.batching import Decoded, heavy_last
from semantic.indexer.events import ContentChange

HEAVY = 1000


def _event(
    node_id: str, *, size: int = 10, slug: str | None = None, named_by_slug: bool = False
) -> Decoded:
    node = NodeRecord(tenant="", id=node_id, content_type="page", slug=slug)
    change = ContentChange(
        event_id=f"e-{node_id}",
        upsert=True,
        tenant="",
        id="" if named_by_slug else node_id,
        slug=slug if named_by_slug else None,
        version=1,
        node=node,
        occurred_at=None,
        source="tests",
    )
    return Decoded(SimpleNamespace(data=b"x" * size), change)  # type: ignore[arg-type]


def _ids(items: list[Decoded]) -> list[str]:
    return [i.item.id or f"slug:{i.item.slug}" for i in items]


def test_a_heavy_event_of_its_own_node_goes_last() -> None:
    batch = [_event("a"), _event("big", size=HEAVY), _event("b", slug="b-page")]
    light, heavy = heavy_last(batch, HEAVY)
    assert (_ids(light), _ids(heavy)) == (["a", "b"], ["big"])


def test_nothing_moves_where_the_order_could_matter() -> None:
    def stays(*batch: Decoded) -> None:
        light, heavy = heavy_last(list(batch), HEAVY)
        assert (_ids(light), heavy) == (_ids(list(batch)), [])

    stays(_event("big", size=HEAVY), _event("big"))  # the same node again
    stays(_event("big", size=HEAVY, slug="s"), _event("other", slug="s"))  # one slug, two nodes
    stays(_event("big", size=HEAVY), _event("x", slug="x", named_by_slug=True))  # slug alone
    stays(_event("s", size=HEAVY, slug="s", named_by_slug=True), _event("a"))  # heavy by slug
    stays(_event("a"), _event("b"))  # nothing heavy


def test_off_without_a_threshold_and_for_other_events() -> None:
    batch = [_event("big", size=HEAVY), _event("a")]
    assert heavy_last(batch, None) == (batch, [])
    other: Any = Decoded(SimpleNamespace(data=b"x" * HEAVY), object())  # type: ignore[arg-type]
    assert heavy_last([other], HEAVY) == ([other], [])
