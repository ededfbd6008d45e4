"""The HTTP API and the console with authentication off (development), against a real search
service: what a page of another site can and cannot make a browser do, any node id over
HTTP, HEAD, and the console's handling of odd input (Unicode digits, long and
bidirectional titles, content types, highlighted spans, the tenant in its links)."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
import requests
from http_kit import HttpSearch, start_http_search

from semantic.tools.devstack.postgres import EmbeddedPostgres

API = "/api/semantic"
CONSOLE = "/admin/vector-search"
TRUSTED = "https://app.example.com"
ODD_IDS = ("docs/guide/intro.md", "..", ".", "a?b#c%d", "trailing/")
BODY = " ".join(f"w{i:04d}" for i in range(400))


@pytest.fixture(scope="module")
def dev(
    pg_server: EmbeddedPostgres,
    embedder_address: str,
    fp32_model_dir: Path,
    service_starter: Callable[[str, dict[str, str]], Any],
) -> Iterator[HttpSearch]:
    service = start_http_search(
        pg_server,
        embedder_address,
        fp32_model_dir,
        service_starter,
        SEMANTIC_AUTH_MODE="disabled",
        SEMANTIC_HTTP_CORS_ORIGINS=TRUSTED,
        SEMANTIC_HTTP_ALLOWED_HOSTS="search.internal",
    )
    running = next(service)
    try:
        _load(running)
        yield running
    finally:
        service.close()


def _load(running: HttpSearch) -> None:
    nodes = [
        {"id": node_id, "title": f"Odd {i}", "body": f"odd identifier {i}", "version": "1"}
        for i, node_id in enumerate(ODD_IDS)
    ]
    nodes += [
        {"id": "long", "title": "Numbers", "body": BODY, "contentType": "page", "version": "1"},
        {
            "id": "quiz",
            "title": "Quiz",
            "body": "w0310 w0311",
            "contentType": "quiz",
            "version": "1",
        },
        {"id": "spoof", "title": "\u202egnp.exe", "body": "spoofed name", "version": "1"},
        {"id": "wide", "title": "x" * 900, "body": "one very long word", "version": "1"},
        {"id": "acme-1", "tenant": "acme", "title": "Acme", "body": "acme refund", "version": "1"},
    ]
    for node in nodes:
        node.setdefault("contentType", "page")
    written = requests.post(f"{running.url}{API}/nodes", json={"nodes": nodes}, timeout=60)
    assert written.status_code == 200, written.text


def test_a_page_of_another_site_cannot_change_anything(dev: HttpSearch) -> None:
    heal = f"{dev.url}{API}/admin/heal"
    for headers in (
        {"Origin": "https://evil.example.com"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "http://localhost:1"},  # another port is another origin
    ):
        refused = requests.post(heal, headers=headers, timeout=30)  # an empty form post
        assert refused.status_code == 403, (headers, refused.text)
        assert refused.json()["code"] == "PERMISSION_DENIED"
    rollback = requests.post(
        f"{dev.url}{API}/admin/rollback", headers={"Origin": "https://evil.example.com"}
    )
    assert rollback.status_code == 403
    # Not from a browser page (no Origin), from our own pages, or from a CORS origin: fine.
    for headers in (
        {},
        {"Origin": dev.url, "Sec-Fetch-Site": "same-origin"},
        {"Origin": TRUSTED, "Sec-Fetch-Site": "cross-site"},
    ):
        answered = requests.post(heal, json={"dryRun": True}, headers=headers, timeout=60)
        assert answered.status_code == 200, (headers, answered.text)
    # Reading is not changing: a cross-site GET is answered (the browser hides the answer).
    assert requests.get(f"{dev.url}{API}/stats", headers={"Sec-Fetch-Site": "cross-site"}).ok


def test_only_hosts_no_other_site_can_point_here_without_authentication(dev: HttpSearch) -> None:
    port = urlsplit(dev.url).port
    for host in ("evil.example.com", f"evil.example.com:{port}", "127.0.0.1.nip.io"):
        for path in (f"{API}/stats", f"{CONSOLE}/query"):
            refused = requests.get(
                f"{dev.url}{path}", headers={"Host": host}, allow_redirects=False, timeout=30
            )
            # a problem, or the console's way to the sign-in page: never the data
            assert refused.status_code in (403, 303), (host, path, refused.status_code)
            if path.startswith(API):
                assert "SEMANTIC_HTTP_ALLOWED_HOSTS" in refused.json()["detail"]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "search.internal"):
        answered = requests.get(f"{dev.url}{API}/stats", headers={"Host": host}, timeout=30)
        assert answered.status_code == 200, (host, answered.text)
    # With authentication off any credential passes unchecked, so it vouches for nothing:
    # a rebound name with a made-up token or session cookie is refused all the same.
    for credentials in (
        {"Authorization": "Bearer anything"},
        {"Cookie": "semantic_session=anything"},
    ):
        headers = {"Host": f"evil.example.com:{port}", **credentials}
        read = requests.get(f"{dev.url}{API}/stats", headers=headers, timeout=30)
        assert read.status_code == 403, (credentials, read.status_code)
        node = {"id": "rebound", "title": "t", "body": "b", "contentType": "page"}
        write = requests.post(
            f"{dev.url}{API}/nodes", json={"nodes": [node]}, headers=headers, timeout=30
        )
        assert write.status_code == 403, (credentials, write.status_code)
        page = requests.get(
            f"{dev.url}{CONSOLE}/query", headers=headers, allow_redirects=False, timeout=30
        )
        assert page.status_code in (403, 303), (credentials, page.status_code)
    missing = requests.get(f"{dev.url}{API}/nodes", params={"id": "rebound"}, timeout=30)
    assert missing.json().get("nodes", []) == [], missing.text


@pytest.mark.parametrize("node_id", ODD_IDS)
def test_any_node_id_is_read_over_http(dev: HttpSearch, node_id: str) -> None:
    by_query = requests.get(f"{dev.url}{API}/nodes", params={"id": node_id}, timeout=30)
    assert by_query.status_code == 200, by_query.text
    assert [n["id"] for n in by_query.json()["nodes"]] == [node_id]
    if node_id not in (".", ".."):  # a path segment the URL rules remove: the query form
        by_path = requests.get(f"{dev.url}{API}/nodes/{quote(node_id, safe='')}", timeout=30)
        assert by_path.status_code == 200, by_path.text
        assert by_path.json()["id"] == node_id


def test_nodes_with_a_slash_or_dots_are_deleted_over_http(dev: HttpSearch) -> None:
    ids = ["del/one", "..."]
    nodes = [
        {"id": i, "title": i, "body": "gone", "contentType": "page", "version": "1"} for i in ids
    ]
    assert requests.post(f"{dev.url}{API}/nodes", json={"nodes": nodes}, timeout=60).ok
    by_path = requests.delete(f"{dev.url}{API}/nodes/del/one", timeout=30)
    assert by_path.json()["results"][0]["outcome"] == "DELETE_OUTCOME_DELETED", by_path.text
    by_query = requests.delete(f"{dev.url}{API}/nodes", params={"id": "..."}, timeout=30)
    assert by_query.json()["results"][0]["outcome"] == "DELETE_OUTCOME_DELETED", by_query.text
    left = requests.get(f"{dev.url}{API}/nodes", params={"id": ids}, timeout=30).json()
    assert left.get("nodes", []) == []
    bad = requests.get(f"{dev.url}{API}/nodes", params={"id": "x\x01"}, timeout=30)
    assert bad.status_code == 400, bad.text
    assert bad.json()["field"].startswith("id"), bad.text


def test_head_answers_as_get_without_a_body(dev: HttpSearch) -> None:
    for path in ("/healthz", "/readyz", f"{API}/stats", f"{CONSOLE}/query"):
        got = requests.get(f"{dev.url}{path}", timeout=30)
        head = requests.head(f"{dev.url}{path}", timeout=30)
        assert head.status_code == got.status_code == 200, path
        assert head.content == b""
        assert head.headers["content-type"] == got.headers["content-type"]
    refused = requests.put(f"{dev.url}{API}/stats", timeout=30)
    assert refused.status_code == 405
    assert {m.strip() for m in refused.headers["allow"].split(",")} == {"GET", "HEAD"}


@pytest.mark.parametrize(
    "path",
    [
        f"{CONSOLE}/query?q=refund&k=%C2%B2",
        f"{CONSOLE}/explorer?sample=%C2%B2",
        f"{CONSOLE}/explorer?seed=%C2%B9",
        f"{CONSOLE}/recommend?userId=u1&k=%C2%B3",
    ],
)
def test_unicode_digits_are_a_client_mistake_on_console_pages(dev: HttpSearch, path: str) -> None:
    page = requests.get(f"{dev.url}{path}", timeout=60)
    assert page.status_code == 200, page.text  # the page shows the mistake
    assert "must be a whole number" in page.text


def test_console_forms_refuse_unicode_digits_and_oversized_bodies(dev: HttpSearch) -> None:
    page = requests.get(f"{dev.url}{CONSOLE}/dead-letters", timeout=60)
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
    assert csrf is not None
    url = f"{dev.url}{CONSOLE}/actions/replay"
    digits = requests.post(url, data={"csrf": csrf.group(1), "seq": "\u00b2"}, timeout=30)
    assert digits.status_code == 400, digits.text
    assert digits.json()["field"] == "seq"
    assert digits.json()["instance"] == f"{CONSOLE}/actions/replay"
    huge = requests.post(url, data={"csrf": csrf.group(1), "seq": "1" * 70_000}, timeout=30)
    assert huge.status_code == 413, huge.text


def test_query_lab_keeps_content_types_the_tenant_and_the_span(dev: HttpSearch) -> None:
    lab = requests.get(
        f"{dev.url}{CONSOLE}/query", params={"q": "w0310 w0311", "type": "page,quiz"}, timeout=60
    )
    assert lab.status_code == 200, lab.text
    assert "must match" not in lab.text
    assert 'name="type" value="page,quiz"' in lab.text
    again = requests.get(
        f"{dev.url}{CONSOLE}/query", params={"q": "w0310 w0311", "type": ["page,quiz"]}
    )
    assert "must match" not in again.text
    # The highlighted text is the chunk the API reports (its span is in title + body).
    api = requests.post(
        f"{dev.url}{API}/search",
        json={"text": "w0310 w0311", "mode": "SEARCH_MODE_DENSE"},
        timeout=60,
    ).json()
    chunk = next(h["chunk"]["text"] for h in api["hits"] if h["node"]["id"] == "long")
    dense = lab.text.split('data-mode="dense"')[1].split('data-mode="keyword"')[0]
    marks = [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", dense, re.S)]
    assert chunk in marks, (chunk[:60], [m[:60] for m in marks])
    acme = requests.get(
        f"{dev.url}{CONSOLE}/query", params={"q": "refund policy", "tenant": "acme"}, timeout=60
    )
    assert "explorer?focus=acme-1&amp;tenant=acme" in acme.text
    # The navigation keeps it too, on the pages that take a tenant.
    assert 'href="/admin/vector-search/recommend?tenant=acme"' in acme.text
    assert 'href="/admin/vector-search/migration"' in acme.text


def test_console_shows_bidi_overrides_and_serves_static_files_unsniffed(dev: HttpSearch) -> None:
    lab = requests.get(f"{dev.url}{CONSOLE}/query", params={"q": "spoofed name"}, timeout=60)
    assert "[U+202E]gnp.exe" in lab.text
    assert "\u202e" not in lab.text
    # A form field keeps what was typed: sent again, it asks the same (not "[U+202E]...").
    typed = requests.get(f"{dev.url}{CONSOLE}/query", params={"q": "\u202egnp"}, timeout=60)
    assert 'value="\u202egnp"' in typed.text
    asked = requests.get(f"{dev.url}{CONSOLE}/recommend", params={"userId": "\u202eu"}, timeout=60)
    assert 'value="\u202eu"' in asked.text
    for name in ("console.js", "console.css"):
        static = requests.get(f"{dev.url}{CONSOLE}/static/{name}", timeout=30)
        assert static.status_code == 200
        assert static.headers["x-content-type-options"] == "nosniff"


def test_a_query_parameter_no_route_takes_is_refused_naming_it(dev: HttpSearch) -> None:
    typo = requests.get(f"{dev.url}{API}/vector-search", params={"q": "refund", "topK": 2})
    assert typo.status_code == 400, typo.text
    assert typo.json()["field"] == "topK"
    assert "k" in typo.json()["detail"]  # says what the route takes
    posted = requests.post(f"{dev.url}{API}/search", params={"debug": 1}, json={"text": "x"})
    assert posted.status_code == 400
    assert posted.json()["field"] == "debug"
    fine = requests.get(f"{dev.url}{API}/vector-search", params={"q": "refund", "k": 2})
    assert fine.status_code == 200, fine.text
    assert len(fine.json()["hits"]) == 2
    # A single-valued parameter given twice: which one counts would be the framework's.
    twice = requests.get(f"{dev.url}{API}/vector-search?q=refund&k=1&k=3", timeout=30)
    assert twice.status_code == 400, twice.text
    assert twice.json()["field"] == "k"
    repeatable = f"{dev.url}{API}/vector-search?q=refund&type=page&type=quiz&tags_any=a&tags_any=b"
    assert requests.get(repeatable, timeout=30).status_code == 200


def test_percent_escapes_that_are_not_utf8_are_refused_naming_where(dev: HttpSearch) -> None:
    """Read with U+FFFD in their place they would name another node: "%FF" is not "\ufffd"."""
    for url, field in (
        (f"{dev.url}{API}/nodes/%FF", "path"),
        (f"{dev.url}{API}/nodes?id=%E9", "id"),
        (f"{dev.url}{API}/vector-search?q=%FF%FE", "q"),
    ):
        refused = requests.get(url, timeout=30)
        assert refused.status_code == 400, (url, refused.text)
        assert refused.json()["field"] == field
    deleted = requests.delete(f"{dev.url}{API}/nodes?id=%C0", timeout=30)
    assert deleted.status_code == 400, deleted.text
    # A condition sent as a body would be ignored (an unconditional delete): refused.
    conditional = requests.delete(f"{dev.url}{API}/nodes?id=x", json={"version": "9"}, timeout=30)
    assert conditional.status_code == 400, conditional.text
    assert conditional.json()["field"] == "body"
    fine = requests.get(f"{dev.url}{API}/nodes?id=%C3%A9", timeout=30)  # "é" in UTF-8
    assert fine.status_code == 200, fine.text
