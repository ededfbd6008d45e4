"""The admin console in a real browser (Debian's Chromium through playwright) against a real
stack (PostgreSQL, NATS, embedder, search, indexer): sign in, every page, the query lab, the
explorer, the recommendation debugger, the migration check and a heal, a dead letter
replayed; user content rendered as text; CSRF and cookie rules. Screenshots are saved under
``artifacts/console/`` (or ``$SEMANTIC_ARTIFACTS``)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
import requests
from http_kit import AUDIENCE, SECRET, wait_ready

from semantic.common.auth import mint_token
from semantic.tools.devstack.stack import LocalStack

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("SEMANTIC_ARTIFACTS", "artifacts")) / "console"
CONSOLE = "/admin/vector-search"
XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Chromium is not installed (make browser installs it from Debian as root)",
)


@pytest.fixture(scope="module")
def stack(fp32_model_dir: Path) -> Iterator[LocalStack]:
    env = {
        "SEMANTIC_AUTH_MODE": "jwt",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_AUDIENCE": AUDIENCE,
        "SEMANTIC_SEARCH_CHUNK_WINDOW": "64",
    }
    with LocalStack([fp32_model_dir], threads=1, search_env=env, indexer_env={}) as running:
        wait_ready(running.http_url)
        admin = {"Authorization": f"Bearer {_token(['admin'])}"}
        nodes = [
            {
                "id": f"doc-{i}",
                "slug": f"doc-{i}",
                "contentType": ("article", "page", "quiz")[i % 3],
                "title": XSS if i == 0 else f"Document {i} about {topic}",
                "body": f"A longer text about {topic}. " * 20,
                "tags": ["demo"],
                "version": "1",
            }
            for i, topic in enumerate(
                ["refunds", "pasta", "certificates", "gardening", "money", "travel"] * 3
            )
        ]
        response = requests.post(
            f"{running.http_url}/api/semantic/nodes", json={"nodes": nodes}, headers=admin
        )
        assert response.status_code == 200, response.text
        events = [
            {
                "eventId": f"e{i}",
                "userId": "ann",
                "nodeId": node,
                "action": action,
                "occurredAt": f"2026-12-0{i + 1}T10:00:00Z",
            }
            for i, (node, action) in enumerate(
                [
                    ("doc-1", "USER_ACTION_VIEW"),
                    ("doc-7", "USER_ACTION_CONVERT"),
                    ("doc-13", "USER_ACTION_DISMISS"),
                ]
            )
        ]
        tracked = requests.post(
            f"{running.http_url}/api/semantic/track", json={"events": events}, headers=admin
        )
        assert tracked.status_code == 200, tracked.text
        asyncio.run(_publish_poison(running.nats_url))
        _wait_for_dead_letters(running.http_url, admin, 1)
        yield running


async def _publish_poison(url: str) -> None:
    """An event the indexer dead-letters at once (its payload is not JSON)."""
    client = await nats.connect(url)
    try:
        await client.jetstream().publish(
            "semantic.content._.page",
            b'{"not": json <script>alert(2)</script>',
            headers={"Content-Type": "application/json"},
        )
    finally:
        await client.close()


def _wait_for_dead_letters(url: str, headers: dict[str, str], count: int) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while True:
        response = requests.post(
            f"{url}/api/semantic/admin/list-dead-letters", json={}, headers=headers
        )
        assert response.status_code == 200, response.text
        letters = response.json()
        if int(letters.get("total", "0")) >= count or time.monotonic() > deadline:
            return letters  # type: ignore[no-any-return]
        time.sleep(0.1)


def _token(roles: list[str], subject: str = "operator", tenant: str | None = None) -> str:
    return mint_token(SECRET, subject=subject, roles=roles, tenant=tenant, audience=AUDIENCE)


@pytest.fixture(scope="module")
def browser(stack: LocalStack) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(stack: LocalStack, browser: object) -> Iterator[object]:
    context = browser.new_context(base_url=stack.http_url)  # type: ignore[attr-defined]
    tab = context.new_page()
    dialogs: list[str] = []
    tab.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    tab.dialogs = dialogs
    try:
        yield tab
    finally:
        context.close()


def _sign_in(page: object, roles: list[str] | None = None) -> None:
    page.goto(CONSOLE)  # type: ignore[attr-defined]
    assert page.url.endswith(f"{CONSOLE}/login")  # type: ignore[attr-defined]
    page.fill("#token", _token(roles or ["admin"]))  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    page.wait_for_url(f"**{CONSOLE}")  # type: ignore[attr-defined]


def _shot(page: object, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def test_sign_in_keeps_the_token_in_an_httponly_strict_cookie(page: object) -> None:
    _sign_in(page)
    cookies = {c["name"]: c for c in page.context.cookies()}  # type: ignore[attr-defined]
    session = cookies["semantic_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == ""  # type: ignore[attr-defined]
    assert page.locator("h1").inner_text() == "Overview"  # type: ignore[attr-defined]
    _shot(page, "overview")


def test_a_token_without_the_admin_role_is_refused(page: object) -> None:
    page.goto(f"{CONSOLE}/login")  # type: ignore[attr-defined]
    page.fill("#token", _token(["reader"]))  # type: ignore[attr-defined]
    page.click("button[type=submit]")  # type: ignore[attr-defined]
    assert "Not signed in" in page.locator(".error").inner_text()  # type: ignore[attr-defined]
    assert not page.context.cookies()  # type: ignore[attr-defined]


def test_overview_shows_health_counts_and_spaces(page: object) -> None:
    _sign_in(page)
    text = page.locator("main").inner_text()  # type: ignore[attr-defined]
    assert "postgresql" in text
    assert "embedder" in text
    assert page.locator('[data-metric="nodes"]').inner_text() == "18"  # type: ignore[attr-defined]
    assert "all-MiniLM-L6-v2" in text


def test_query_lab_runs_three_modes_with_score_parts_and_escapes_content(page: object) -> None:
    _sign_in(page)
    page.goto(f"{CONSOLE}/query?q=script+alert+refunds&k=5")  # type: ignore[attr-defined]
    for mode in ("dense", "keyword", "hybrid"):
        column = page.locator(f'section[data-mode="{mode}"]')  # type: ignore[attr-defined]
        assert column.locator("article.hit").count() >= 1
    hybrid = page.locator('section[data-mode="hybrid"]').inner_text()  # type: ignore[attr-defined]
    assert "fused" in hybrid
    assert "similarity" in hybrid
    assert page.locator("mark").count() >= 1  # type: ignore[attr-defined]
    assert XSS in page.locator("main").inner_text()  # type: ignore[attr-defined]
    assert page.dialogs == []  # type: ignore[attr-defined]
    _shot(page, "query-lab")


def test_console_posts_need_the_csrf_token_and_our_origin(stack: LocalStack) -> None:
    cookies = {"semantic_session": _token(["admin"])}
    url = f"{stack.http_url}{CONSOLE}/actions/heal"
    forged = requests.post(url, data={"only_missing": "1"}, cookies=cookies, allow_redirects=False)
    assert forged.status_code == 403
    other = requests.post(
        url,
        data={"only_missing": "1"},
        cookies=cookies,
        headers={"Origin": "https://evil.example.com"},
        allow_redirects=False,
    )
    assert other.status_code == 403
    api = requests.post(
        f"{stack.http_url}/api/semantic/admin/heal", json={"dryRun": True}, cookies=cookies
    )
    assert api.status_code == 403  # the cookie alone never changes anything through the API


def test_explorer_projects_points_and_shows_a_node_with_its_neighbours(page: object) -> None:
    _sign_in(page)
    page.goto(f"{CONSOLE}/explorer?sample=100")  # type: ignore[attr-defined]
    dots = page.locator("svg#map circle")  # type: ignore[attr-defined]
    assert _nodes_on_map(page) == 18  # every chunk of every node is a point
    assert page.locator("#legend span").count() == 3  # type: ignore[attr-defined]
    dots.first.dispatch_event("click")  # points of identical texts lie on each other
    panel = page.locator("#node")  # type: ignore[attr-defined]
    panel.locator("ol.neighbours li").first.wait_for()
    assert panel.locator("ol.neighbours li").count() == 10
    assert "Nearest neighbours" in panel.inner_text()
    assert page.dialogs == []  # type: ignore[attr-defined]
    _shot(page, "explorer")
    only_quizzes = f"{CONSOLE}/explorer?type=quiz&sample=100"
    page.goto(only_quizzes)  # type: ignore[attr-defined]
    assert _nodes_on_map(page) == 6


def _nodes_on_map(page: object) -> int:
    ids = page.eval_on_selector_all(  # type: ignore[attr-defined]
        "svg#map circle", "dots => dots.map(d => d.dataset.nodeId)"
    )
    return len(set(ids))


def test_migration_check_runs_then_a_heal_shows_its_progress(page: object) -> None:
    _sign_in(page)
    page.goto(f"{CONSOLE}/migration")  # type: ignore[attr-defined]
    page.click("#run-checks")  # type: ignore[attr-defined]
    checks = page.locator('table[data-table="checks"] tr.check')  # type: ignore[attr-defined]
    checks.first.wait_for()  # the click submits a form: wait for the page it loads
    assert checks.count() >= 5
    failed = page.locator("tr.check.fail")  # type: ignore[attr-defined]
    assert failed.count() == 0, failed.all_inner_texts()
    page.click("#heal")  # type: ignore[attr-defined]
    job = page.locator("#job")  # type: ignore[attr-defined]
    page.locator('#job[data-state="done"]').wait_for(timeout=60_000)  # type: ignore[attr-defined]
    result = job.locator("[data-job-result]").inner_text()
    assert not result.startswith("error"), result
    assert '"durationSeconds"' in result, result
    live = page.locator("#live")  # type: ignore[attr-defined]
    page.locator("#live[data-updated]").wait_for()  # type: ignore[attr-defined]
    assert live.locator("[data-live-missing]").inner_text() == "0"
    _shot(page, "migration")


def test_dead_letters_are_listed_escaped_then_replayed_and_discarded(
    page: object, stack: LocalStack
) -> None:
    _sign_in(page)
    page.goto(f"{CONSOLE}/dead-letters")  # type: ignore[attr-defined]
    rows = page.locator('table[data-table="letters"] tr[data-seq]')  # type: ignore[attr-defined]
    assert rows.count() == 1
    first_seq = rows.first.get_attribute("data-seq")
    assert "decode_error" in rows.first.inner_text()
    assert "<script>alert(2)</script>" in rows.first.inner_text()  # shown, not run
    _shot(page, "dead-letters")
    rows.first.locator("text=Replay").click()
    page.locator('#job[data-state="done"]').wait_for(timeout=60_000)  # type: ignore[attr-defined]
    admin = {"Authorization": f"Bearer {_token(['admin'])}"}
    # Replayed on its subject, the payload fails the same way: a new dead letter.
    deadline = time.monotonic() + 60
    while True:
        letters = _wait_for_dead_letters(stack.http_url, admin, 1).get("letters", [])
        seqs = [str(letter["seq"]) for letter in letters]  # type: ignore[index]
        if seqs and first_seq not in seqs:
            break
        assert time.monotonic() < deadline, seqs
        time.sleep(0.1)
    page.goto(f"{CONSOLE}/dead-letters")  # type: ignore[attr-defined]
    page.click("#discard-all")  # type: ignore[attr-defined]
    page.locator('#job[data-state="done"]').wait_for(timeout=60_000)  # type: ignore[attr-defined]
    page.goto(f"{CONSOLE}/dead-letters")  # type: ignore[attr-defined]
    assert page.locator("tr[data-seq]").count() == 0  # type: ignore[attr-defined]
    assert dialogs_seen(page) == []


def dialogs_seen(page: object) -> list[str]:
    return list(page.dialogs)  # type: ignore[attr-defined]


def test_recommendation_debugger_shows_journey_candidates_and_exclusions(page: object) -> None:
    _sign_in(page)
    page.goto(f"{CONSOLE}/recommend")  # type: ignore[attr-defined]
    page.fill("input[name=userId]", "ann")  # type: ignore[attr-defined]
    page.click("#explain")  # type: ignore[attr-defined]
    journey = page.locator('table[data-table="journey"] tbody tr')  # type: ignore[attr-defined]
    journey.first.wait_for()  # the click submits a form: wait for the page it loads
    assert journey.count() == 3
    assert page.locator('[data-metric="journey-events"]').inner_text() == "3"  # type: ignore[attr-defined]
    exclusions = page.locator('table[data-table="exclusions"]').inner_text()  # type: ignore[attr-defined]
    assert "doc-7" in exclusions
    assert "converted" in exclusions
    assert "doc-13" in exclusions
    assert "dismissed" in exclusions
    kept = page.locator('table[data-table="candidates"] tr.kept')  # type: ignore[attr-defined]
    assert kept.count() == 10
    assert "doc-7" not in [kept.nth(i).get_attribute("data-node") for i in range(kept.count())]
    _shot(page, "recommendations")


def test_a_long_unbroken_title_wraps_inside_its_column(stack: LocalStack, page: object) -> None:
    admin = {"Authorization": f"Bearer {_token(['admin'])}"}
    wide = {
        "id": "wide",
        "tenant": "wide",
        "contentType": "page",
        "title": "w" * 900,  # within the 1,000-character limit, no place to break
        "body": "a page about refunds",
        "version": "1",
    }
    written = requests.post(
        f"{stack.http_url}/api/semantic/nodes", json={"nodes": [wide]}, headers=admin
    )
    assert written.status_code == 200, written.text
    _sign_in(page)
    page.goto(f"{CONSOLE}/query?q=refunds&tenant=wide")  # type: ignore[attr-defined]
    for mode in ("dense", "keyword", "hybrid"):
        column = page.locator(f'section[data-mode="{mode}"]')  # type: ignore[attr-defined]
        title = column.locator("a.title").first
        outer, inner = column.bounding_box(), title.bounding_box()
        assert inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 1, mode
        assert "tenant=wide" in title.get_attribute("href")
    _shot(page, "query-lab-long-title")
