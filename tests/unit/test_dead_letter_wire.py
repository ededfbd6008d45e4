"""Dead-letter requests validated and payloads previewed (semantic.wire.pipeline)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
from google.protobuf import json_format

from semantic.common.errors import InvalidArgument
from semantic.core.pipeline import DEAD_LETTER_REASONS
from semantic.v1 import common_pb2 as cpb
from semantic.v1 import events_pb2 as epb
from semantic.v1 import search_pb2 as pb
from semantic.wire.pipeline import PREVIEW_BYTES, list_request, payload_preview, selection


def _event() -> epb.ContentEvent:
    return epb.ContentEvent(
        event_id="e1",
        op=epb.CONTENT_OP_UPSERT,
        version=1,
        node=cpb.Node(id="n1", content_type="page", title="Bread"),
    )


def test_a_protobuf_event_is_previewed_as_protobuf_json() -> None:
    text, encoding, cut = payload_preview(
        "semantic.content._.page", "application/protobuf", _event().SerializeToString()
    )
    assert encoding == pb.PAYLOAD_ENCODING_PROTOBUF_JSON
    assert not cut
    assert json.loads(text)["node"]["title"] == "Bread"
    # No Content-Type means protobuf too; a user subject decodes a UserEvent.
    user = epb.UserEvent(event_id="u", user_id="x", node_id="n1", action=epb.USER_ACTION_VIEW)
    text, encoding, _ = payload_preview("semantic.user._", "", user.SerializeToString())
    assert encoding == pb.PAYLOAD_ENCODING_PROTOBUF_JSON
    assert json.loads(text)["userId"] == "x"


def test_an_event_with_no_json_form_is_previewed_as_bytes() -> None:
    event = _event()
    event.node.created_at.nanos = -5  # valid protobuf, no valid JSON timestamp
    payload = event.SerializeToString()
    text, encoding, _ = payload_preview("semantic.content._.page", "", payload)
    assert encoding == pb.PAYLOAD_ENCODING_BASE64
    assert base64.b64decode(text) == payload


def test_json_text_and_binary_payloads() -> None:
    raw = json_format.MessageToJson(_event()).encode()
    _, encoding, _ = payload_preview("semantic.content._.page", "application/json", raw)
    assert encoding == pb.PAYLOAD_ENCODING_PROTOBUF_JSON
    text, encoding, _ = payload_preview("semantic.content._.page", "application/json", b"{oops")
    assert (text, encoding) == ("{oops", pb.PAYLOAD_ENCODING_TEXT)
    text, encoding, _ = payload_preview("semantic.content._.page", "text/plain", raw)
    assert encoding == pb.PAYLOAD_ENCODING_TEXT  # not decoded: the indexer would not either
    binary = bytes(range(32)) * 4
    text, encoding, cut = payload_preview("semantic.content._.page", "", binary)
    assert encoding == pb.PAYLOAD_ENCODING_BASE64
    assert base64.b64decode(text) == binary
    assert not cut
    assert payload_preview("semantic.content._.page", "", b"") == (
        "",
        pb.PAYLOAD_ENCODING_UNSPECIFIED,
        False,
    )


def test_previews_are_cut_at_2_kib_never_inside_a_character() -> None:
    text, encoding, cut = payload_preview("other", "", ("é" * 3000).encode())
    assert encoding == pb.PAYLOAD_ENCODING_TEXT
    assert cut
    assert len(text.encode()) <= PREVIEW_BYTES
    assert set(text) == {"é"}
    text, encoding, cut = payload_preview("other", "", bytes(range(32)) * 200)
    assert encoding == pb.PAYLOAD_ENCODING_BASE64
    assert cut
    assert len(text) <= PREVIEW_BYTES


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ReplayDeadLettersRequest(), "seqs"),
        (pb.ReplayDeadLettersRequest(seqs=[1], all=True), "seqs"),
        (pb.ReplayDeadLettersRequest(seqs=[1], reason="invalid"), "reason"),
        (pb.ReplayDeadLettersRequest(seqs=[1, 2, 1]), "seqs[2]"),
        (pb.ReplayDeadLettersRequest(seqs=[0]), "seqs[0]"),
        (pb.DiscardDeadLettersRequest(seqs=list(range(1, 1002))), "seqs"),
        (pb.DiscardDeadLettersRequest(all=True, reason="bad\x00"), "reason"),
    ],
)
def test_a_selection_is_validated(
    request_: pb.ReplayDeadLettersRequest | pb.DiscardDeadLettersRequest, field: str
) -> None:
    with pytest.raises(InvalidArgument) as caught:
        selection(request_)
    assert caught.value.field == field


def test_valid_selections_and_listings() -> None:
    assert selection(pb.ReplayDeadLettersRequest(seqs=[3, 1])) == ([3, 1], "")
    assert selection(pb.DiscardDeadLettersRequest(all=True, reason="invalid")) == (None, "invalid")
    assert list_request(pb.ListDeadLettersRequest()) == (0, 0, "")
    with pytest.raises(InvalidArgument, match="limit"):
        list_request(pb.ListDeadLettersRequest(limit=501))


def test_a_reason_filter_is_one_of_the_reasons_the_indexer_gives() -> None:
    for reason in ("max-deliver", "MAX_DELIVER", "nope"):
        with pytest.raises(InvalidArgument) as refused:
            list_request(pb.ListDeadLettersRequest(reason=reason))
        assert refused.value.field == "reason"
        with pytest.raises(InvalidArgument):
            selection(pb.DiscardDeadLettersRequest(all=True, reason=reason))
    for reason in ("", *DEAD_LETTER_REASONS):
        assert list_request(pb.ListDeadLettersRequest(reason=reason))[2] == reason
    # Every reason the indexer dead-letters with is in the set the filter accepts.
    source = "".join(
        path.read_text()
        for path in (Path(__file__).parents[2] / "services/indexer/semantic/indexer").glob("*.py")
    )
    given = set(re.findall(r'(?:Poison|DeadLetter)\(\s*"([a-z_]+)"', source))
    assert given == set(DEAD_LETTER_REASONS), given
