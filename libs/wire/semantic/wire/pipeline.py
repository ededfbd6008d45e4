"""Dead-letter and pipeline messages <-> core values: the Admin requests validated (naming
the field), the letters with a readable payload preview, the backlog for the health
report.

The preview is what an operator needs to see what went wrong: a payload that decodes as
the subject's event (ContentEvent on ``semantic.content.*``, UserEvent on
``semantic.user.*``, as protobuf or protobuf-JSON by its Content-Type) is shown as
protobuf-JSON; anything else as UTF-8 text when it is text, else base64. Cut at 2 KiB.
"""

from __future__ import annotations

import base64
import json

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from semantic.common import validation
from semantic.common.errors import InvalidArgument
from semantic.core.pipeline import (
    DEAD_LETTER_REASONS,
    MAX_LIST_LIMIT,
    MAX_SEQS,
    DeadLetter,
    DeadLetterPage,
    PipelineState,
    ReplayReport,
)
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb

PREVIEW_BYTES = 2048
"""Longest payload preview, in bytes of its UTF-8 (or base64) text."""
_EVENTS: dict[str, type[Message]] = {
    "semantic.content.": epb.ContentEvent,
    "semantic.user.": epb.UserEvent,
}
_PROTOBUF_TYPES = frozenset({"", "application/protobuf", "application/x-protobuf"})
_JSON_TYPES = frozenset({"application/json"})


def list_request(request: pb.ListDeadLettersRequest) -> tuple[int, int, str]:
    """(limit, before_seq, reason) of a valid listing request."""
    validation.count(request.limit, "limit", MAX_LIST_LIMIT)
    validation.integer(request.before_seq, "before_seq")
    return request.limit, request.before_seq, _reason(request.reason)


def selection(
    request: pb.ReplayDeadLettersRequest | pb.DiscardDeadLettersRequest,
) -> tuple[list[int] | None, str]:
    """(the sequences, or None for all; the reason filter) of a valid replay or discard."""
    seqs = list(request.seqs)
    if request.all:
        if seqs:
            raise InvalidArgument("seqs", "must be empty when all is true")
        return None, _reason(request.reason)
    if not seqs:
        raise InvalidArgument("seqs", "name at least one sequence, or set all")
    if request.reason:
        raise InvalidArgument("reason", "filters only with all; name the sequences instead")
    validation.count(len(seqs), "seqs", MAX_SEQS)
    for index, seq in enumerate(seqs):
        validation.integer(seq, f"seqs[{index}]", minimum=1)
    again = validation.repeated(seqs)
    if again is not None:
        raise InvalidArgument(f"seqs[{again[1]}]", f"repeats seqs[{again[0]}] ({seqs[again[0]]})")
    return seqs, ""


def _reason(value: str) -> str:
    """A reason filter: empty (every reason) or one of ``DEAD_LETTER_REASONS`` (a typo would
    otherwise match nothing, and a discard of "all" of it would look like an empty queue)."""
    if value and value not in DEAD_LETTER_REASONS:
        raise InvalidArgument("reason", f"must be one of {', '.join(DEAD_LETTER_REASONS)}")
    return value


def page_to_proto(page: DeadLetterPage) -> pb.ListDeadLettersResponse:
    """The listing response."""
    return pb.ListDeadLettersResponse(
        letters=[letter_to_proto(letter) for letter in page.letters], total=page.total
    )


def letter_to_proto(letter: DeadLetter) -> pb.DeadLetter:
    """One letter with its preview."""
    preview, encoding, truncated = payload_preview(
        letter.original_subject, letter.content_type, letter.payload
    )
    message = pb.DeadLetter(
        seq=letter.seq,
        subject=letter.subject,
        original_subject=letter.original_subject,
        reason=letter.reason,
        detail=letter.detail,
        deliveries=max(0, min(letter.deliveries, 2**32 - 1)),
        content_type=letter.content_type,
        size_bytes=len(letter.payload),
        payload_preview=preview,
        preview_encoding=encoding,
        preview_truncated=truncated,
    )
    message.time.FromDatetime(letter.time)
    return message


def replay_to_proto(report: ReplayReport) -> pb.ReplayDeadLettersResponse:
    """The replay response, failures by sequence."""
    return pb.ReplayDeadLettersResponse(
        replayed=report.replayed,
        failures=[
            pb.DeadLetterFailure(seq=seq, error=error)
            for seq, error in sorted(report.failures.items())
        ],
    )


def payload_preview(
    subject: str, content_type: str, payload: bytes
) -> tuple[str, pb.PayloadEncoding.ValueType, bool]:
    """(preview, its encoding, whether it was cut) of a payload (see the module doc)."""
    if not payload:
        return "", pb.PAYLOAD_ENCODING_UNSPECIFIED, False
    decoded = _as_event(subject, content_type, payload)
    if decoded is not None:
        return _shown(decoded, pb.PAYLOAD_ENCODING_PROTOBUF_JSON)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and _printable(text):
        return _shown(text, pb.PAYLOAD_ENCODING_TEXT)
    if _mostly_text(payload):
        return _shown(payload.decode("utf-8", errors="replace"), pb.PAYLOAD_ENCODING_TEXT)
    head = payload[: PREVIEW_BYTES * 3 // 4]
    return (
        base64.b64encode(head).decode("ascii"),
        pb.PAYLOAD_ENCODING_BASE64,
        len(head) < len(payload),
    )


def _shown(
    text: str, encoding: pb.PayloadEncoding.ValueType
) -> tuple[str, pb.PayloadEncoding.ValueType, bool]:
    cut, truncated = _cut(text)
    return cut, encoding, truncated


def _cut(text: str) -> tuple[str, bool]:
    """The text cut to PREVIEW_BYTES of UTF-8 (never inside a character)."""
    raw = text.encode("utf-8")
    if len(raw) <= PREVIEW_BYTES:
        return text, False
    return raw[:PREVIEW_BYTES].decode("utf-8", errors="ignore"), True


def _as_event(subject: str, content_type: str, payload: bytes) -> str | None:
    """The payload as protobuf-JSON of the subject's event, or None."""
    kind = next((t for prefix, t in _EVENTS.items() if subject.startswith(prefix)), None)
    if kind is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    event = kind()
    try:
        if media in _PROTOBUF_TYPES:
            event.ParseFromString(payload)
            event.DiscardUnknownFields()
            if event.ByteSize() != len(payload):  # unknown fields: not this event
                return None
        elif media in _JSON_TYPES:
            json_format.Parse(payload.decode("utf-8"), event)
        else:
            return None
        rendered = json_format.MessageToDict(event, preserving_proto_field_name=False)
    except (
        DecodeError,
        json_format.ParseError,
        json_format.SerializeToJsonError,  # parses, has no JSON form (a timestamp's nanos < 0)
        ValueError,
        TypeError,
        RecursionError,
    ):
        return None
    if not rendered:  # bytes that happen to parse as an empty message say nothing
        return None
    return json.dumps(rendered, ensure_ascii=False, sort_keys=True)


def _printable(text: str) -> bool:
    return all(ch.isprintable() or ch in "\n\r\t" for ch in text)


def _mostly_text(payload: bytes) -> bool:
    """Nine in ten bytes printable ASCII or UTF-8 continuation: text with a few bad bytes."""
    good = sum(1 for b in payload[:PREVIEW_BYTES] if 32 <= b < 127 or b in (9, 10, 13) or b >= 128)
    return good * 10 >= 9 * min(len(payload), PREVIEW_BYTES)


def lag_to_proto(state: PipelineState, response: pb.HealthReportResponse) -> None:
    """Fill the health report's backlog: the sum over the consumers, each consumer, and
    the dead letters."""
    total = pb.ConsumerLag(dead_letters=state.dead_letters)
    for consumer in state.consumers:
        lag = pb.ConsumerLag(
            pending=consumer.pending,
            ack_pending=consumer.ack_pending,
            redelivered=consumer.redelivered,
        )
        total.pending += consumer.pending
        total.ack_pending += consumer.ack_pending
        total.redelivered += consumer.redelivered
        response.consumers.append(pb.ConsumerBacklog(consumer=consumer.name, lag=lag))
    response.lag.CopyFrom(total)
    response.dead_letters = state.dead_letters
