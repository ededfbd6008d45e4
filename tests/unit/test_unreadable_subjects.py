"""Subjects the NATS client cannot parse are recognised, and their dead letters readable."""

import pytest

from semantic.indexer.unreadable import dead_letter_subject, readable

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("subject", "ok"),
    [
        ("semantic.content._.page", True),
        ("semantic.content.acme.page-ü", True),
        ("semantic.content.a\x0bb._", False),
        ("semantic.user.a\x0cb", False),
        ("semantic.user.a\x7fb", False),
    ],
)
def test_subjects_with_control_characters_are_unreadable(subject: str, ok: bool) -> None:
    assert readable(subject) is ok


def test_the_dead_letter_subject_of_an_unreadable_subject_is_readable() -> None:
    subject = dead_letter_subject("semantic.content.a\x0bb.\x0c")
    assert subject == "semantic.dlq.content.a_b._"
    assert readable(subject)
