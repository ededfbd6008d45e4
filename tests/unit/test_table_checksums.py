"""Comparing table checksums: the keys that differ, and vector tables keyed by model."""

from semantic.store.postgres.checksums import differing, vectors_key


def test_differing_names_changed_missing_and_extra_tables() -> None:
    left = {"nodes": (2, "a"), "users": (1, "b"), "postings": (3, "c")}
    right = {"nodes": (2, "a"), "users": (1, "x"), "user_events": (0, "")}
    assert differing(left, right) == ["postings", "user_events", "users"]
    assert differing(left, dict(left)) == []


def test_a_vector_table_is_keyed_by_its_model_not_its_space_id() -> None:
    key = vectors_key("org/model", "ab" * 32, 384, 2)
    assert key == "vectors:org/model@abababababab/384v2"
    assert vectors_key("org/model", "cd" * 32, 384, 2) != key
