"""How a record of another vector store becomes a node: ids, metadata, content types,
titles, and the values refused."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest

from semantic.common.errors import InvalidArgument
from semantic.tools.foreign.records import (
    ForeignRecord,
    MappingOptions,
    map_record,
    parse_metadata,
)

pytestmark = pytest.mark.unit


def _record(**fields: object) -> ForeignRecord:
    values: dict[str, object] = {"id": "a", "vector": None, "text": "body", "metadata": {}}
    values.update(fields)
    return ForeignRecord(**values)  # type: ignore[arg-type]


def test_metadata_keys_give_content_type_and_title_and_leave_the_metadata() -> None:
    record = _record(metadata={"kind": "faq", "title": "T", "lang": "en"})
    node = map_record(record, 0, MappingOptions(id_prefix="x:", content_type_key="kind"))
    assert (node.id, node.content_type, node.title, node.body) == ("x:a", "faq", "T", "body")
    assert node.metadata == {"lang": "en"}
    assert record.metadata == {"kind": "faq", "title": "T", "lang": "en"}  # not changed


def test_defaults_apply_without_metadata_keys() -> None:
    node = map_record(_record(content_type=None), 0, MappingOptions(default_content_type="page"))
    assert (node.content_type, node.title, node.metadata) == ("page", "", {})
    assert map_record(_record(content_type="offer"), 0, MappingOptions()).content_type == "offer"


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (_record(id=""), "record 3 (id '').id: must not be empty"),
        (_record(id="a\x01"), "control characters"),
        (
            _record(metadata={"when": dt.date(2024, 1, 1)}),
            "metadata.when: a date value is not JSON",
        ),
        (_record(metadata={"n": np.float32(1.0)}), "metadata.n: a float32 value is not JSON"),
        (_record(metadata={"x": [1, math.nan]}), "metadata.x[1]: nan is not a JSON number"),
        (_record(metadata={"x": {1: "a"}}), "key 1 is not a string"),
        (_record(metadata={"content_type": "Not A Type"}), "content_type"),
        (_record(metadata={"title": 3}), "metadata.title: must be a string"),
        (_record(text="a\x00b"), "NUL"),
    ],
)
def test_invalid_records_are_refused_naming_the_record(record: ForeignRecord, message: str) -> None:
    with pytest.raises(InvalidArgument, match="record 3") as caught:
        map_record(record, 3, MappingOptions())
    assert message in str(caught.value)


def test_metadata_column_forms() -> None:
    assert parse_metadata(None, "m") == {}
    assert parse_metadata('{"a": 1}', "m") == {"a": 1}
    assert parse_metadata([("a", 1)], "m") == {"a": 1}
    with pytest.raises(InvalidArgument, match="m: must be a JSON object"):
        parse_metadata("[1]", "m")
