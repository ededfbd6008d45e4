"""Write rules: versions order writes, hashes decide whether vectors are remade."""

from semantic.core.domain import NodeRecord
from semantic.core.nodes import Outcome, Stored, content_hash, decide
from semantic.core.rules import Rule, Severity


def node(version: int = 0, body: str = "body", **changes: object) -> NodeRecord:
    base = NodeRecord(
        tenant="", id="n1", content_type="page", title="T", body=body, version=version
    )
    fields = {**base.__dict__, **changes}
    record = NodeRecord(**fields)  # type: ignore[arg-type]
    return NodeRecord(**{**record.__dict__, "content_hash": content_hash(record)})


def stored(record: NodeRecord) -> Stored:
    return Stored(record.version, record.content_hash, record)


def test_new_node_is_created() -> None:
    assert decide(node(1), None) is Outcome.CREATED


def test_redelivery_of_the_same_version_is_unchanged() -> None:
    assert decide(node(3), stored(node(3))) is Outcome.UNCHANGED


def test_older_version_never_overwrites_a_newer_one() -> None:
    assert decide(node(2, body="old"), stored(node(5, body="new"))) is Outcome.STALE


def test_same_version_with_other_content_is_stale() -> None:
    assert decide(node(5, body="other"), stored(node(5))) is Outcome.STALE


def test_newer_version_with_new_content_is_updated() -> None:
    assert decide(node(6, body="new"), stored(node(5))) is Outcome.UPDATED


def test_metadata_only_change_keeps_vectors() -> None:
    before = node(5)
    after = node(6, metadata={"price": 10}, tags=("sale",))
    assert after.content_hash == before.content_hash
    assert decide(after, stored(before)) is Outcome.METADATA_UPDATED


def test_tombstone_blocks_older_upsert_but_not_newer() -> None:
    tomb = Stored(7, None, None)
    assert decide(node(6), tomb) is Outcome.STALE
    assert decide(node(8), tomb) is Outcome.CREATED


def test_unversioned_writes_are_last_writer_wins() -> None:
    assert decide(node(0, body="edited"), stored(node(4))) is Outcome.UPDATED


def test_hash_ignores_metadata_tags_and_slug_but_not_texts() -> None:
    a = node(1)
    assert content_hash(node(1, metadata={"x": 1}, slug="s", tags=("t",))) == a.content_hash
    assert content_hash(node(1, texts={"problem": "p"})) != a.content_hash
    assert content_hash(node(1, content_type="quiz")) != a.content_hash


def test_guardian_rules_given_or_not_decide_like_metadata() -> None:
    rule = Rule("no-eval", "eval(", severity=Severity.ERROR)
    current = stored(node(2, rules=(rule,)))
    assert decide(node(2), current) is Outcome.UNCHANGED  # unset: the stored ones are kept
    assert decide(node(2, rules=(rule,)), current) is Outcome.UNCHANGED
    assert decide(node(3, rules=()), current) is Outcome.METADATA_UPDATED
    assert decide(node(2, rules=(Rule("no-eval", "exec("),)), current) is Outcome.STALE
