"""Guardian rules against a real search service and PostgreSQL: written with Upsert
(replaced when given, kept when not, stale writes change none, deleted with their node),
with WriteRules / RemoveRules and on ContentEvents through the indexer; Check finds literal
and regex matches with their lines and columns (multi-byte characters, CRLF, a last line
without a line end), by scope, activity and severity, per tenant; an oversize text is
refused, a catastrophic-backtracking pattern completes, a spent budget answers with what it
found; every bad input is INVALID_ARGUMENT naming the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from indexer_kit import (
    content_event,
    indexer_env,
    publish,
    running_indexer,
    running_search,
    search_env,
    wait_for,
    wait_for_streams,
)
from nats.aio.client import Client as NatsClient

from semantic.v1 import common_pb2 as cpb
from semantic.v1 import search_pb2 as pb
from semantic.v1 import search_pb2_grpc

REGEX, LITERAL = cpb.RULE_KIND_REGEX, cpb.RULE_KIND_LITERAL
INFO, WARNING, ERROR, CRITICAL = (
    cpb.RULE_SEVERITY_INFO,
    cpb.RULE_SEVERITY_WARNING,
    cpb.RULE_SEVERITY_ERROR,
    cpb.RULE_SEVERITY_CRITICAL,
)


def _rule(rule_id: str, pattern: str, **fields: Any) -> cpb.Rule:
    return cpb.Rule(id=rule_id, pattern=pattern, **fields)


def _scope(tags: list[str] | None = None, **conditions: Any) -> cpb.RuleScope:
    scope = cpb.RuleScope(tags_any=tags or [])
    for key, (test, value) in conditions.items():
        condition = scope.metadata.add(key=key)
        if test == "any_of":
            condition.any_of.extend(value)
        else:
            getattr(condition, test).string_value = value
    return scope


def _node(key: str, version: int = 1, rules: list[cpb.Rule] | None = None) -> cpb.Node:
    node = cpb.Node(
        id=key,
        content_type="fix_pattern",
        title=f"Pattern {key}",
        body=f"How to fix {key}.",
        version=version,
    )
    if rules is not None:
        node.rules.CopyFrom(cpb.Rules(items=rules))
    return node


def _scope_of(tags: list[str] | None = None, **metadata: Any) -> pb.CheckScope:
    scope = pb.CheckScope(tags=tags or [])
    scope.metadata.update(metadata)
    return scope


def _found(reply: pb.CheckResponse) -> list[tuple[str, int, int, int, int, str]]:
    return [
        (v.rule_id, v.line, v.column, v.end_line, v.end_column, v.match) for v in reply.violations
    ]


@pytest.fixture
def env(database_url: str, embedder_address: str, fp32_model_dir: Path) -> dict[str, str]:
    return search_env(database_url, embedder_address, fp32_model_dir)


async def _rules(stub: search_pb2_grpc.SearchStub, key: str) -> list[tuple[str, str]]:
    got = await stub.Get(pb.GetRequest(ids=[key], include_rules=True))
    assert got.nodes[0].HasField("rules")
    return [(r.id, r.pattern) for r in got.nodes[0].rules.items]


async def test_rules_written_with_nodes_follow_the_version_rules(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        rules = [_rule("no-eval", r"\beval\(", kind=REGEX), _rule("todo", "TODO")]
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval", rules=rules)]), timeout=120)
        assert await _rules(stub, "eval") == [("no-eval", r"\beval\("), ("todo", "TODO")]
        got = await stub.Get(pb.GetRequest(ids=["eval"], include_rules=True))
        first = got.nodes[0].rules.items[0]
        assert (first.kind, first.severity, first.active) == (REGEX, WARNING, True)
        assert first.HasField("updated_at")
        plain = await stub.Get(pb.GetRequest(ids=["eval"]))
        assert not plain.nodes[0].HasField("rules")  # only on request

        # Unset rules keep the stored ones; a stale write changes none; a newer version
        # replaces them; the same version with other rules is stale.
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval", version=2)]), timeout=60)
        assert len(await _rules(stub, "eval")) == 2
        stale = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("eval", version=1, rules=[])]), timeout=60
        )
        assert stale.results[0].outcome == pb.UPSERT_OUTCOME_STALE
        assert len(await _rules(stub, "eval")) == 2
        other = [_rule("no-exec", "exec(")]
        same_version = await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("eval", 2, other)]), timeout=60
        )
        assert same_version.results[0].outcome == pb.UPSERT_OUTCOME_STALE
        newer = await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval", 3, other)]), timeout=60)
        assert newer.results[0].outcome == pb.UPSERT_OUTCOME_METADATA_UPDATED
        assert await _rules(stub, "eval") == [("no-exec", "exec(")]
        again = await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval", 3, other)]), timeout=60)
        assert again.results[0].outcome == pb.UPSERT_OUTCOME_UNCHANGED
        found = await stub.Check(pb.CheckRequest(text="os.exec(cmd)"))
        assert [(v.rule_id, v.node_id, v.node_title) for v in found.violations] == [
            ("no-exec", "eval", "Pattern eval")
        ]

        # Deleting the node deletes its rules; a node made again under its id has none.
        await stub.Delete(pb.DeleteRequest(ids=["eval"]))
        assert not (await stub.Check(pb.CheckRequest(text="os.exec(cmd)"))).violations
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval", version=4)]), timeout=60)
        assert await _rules(stub, "eval") == []


TEXT = (
    "import os\r\n"
    "def load(raw):  # café: TODO\r\n"
    "    return eval(raw)\r\n"
    "password = 'hunter2'\n"
    "ünïcödé eval(x) todo"  # the last line has no line end
)


async def test_check_finds_literal_and_regex_matches_at_their_lines_and_columns(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("eval"), _node("secrets")]), timeout=120)
        reply = await stub.WriteRules(
            pb.WriteRulesRequest(
                node_id="eval",
                rules=[
                    _rule(
                        "no-eval",
                        r"\beval\(\w+\)",
                        kind=REGEX,
                        severity=ERROR,
                        action="require review",
                        message="Parse the value instead.",
                    ),
                    _rule("todo", "todo", case_insensitive=True, severity=INFO),
                ],
            )
        )
        assert (reply.created, reply.updated, reply.removed) == (2, 0, 0)
        await stub.WriteRules(
            pb.WriteRulesRequest(
                node_id="secrets",
                rules=[
                    _rule("password", r"^password\s*=", kind=REGEX, severity=CRITICAL),
                    _rule("top-import", r"^import os$", kind=REGEX, action="fine"),
                ],
            )
        )
        found = await stub.Check(pb.CheckRequest(text=TEXT))
        assert _found(found) == [
            ("top-import", 1, 1, 1, 10, "import os"),
            ("todo", 2, 25, 2, 29, "TODO"),
            ("no-eval", 3, 12, 3, 21, "eval(raw)"),
            ("password", 4, 1, 4, 11, "password ="),
            ("no-eval", 5, 9, 5, 16, "eval(x)"),
            ("todo", 5, 17, 5, 21, "todo"),
        ]
        third = found.violations[2]
        assert (third.node_id, third.node_title, third.severity) == ("eval", "Pattern eval", ERROR)
        assert (third.action, third.message) == ("require review", "Parse the value instead.")
        assert (found.rules_in_scope, found.rules_checked) == (4, 4)
        assert not found.truncated
        assert not found.budget_exceeded

        # Another tenant has none of these rules.
        theirs = await stub.Check(pb.CheckRequest(tenant="globex", text=TEXT))
        assert (list(theirs.violations), theirs.rules_in_scope) == ([], 0)


async def test_check_runs_active_rules_of_the_severities_asked_whose_scope_holds(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(
            pb.UpsertRequest(
                nodes=[
                    _node(
                        "print",
                        rules=[
                            _rule("anywhere", "print(", severity=INFO),
                            _rule("api", "print(", scope=_scope(layer=("equals", "api"))),
                            _rule(
                                "python-api",
                                "print(",
                                severity=ERROR,
                                scope=_scope(
                                    ["backend"],
                                    layer=("equals", "api"),
                                    file_type=("any_of", ["py", "pyi"]),
                                ),
                            ),
                            _rule("migrations", "print(", scope=_scope(path=("contains", "/mig"))),
                            _rule("retired", "print(", active=False),
                        ],
                    )
                ]
            ),
            timeout=120,
        )

        async def ids(**request: Any) -> list[str]:
            reply = await stub.Check(pb.CheckRequest(text="print(x)", **request))
            assert reply.rules_checked == reply.rules_in_scope == len(reply.violations)
            return [v.rule_id for v in reply.violations]

        assert await ids() == ["anywhere"]
        assert await ids(scope=_scope_of(layer="api")) == ["api", "anywhere"]
        everything = _scope_of(["backend"], layer="api", file_type="py", path="db/migrations/1.py")
        assert await ids(scope=everything) == ["python-api", "api", "migrations", "anywhere"]
        assert await ids(scope=_scope_of(["frontend"], layer="api", file_type="py")) == [
            "api",
            "anywhere",
        ]
        assert await ids(include_inactive=True) == ["retired", "anywhere"]
        assert await ids(scope=everything, severities=[ERROR, INFO]) == ["python-api", "anywhere"]

        capped = await stub.Check(pb.CheckRequest(text="print(1)\n" * 5, max_violations=3))
        assert [v.line for v in capped.violations] == [1, 2, 3]
        assert capped.truncated


async def test_write_rules_replace_and_remove_with_their_counts_and_limits(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search({**env, "SEMANTIC_SEARCH_MAX_RULES": "3"}, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("sql")]), timeout=120)
        a, b = _rule("a", "alpha"), _rule("b", "beta")

        async def write(rules: list[cpb.Rule], *, replace: bool = False) -> tuple[int, ...]:
            reply = await stub.WriteRules(
                pb.WriteRulesRequest(node_id="sql", rules=rules, replace=replace)
            )
            return reply.created, reply.updated, reply.removed

        assert await write([a, b]) == (2, 0, 0)
        assert await write([a, _rule("b", "beta", severity=ERROR)]) == (0, 1, 0)  # a unchanged
        assert await write([_rule("c", "gamma")], replace=True) == (1, 0, 2)
        assert await _rules(stub, "sql") == [("c", "gamma")]
        checked = await stub.Check(pb.CheckRequest(text="alpha gamma"))
        assert [v.rule_id for v in checked.violations] == ["c"]

        with pytest.raises(grpc.aio.AioRpcError) as too_many:  # 3 held + 1 new > 3
            await write([a, b, _rule("d", "delta")])
        assert too_many.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (too_many.value.details() or "").startswith("rules:")
        assert await _rules(stub, "sql") == [("c", "gamma")]  # nothing of it written

        removed = await stub.RemoveRules(
            pb.RemoveRulesRequest(node_id="sql", rule_ids=["c", "missing"])
        )
        assert removed.removed == 1
        assert await _rules(stub, "sql") == []
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.WriteRules(pb.WriteRulesRequest(node_id="nobody", rules=[a]))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_oversize_texts_are_refused_and_pathological_patterns_complete(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = {**env, "SEMANTIC_SEARCH_MAX_CHECK_BYTES": "300000"}
    async with running_search(limited, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        nested = [_rule("nested", "(a+)+$", kind=REGEX), _rule("alt", "(a|aa)+b", kind=REGEX)]
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("redos", rules=nested)]), timeout=120)
        reply = await stub.Check(pb.CheckRequest(text="a" * 250_000 + "!"))
        assert (list(reply.violations), reply.rules_checked, reply.budget_exceeded) == (
            [],
            2,
            False,
        )
        with pytest.raises(grpc.aio.AioRpcError) as big:
            await stub.Check(pb.CheckRequest(text="é" * 150_001))  # 300,002 bytes
        assert big.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (big.value.details() or "").startswith("text:")


async def test_a_spent_budget_answers_with_the_rules_checked_and_budget_exceeded(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search({**env, "SEMANTIC_SEARCH_CHECK_BUDGET_MS": "1"}, monkeypatch) as ch:
        stub = search_pb2_grpc.SearchStub(ch)
        rules = [_rule(f"r{i:02d}", f"w{i % 10}", severity=INFO) for i in range(40)]
        await stub.Upsert(pb.UpsertRequest(nodes=[_node("busy", rules=rules)]), timeout=120)

        async def compiled() -> bool:  # kept by the process once compiled, in any budget
            return (await stub.Check(pb.CheckRequest(text="w1"))).rules_in_scope == 40

        await wait_for(compiled, timeout_s=60, what="the rules compiled")
        text = " ".join(f"w{i % 10}" for i in range(200_000))  # every rule matches everywhere
        reply = await stub.Check(pb.CheckRequest(text=text, max_violations=1000), timeout=120)
        assert reply.budget_exceeded
        assert reply.rules_checked < reply.rules_in_scope == 40
        assert len({v.rule_id for v in reply.violations}) <= reply.rules_checked
        # Other calls are served as before.
        assert (await stub.Get(pb.GetRequest(ids=["busy"]))).nodes


def _bad_rule(**fields: Any) -> pb.WriteRulesRequest:
    rule = cpb.Rule(**{"id": "r", "pattern": "x", **fields})
    return pb.WriteRulesRequest(node_id="eval", rules=[rule])


BAD: list[tuple[Any, str]] = [
    (_bad_rule(id="Bad Id"), "rules[0].id"),
    (_bad_rule(pattern=""), "rules[0].pattern"),
    (_bad_rule(pattern=r"(\w+)\1", kind=REGEX), "rules[0].pattern"),  # a backreference
    (_bad_rule(pattern=r"(?<=a)b", kind=REGEX), "rules[0].pattern"),  # lookbehind
    (_bad_rule(pattern="a*", kind=REGEX), "rules[0].pattern"),  # matches the empty text
    (_bad_rule(pattern="x" * 1001), "rules[0].pattern"),
    (_bad_rule(pattern="a\x00"), "rules[0].pattern"),
    (_bad_rule(severity=9), "rules[0].severity"),
    (_bad_rule(kind=5), "rules[0].kind"),
    (_bad_rule(action="x" * 201), "rules[0].action"),
    (
        _bad_rule(scope=cpb.RuleScope(metadata=[cpb.ScopeCondition(key="layer")])),
        "rules[0].scope.metadata[0]",
    ),
    (pb.WriteRulesRequest(node_id="eval"), "rules"),
    (pb.WriteRulesRequest(node_id="", rules=[_rule("r", "x")]), "node_id"),
    (pb.WriteRulesRequest(node_id="eval", rules=[_rule("r", "x"), _rule("r", "y")]), "rules[1].id"),
    (pb.RemoveRulesRequest(node_id="eval"), "rule_ids"),
    (pb.RemoveRulesRequest(node_id="eval", rule_ids=["UP"]), "rule_ids[0]"),
    (pb.CheckRequest(text="x", max_violations=1001), "max_violations"),
    (pb.CheckRequest(text="x", severities=[cpb.RULE_SEVERITY_UNSPECIFIED]), "severities[0]"),
    (pb.CheckRequest(text="x", scope=pb.CheckScope(tags=[""])), "scope.tags[0]"),
    (pb.CheckRequest(tenant="bad tenant", text="x"), "tenant"),
    (
        pb.UpsertRequest(
            nodes=[_node("eval", rules=[_rule("r", "x"), _rule("s", "(", kind=REGEX)])]
        ),
        "nodes[0].rules.items[1].pattern",
    ),
]


async def test_bad_rule_and_check_input_is_invalid_argument_naming_the_field(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        nan = pb.CheckRequest(text="x")
        nan.scope.metadata.update({"level": float("nan")})
        for request, field in [*BAD, (nan, "scope.metadata.level")]:
            method = {
                "WriteRulesRequest": stub.WriteRules,
                "RemoveRulesRequest": stub.RemoveRules,
                "CheckRequest": stub.Check,
                "UpsertRequest": stub.Upsert,
            }[type(request).__name__]
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await method(request, timeout=60)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
            assert (refused.value.details() or "").startswith(f"{field}:"), refused.value.details()


async def test_rules_on_content_events_through_the_indexer(
    *,
    nc: NatsClient,
    env: dict[str, str],
    database_url: str,
    nats_server: Any,
    embedder_address: str,
    fp32_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with running_search(env, monkeypatch) as channel:
        stub = search_pb2_grpc.SearchStub(channel)
        await stub.Upsert(
            pb.UpsertRequest(nodes=[_node("events", rules=[_rule("old", "legacy_call(")])]),
            timeout=120,
        )
        text = "legacy_call(1)\nnew_call(2)"
        before = await stub.Check(pb.CheckRequest(text=text))  # compiled and kept
        assert [v.rule_id for v in before.violations] == ["old"]
        async with running_indexer(
            indexer_env(database_url, nats_server.url, embedder_address, fp32_model_dir),
            monkeypatch,
        ):
            await wait_for_streams(nats_server.url)
            event = content_event("events", 2, title="Pattern events", content_type="fix_pattern")
            event.node.rules.items.add(id="new", pattern="new_call(", severity=ERROR)
            await publish(nc, event)

            async def arrived() -> bool:  # written by another writer: the stamp changed
                reply = await stub.Check(pb.CheckRequest(text=text))
                return [(v.rule_id, v.line) for v in reply.violations] == [("new", 2)]

            await wait_for(arrived, timeout_s=120, what="the event's rules")
