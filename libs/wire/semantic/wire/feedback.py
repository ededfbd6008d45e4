"""Feedback and score modifiers between protobuf and the core: validated on the way in
(INVALID_ARGUMENT naming the field), converted on the way out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import json_format

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core import modifiers as scoring
from semantic.core.domain import Hit
from semantic.core.feedback import (
    MAX_ITEMS,
    MAX_MINUTES,
    MAX_NOTE_CHARS,
    FeedbackRecord,
    NodeFeedback,
)
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.wire import convert
from semantic.wire.json_values import value_to_python

MAX_FUTURE = timedelta(minutes=5)
_SIGNALS = {
    pb.FEEDBACK_SIGNAL_SUCCESS_RATE: "success_rate",
    pb.FEEDBACK_SIGNAL_CONFIDENCE: "confidence",
    pb.FEEDBACK_SIGNAL_APPLIED: "applied",
    pb.FEEDBACK_SIGNAL_AVG_MINUTES_SAVED: "avg_minutes_saved",
}
_OPS = {
    pb.MODIFIER_OP_UNSPECIFIED: scoring.Op.MULTIPLY,
    pb.MODIFIER_OP_MULTIPLY: scoring.Op.MULTIPLY,
    pb.MODIFIER_OP_ADD: scoring.Op.ADD,
}
_OPS_OUT = {scoring.Op.MULTIPLY: pb.MODIFIER_OP_MULTIPLY, scoring.Op.ADD: pb.MODIFIER_OP_ADD}


def feedback_item_from_proto(
    item: epb.FeedbackItem, field: str, tenant: str, now: datetime
) -> FeedbackRecord:
    """A validated report of ``tenant`` (whose format the caller checked)."""
    validation.short_id(item.feedback_id, f"{field}.feedback_id", required=True)
    node_id, slug = convert.node_reference(item, field)
    if item.outcome not in (epb.FEEDBACK_OUTCOME_SUCCESS, epb.FEEDBACK_OUTCOME_FAILURE):
        raise InvalidArgument(f"{field}.outcome", "must be SUCCESS or FAILURE")
    minutes = (
        validation.number(
            item.minutes_saved, f"{field}.minutes_saved", minimum=-MAX_MINUTES, maximum=MAX_MINUTES
        )
        if item.HasField("minutes_saved")
        else None
    )
    validation.text(item.note, f"{field}.note", MAX_NOTE_CHARS)
    validation.user_id(item.reporter, f"{field}.reporter")
    occurred = (
        convert.timestamp(item.occurred_at, f"{field}.occurred_at")
        if item.HasField("occurred_at")
        else now
    )
    if occurred > now + MAX_FUTURE:
        raise InvalidArgument(f"{field}.occurred_at", "is more than 5 minutes in the future")
    return FeedbackRecord(
        feedback_id=item.feedback_id,
        tenant=tenant,
        node_id=node_id,
        slug=slug,
        success=item.outcome == epb.FEEDBACK_OUTCOME_SUCCESS,
        occurred_at=occurred,
        minutes_saved=minutes,
        note=item.note,
        reporter=item.reporter,
    )


def feedback_request_from_proto(
    request: pb.FeedbackRequest, tenant: str, now: datetime
) -> list[FeedbackRecord]:
    """Every report of a Feedback request (1-500, each feedback_id once), for ``tenant``:
    the request's, as the caller's token allows it (``auth.enforce_tenant``)."""
    validation.count(len(request.items), "items", MAX_ITEMS, minimum=1)
    twice = validation.repeated(item.feedback_id for item in request.items)
    if twice is not None:
        raise InvalidArgument(
            f"items[{twice[1]}].feedback_id", f"repeats items[{twice[0]}].feedback_id"
        )
    return [
        feedback_item_from_proto(item, f"items[{i}]", tenant, now)
        for i, item in enumerate(request.items)
    ]


def node_feedback_to_proto(value: NodeFeedback, out: cpb.NodeFeedback) -> None:
    """Fill ``out`` from a node's feedback."""
    out.applied = value.applied
    out.succeeded = value.succeeded
    out.failed = value.failed
    out.success_rate = value.success_rate
    out.confidence = value.confidence
    if value.avg_minutes_saved is not None:
        out.avg_minutes_saved = value.avg_minutes_saved
    if value.last_applied_at is not None:
        out.last_applied_at.FromDatetime(value.last_applied_at)


def attach(nodes: Sequence[cpb.Node], values: Mapping[str, NodeFeedback]) -> None:
    """Fill each node's ``feedback``."""
    for node in nodes:
        found = values.get(node.id)
        if found is not None:
            node_feedback_to_proto(found, node.feedback)


def modifiers_from_proto(
    messages: Sequence[pb.ScoreModifier], field: str = "modifiers"
) -> tuple[scoring.Modifier, ...]:
    """Validated score modifiers."""
    validation.count(len(messages), field, scoring.MAX_MODIFIERS)
    out = tuple(_modifier(m, f"{field}[{i}]") for i, m in enumerate(messages))
    scoring.check(out, field)
    return out


def _modifier(message: pb.ScoreModifier, field: str) -> scoring.Modifier:
    which = message.WhichOneof("input")
    value: Any = None
    if which is None:
        raise InvalidArgument(
            f"{field}.input", "set one of metadata_key, feedback, tag, metadata_contains"
        )
    if which == "metadata_key":
        source, key = scoring.Source.METADATA, message.metadata_key
        validation.json_key(key, f"{field}.metadata_key")
    elif which == "feedback":
        if message.feedback not in _SIGNALS:
            raise InvalidArgument(
                f"{field}.feedback",
                "must be SUCCESS_RATE, CONFIDENCE, APPLIED or AVG_MINUTES_SAVED",
            )
        source, key = scoring.Source.FEEDBACK, _SIGNALS[message.feedback]
    elif which == "tag":
        source, key = scoring.Source.TAG, validation.tag(message.tag, f"{field}.tag")
    else:
        match = message.metadata_contains
        source, key = scoring.Source.METADATA_CONTAINS, match.key
        validation.json_key(key, f"{field}.metadata_contains.key")
        value = value_to_python(match.value, f"{field}.metadata_contains.value")
        if value is None or isinstance(value, dict | list):
            raise InvalidArgument(
                f"{field}.metadata_contains.value", "must be a number, string or bool"
            )
    if message.op not in _OPS:
        raise InvalidArgument(f"{field}.op", "must be MULTIPLY or ADD")
    validation.text(message.name, f"{field}.name", scoring.MAX_NAME_CHARS)
    return scoring.Modifier(
        source=source,
        key=key,
        op=_OPS[message.op],
        weight=validation.number(message.weight, f"{field}.weight") or scoring.DEFAULT_WEIGHT,
        center=validation.number(message.center, f"{field}.center"),
        low=validation.number(message.min, f"{field}.min") if message.HasField("min") else None,
        high=validation.number(message.max, f"{field}.max") if message.HasField("max") else None,
        missing=(
            validation.number(message.missing, f"{field}.missing")
            if message.HasField("missing")
            else None
        ),
        value=value,
        name=message.name,
    )


def modifier_defaults(raw: str) -> dict[str, tuple[scoring.Modifier, ...]]:
    """The default modifiers setting: a JSON object of content type (or ``*``) -> a list
    of ScoreModifier in protobuf JSON. ValueError names what is wrong."""
    if not raw.strip():
        return {}
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"score modifiers: not JSON ({exc})") from exc
    if not isinstance(table, dict):
        raise ValueError("score modifiers: must be a JSON object of content type -> list")
    out: dict[str, tuple[scoring.Modifier, ...]] = {}
    for content_type, items in table.items():
        if not isinstance(items, list):
            raise ValueError(f"score modifiers[{content_type}]: must be a list")
        messages = []
        for item in items:
            try:
                messages.append(json_format.ParseDict(item, pb.ScoreModifier()))
            except json_format.ParseError as exc:
                raise ValueError(f"score modifiers[{content_type}]: {exc}") from exc
        try:
            out[content_type] = modifiers_from_proto(messages, f"score modifiers[{content_type}]")
        except InvalidArgument as exc:
            raise ValueError(str(exc)) from exc
    scoring.check_defaults(out)
    return out


def explain(hit: Hit, explanation: pb.HitExplanation) -> None:
    """The modifiers' part of a hit's explanation."""
    if hit.base_score is None:
        return
    explanation.base_score = hit.base_score
    explanation.modifiers.extend(contributions_to_proto(hit.contributions))


def contributions_to_proto(
    contributions: Sequence[scoring.Contribution],
) -> list[pb.ModifierContribution]:
    """Each modifier's contribution, as the explanations carry them."""
    return [
        pb.ModifierContribution(
            name=c.name, op=_OPS_OUT[c.op], input=c.input, effect=c.effect, skipped=c.skipped
        )
        for c in contributions
    ]
