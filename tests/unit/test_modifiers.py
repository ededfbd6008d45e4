"""Score modifiers and the feedback formula: pure functions, no I/O."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from semantic.common.errors import InvalidArgument
from semantic.core.domain import Hit, NodeRecord
from semantic.core.feedback import Counters, Prior, derive
from semantic.core.modifiers import (
    Modifier,
    Op,
    Source,
    apply,
    check,
    check_defaults,
    defaults_for,
    lookup,
)


def _hit(node_id: str, score: float, **metadata: object) -> Hit:
    tags = tuple(str(t) for t in metadata.pop("tags", ()))  # type: ignore[union-attr]
    node = NodeRecord(
        tenant="", id=node_id, content_type="pattern", tags=tags, metadata=dict(metadata)
    )
    return Hit(node_id=node_id, score=score, node=node)


def _ranked(hits: list[Hit]) -> list[str]:
    return [h.node_id for h in hits]


def test_the_success_rate_starts_at_the_prior_and_confidence_grows_with_evidence() -> None:
    prior = Prior()
    fresh = derive(Counters(), prior)
    assert fresh.success_rate == 0.5
    one = derive(Counters(applied=1, succeeded=1), prior)
    ten = derive(Counters(applied=10, succeeded=10), prior)
    failing = derive(Counters(applied=10, succeeded=2), prior)
    assert one.success_rate == pytest.approx(2 / 3)
    assert ten.success_rate == pytest.approx(11 / 12)
    assert one.confidence == pytest.approx(2 / 3 - math.sqrt((2 / 3) * (1 / 3) / 4))
    assert ten.confidence > one.confidence > failing.confidence >= 0
    assert failing.failed == 8
    assert fresh.avg_minutes_saved is None
    assert derive(Counters(minutes_total=30, minutes_reports=2), prior).avg_minutes_saved == 15


def test_a_multiplier_on_the_success_rate_reorders_and_explains() -> None:
    hits = [_hit("a", 0.80), _hit("b", 0.78)]
    rate = {"a": 2 / 12, "b": 11 / 12}  # 1 and 10 successes out of 10
    modifier = Modifier(Source.FEEDBACK, "success_rate", weight=0.2, center=0.5)

    values = {
        node_id: derive(Counters(applied=10, succeeded=round(r * 12) - 1), Prior())
        for node_id, r in rate.items()
    }
    apply(hits, lambda node: (modifier,), values.get)
    assert _ranked(hits) == ["b", "a"]
    b, a = hits
    assert b.base_score == 0.78
    assert b.score == pytest.approx(0.78 * (1 + 0.2 * (11 / 12 - 0.5)))
    assert a.score == pytest.approx(0.80 * (1 + 0.2 * (2 / 12 - 0.5)))
    (contribution,) = b.contributions
    assert contribution.name == "feedback:success_rate"
    assert contribution.effect == pytest.approx(1 + 0.2 * (11 / 12 - 0.5))


def test_tag_and_contains_conditions_add_or_multiply() -> None:
    hits = [
        _hit("plain", 0.9),
        _hit("tagged", 0.85, tags=["go"]),
        _hit("layered", 0.8, layers=[1, 3]),
    ]
    modifiers = (
        Modifier(Source.TAG, "go", op=Op.ADD, weight=0.1),
        Modifier(Source.METADATA_CONTAINS, "layers", weight=0.2, value=3),
    )
    apply(hits, lambda node: modifiers, lambda _: None)
    scores = {h.node_id: h.score for h in hits}
    assert scores["tagged"] == pytest.approx(0.95)
    assert scores["layered"] == pytest.approx(0.96)
    assert scores["plain"] == pytest.approx(0.9)
    assert _ranked(hits) == ["layered", "tagged", "plain"]


def test_missing_or_non_numeric_fields_skip_the_modifier_or_use_missing() -> None:
    hits = [
        _hit("text", 0.5, ctr="high"),
        _hit("flag", 0.5, ctr=True),
        _hit("none", 0.5),
        _hit("nested", 0.5, stats={"ctr": 0.5}),
    ]
    skip = Modifier(Source.METADATA, "ctr", weight=1.0)
    apply(hits, lambda node: (skip,), lambda _: None)
    assert all(h.score == 0.5 for h in hits)
    assert all(h.contributions[0].skipped for h in hits)
    nested = Modifier(Source.METADATA, "stats.ctr", weight=1.0)
    apply(hits, lambda node: (nested,), lambda _: None)
    assert {h.node_id: h.score for h in hits}["nested"] == pytest.approx(0.75)
    fallback = Modifier(Source.METADATA, "ctr", weight=1.0, missing=-0.5)
    fresh = [_hit("none", 0.5)]
    apply(fresh, lambda node: (fallback,), lambda _: None)
    assert fresh[0].score == pytest.approx(0.25)


def test_bounds_clamp_the_effect_and_a_factor_never_goes_below_zero() -> None:
    hits = [_hit("big", 1.0, price=1000.0), _hit("neg", 1.0, price=-1000.0)]
    capped = Modifier(Source.METADATA, "price", weight=1.0, high=2.0)
    apply(hits, lambda node: (capped,), lambda _: None)
    assert {h.node_id: h.score for h in hits} == {"big": 2.0, "neg": 0.0}
    added = Modifier(Source.METADATA, "price", op=Op.ADD, weight=1.0, low=-0.1, high=0.1)
    more = [_hit("big", 1.0, price=1000.0), _hit("neg", 1.0, price=-1000.0)]
    apply(more, lambda node: (added,), lambda _: None)
    assert {h.node_id: h.score for h in more} == {"big": 1.1, "neg": 0.9}


@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.text(max_size=3),
            st.booleans(),
            st.none(),
        ),
        min_size=1,
        max_size=5,
    ),
    st.floats(-1e300, 1e300),
    st.floats(-1e300, 1e300),
)
def test_no_node_data_can_make_a_score_nan_or_infinite(
    values: list[object], weight: float, center: float
) -> None:
    hits = [_hit(f"n{i}", 0.5, x=v) for i, v in enumerate(values)]
    modifiers = (
        Modifier(Source.METADATA, "x", weight=weight, center=center),
        Modifier(Source.METADATA, "x", op=Op.ADD, weight=weight, center=center),
    )
    apply(hits, lambda node: modifiers, lambda _: None)
    assert all(math.isfinite(h.score) for h in hits)
    assert all(math.isfinite(c.effect) for h in hits for c in h.contributions)
    for hit in hits:  # the explanation adds up to the score
        applied = [c for c in hit.contributions if not c.skipped]
        factor = math.prod(c.effect for c in applied if c.op is Op.MULTIPLY)
        addend = math.fsum(c.effect for c in applied if c.op is Op.ADD)
        assert hit.base_score is not None
        assert hit.score == pytest.approx(hit.base_score * factor + addend, rel=1e-9, abs=1e-9)


def test_effects_finite_apart_but_overflowing_together_apply_none() -> None:
    """Two factors of 1e200 each: the score would overflow, so it stays the base score,
    and the explanation says no modifier applied (not the factors it did not use)."""
    hits = [_hit("n", 0.5, x=1e200)]
    both = (Modifier(Source.METADATA, "x", weight=1.0), Modifier(Source.METADATA, "x", weight=1.0))
    apply(hits, lambda node: both, lambda _: None)
    assert hits[0].score == 0.5
    assert [(c.effect, c.skipped) for c in hits[0].contributions] == [(1.0, True), (1.0, True)]


def test_invalid_modifiers_name_their_field() -> None:
    with pytest.raises(InvalidArgument, match=r"modifiers\[0\]\.weight"):
        check((Modifier(Source.METADATA, "x", weight=math.nan),))
    with pytest.raises(InvalidArgument, match=r"modifiers\[1\]\.min"):
        check((Modifier(Source.TAG, "t"), Modifier(Source.METADATA, "x", low=2, high=1)))
    with pytest.raises(InvalidArgument, match="at most 16"):
        check(tuple(Modifier(Source.TAG, "t") for _ in range(17)))
    with pytest.raises(ValueError, match="not a content type"):
        check_defaults({"Bad Type": ()})


def test_defaults_follow_the_content_type_with_a_star_fallback() -> None:
    boost = Modifier(Source.TAG, "go", op=Op.ADD, weight=0.1)
    other = Modifier(Source.TAG, "py", op=Op.ADD, weight=0.1)
    choose = defaults_for({"pattern": (boost,), "*": (other,)})
    pattern = NodeRecord(tenant="", id="a", content_type="pattern")
    page = NodeRecord(tenant="", id="b", content_type="page")
    assert choose(pattern) == (boost,)
    assert choose(page) == (other,)
    assert lookup({"a.b": 1, "a": {"b": 2}}, "a.b") == 1  # an exact key first


def test_an_unset_weight_is_the_default() -> None:
    from semantic.v1 import search_pb2 as pb
    from semantic.wire.feedback import modifier_defaults, modifiers_from_proto

    unset, given = modifiers_from_proto(
        [pb.ScoreModifier(metadata_key="ctr"), pb.ScoreModifier(metadata_key="ctr", weight=0.5)],
        "modifiers",
    )
    assert unset.weight == 0.2
    assert given.weight == 0.5
    for modifier, expected in ((unset, 1.2), (given, 1.5)):
        hits = [_hit("a", 1.0, ctr=1.0)]
        apply(hits, lambda node, m=modifier: (m,), lambda _: None)
        assert hits[0].score == pytest.approx(expected)
    assert modifier_defaults('{"*": [{"metadataKey": "ctr"}]}')["*"][0].weight == 0.2
