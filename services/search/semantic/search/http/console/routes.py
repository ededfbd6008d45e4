"""The pages of ``/admin/vector-search``: overview, explorer, query lab, recommendation
debugger, migration checker and dead letters, server-rendered from the servicers' answers.

Every page needs the admin role (a signed-in session, or authentication off in
development); a visitor without one is sent to the sign-in page. Pages are plain HTML with
one small script of ours (``static/console.js``) and no inline script, so the
Content-Security-Policy allows only this server's own files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
import markupsafe
from fastapi import APIRouter
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from semantic.common.auth import acting_as
from semantic.common.errors import InvalidArgument, NotFound, SemanticError
from semantic.search.http.console import session
from semantic.search.http.console.jobs import Jobs
from semantic.search.http.console.session import Visitor
from semantic.search.http.console.views import (
    STATUS_NAMES,
    Trend,
    alerts,
    lab_rows,
    megabytes,
    number,
    visible_controls,
)
from semantic.search.http.gateway import Gateway, problem_response
from semantic.search.http.problems import problem_for
from semantic.search.http.security import CSRF_FIELD
from semantic.v1 import search_pb2 as pb
from semantic.wire import protojson

BASE = "/admin/vector-search"
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
    "Cache-Control": "no-store",
}
CONSISTENCY_TTL_S = 30.0
"""How long the overview reuses a consistency check (its vector checks read every node)."""
PAGES = (
    ("overview", "Overview", ""),
    ("explorer", "Explorer", "/explorer"),
    ("query", "Query lab", "/query"),
    ("recommend", "Recommendations", "/recommend"),
    ("migration", "Migration check", "/migration"),
    ("dead-letters", "Dead letters", "/dead-letters"),
)


class _Context:
    """The gRPC context a servicer sees for a console call."""

    def __init__(self, who: Visitor) -> None:
        self._who = who

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._who.session}"),) if self._who.session else ()


class Console:
    """The console's pages over one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.jobs = Jobs()
        self.trend = Trend()
        self._consistency: tuple[float, dict[str, Any]] | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            finalize=visible_controls,
        )
        # A form field's value is written exactly (escaped, not shown as [U+202E]): what
        # the visitor typed must come back unchanged when the form is sent again.
        self.templates.filters["exact"] = markupsafe.escape
        self.templates.filters["size"] = megabytes
        self.templates.filters["number"] = number
        self.templates.globals.update(
            base=BASE, pages=PAGES, status_names=STATUS_NAMES, space_state=space_state
        )

    async def call(self, who: Visitor, service: str, rpc: str, message: Message) -> Any:
        """The servicer's answer to ``message``, as the visitor."""
        servicer: Any = self.gateway.search if service == "Search" else self.gateway.admin
        with acting_as(who.principal):
            return await getattr(servicer, rpc)(message, _Context(who))

    async def attempt(
        self, who: Visitor, service: str, rpc: str, message: Message, errors: dict[str, str]
    ) -> Any:
        """Like :meth:`call`; a failure is recorded in ``errors`` (shown on the page)."""
        try:
            return await self.call(who, service, rpc, message)
        except SemanticError as exc:
            errors[rpc] = str(exc)
        except Exception as exc:
            errors[rpc] = problem_for(exc, BASE).detail
        return None

    async def consistency(
        self, who: Visitor, errors: dict[str, str], *, fresh: bool = False
    ) -> dict[str, Any] | None:
        """The last CheckConsistency answer, refreshed when older than CONSISTENCY_TTL_S or
        ``fresh`` (the overview shows its failed checks; the migration page runs it anew)."""
        now = time.monotonic()
        stale = self._consistency is None or now - self._consistency[0] > CONSISTENCY_TTL_S
        if fresh or stale:
            found = await self.attempt(
                who, "Admin", "CheckConsistency", pb.CheckConsistencyRequest(), errors
            )
            if found is None:
                return None
            self._consistency = (now, protojson.to_dict(found))
        assert self._consistency is not None
        return self._consistency[1]

    def page(self, name: str, who: Visitor, started: float, **values: Any) -> HTMLResponse:
        """A rendered page with the server time it took (``Server-Timing``)."""
        body = self.templates.get_template(f"{name}.html").render(
            who=who, csrf_field=CSRF_FIELD, current=name, **values
        )
        took = (time.perf_counter() - started) * 1000
        headers = {**SECURITY_HEADERS, "Server-Timing": f"app;dur={took:.1f}"}
        return HTMLResponse(body, headers=headers)

    def login_page(self, request: Request, message: str = "", status: int = 200) -> HTMLResponse:
        """The sign-in form."""
        body = self.templates.get_template("login.html").render(message=message)
        return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


Handler = Callable[[Request, Visitor, float], Awaitable[Response]]


def console_router(gateway: Gateway) -> tuple[APIRouter, Console]:
    """The console's routes (and the console, whose jobs the app closes at shutdown)."""
    console = Console(gateway)
    router = APIRouter(prefix=BASE, include_in_schema=False)

    def signed_in(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            who = session.visitor(gateway, request)
            if who is None:
                return RedirectResponse(f"{BASE}/login", status_code=303)
            return await handler(request, who, started)

        endpoint.__name__ = handler.__name__
        return endpoint

    @router.get("/login")
    async def login_form(request: Request) -> Response:
        return console.login_page(request)

    @router.post("/login")
    async def login(request: Request) -> Response:
        try:
            session.same_origin(request)
            fields = await session.form(request)
        except SemanticError as exc:
            return console.login_page(request, str(exc), 403)
        token = fields.get("token", "").strip()
        if token.lower().startswith("bearer "):
            token = token[7:].strip()
        try:
            caller = gateway.auth.authorize(
                session.CONSOLE_METHOD,
                {"authorization": f"Bearer {token}"},
                {},
                http_method="GET",
                origin_host=request.headers.get("host", ""),
            )
        except SemanticError as exc:
            return console.login_page(request, f"Not signed in: {exc}", 401)
        response = RedirectResponse(BASE, status_code=303)
        if caller.authorization is not None and token:
            session.sign_in(response, request, token)
        return response

    @router.post("/logout")
    @signed_in
    async def logout(request: Request, who: Visitor, started: float) -> Response:
        try:
            session.check_post(request, who, await session.form(request))
        except SemanticError as exc:
            return problem_response(problem_for(exc, request.url.path))
        response = RedirectResponse(f"{BASE}/login", status_code=303)
        session.sign_out(response, request)
        return response

    @router.get("")
    @signed_in
    async def overview(request: Request, who: Visitor, started: float) -> Response:
        errors: dict[str, str] = {}
        every = who.principal.tenant is None
        report, stats, checked = await asyncio.gather(  # independent: side by side
            console.attempt(who, "Admin", "HealthReport", pb.HealthReportRequest(), errors),
            console.attempt(who, "Search", "Stats", pb.StatsRequest(all_tenants=every), errors),
            console.consistency(who, errors) if every else _nothing(),
        )
        found = alerts(report, stats, console.trend, errors=errors, consistency=checked)
        return console.page(
            "overview",
            who,
            started,
            report=report,
            stats=stats,
            alerts=found,
            jobs=console.jobs.recent()[:5],
        )

    @router.get("/query")
    @signed_in
    async def query(request: Request, who: Visitor, started: float) -> Response:
        params = request.query_params
        q = params.get("q", "")
        tenant = params.get("tenant", "")
        k = params.get("k", "10")
        types = _types(params.getlist("type"))
        results: dict[str, Any] = {}
        errors: dict[str, str] = {}
        if q:
            for name, mode in (
                ("dense", pb.SEARCH_MODE_DENSE),
                ("keyword", pb.SEARCH_MODE_KEYWORD),
                ("hybrid", pb.SEARCH_MODE_HYBRID),
            ):
                try:
                    message = pb.SearchRequest(
                        text=q, tenant=tenant, mode=mode, top_k=_int(k, "k"), include_body=True
                    )
                    message.filter.content_types.extend(types)
                    response = await console.call(who, "Search", "Search", message)
                    results[name] = lab_rows(response)
                except SemanticError as exc:
                    errors[name] = str(exc)
        return console.page(
            "query",
            who,
            started,
            q=q,
            tenant=tenant,
            k=k,
            types=",".join(types),
            results=results,
            errors=errors,
        )

    @router.get("/explorer")
    @signed_in
    async def explorer(request: Request, who: Visitor, started: float) -> Response:
        params = request.query_params
        tenant = params.get("tenant", "")
        types = _types(params.getlist("type"))
        vector_name = params.get("vector_name", "")
        sample, seed = params.get("sample", "500"), params.get("seed", "1")
        errors: dict[str, str] = {}
        explore: dict[str, Any] = {}
        try:
            message = pb.ExploreRequest(
                tenant=tenant,
                content_types=types,
                vector_name=vector_name,
                sample=_int(sample, "sample"),
                seed=_int(seed, "seed"),
            )
            explore = protojson.to_dict(await console.call(who, "Admin", "Explore", message))
        except SemanticError as exc:
            errors["Explore"] = str(exc)
        payload = {"tenant": tenant, "points": explore.get("points", [])}
        return console.page(
            "explorer",
            who,
            started,
            tenant=tenant,
            types=",".join(types),
            vector_name=vector_name,
            sample=sample,
            seed=seed,
            explore=explore,
            payload=payload,
            errors=errors,
        )

    @router.get("/recommend")
    @signed_in
    async def recommend(request: Request, who: Visitor, started: float) -> Response:
        params = request.query_params
        user_id, tenant = params.get("userId", ""), params.get("tenant", "")
        k, archetype = params.get("k", "10"), params.get("archetype", "")
        errors: dict[str, str] = {}
        debug: dict[str, Any] = {}
        if user_id or params.get("run"):
            try:
                message = pb.ExplainRecommendationRequest(
                    request=pb.RecommendRequest(
                        user_id=user_id, tenant=tenant, top_k=_int(k, "k"), archetype=archetype
                    ),
                    max_candidates=100,
                )
                found = await console.call(who, "Admin", "ExplainRecommendation", message)
                debug = protojson.to_dict(found)
            except SemanticError as exc:
                errors["ExplainRecommendation"] = str(exc)
        return console.page(
            "recommend",
            who,
            started,
            user_id=user_id,
            tenant=tenant,
            k=k,
            archetype=archetype,
            debug=debug,
            errors=errors,
        )

    @router.get("/migration")
    @signed_in
    async def migration(request: Request, who: Visitor, started: float) -> Response:
        errors: dict[str, str] = {}
        check: dict[str, Any] = {}
        if request.query_params.get("run"):
            check = await console.consistency(who, errors, fresh=True) or {}
        return console.page("migration", who, started, check=check, errors=errors)

    @router.get("/dead-letters")
    @signed_in
    async def dead_letters(request: Request, who: Visitor, started: float) -> Response:
        reason = request.query_params.get("reason", "")
        errors: dict[str, str] = {}
        found = await console.attempt(
            who, "Admin", "ListDeadLetters", pb.ListDeadLettersRequest(reason=reason), errors
        )
        letters = protojson.to_dict(found) if found is not None else None
        return console.page(
            "dead_letters", who, started, letters=letters, reason=reason, errors=errors
        )

    @router.get("/jobs/{job_id}")
    @signed_in
    async def job(request: Request, who: Visitor, started: float) -> Response:
        found = console.jobs.get(request.path_params["job_id"])
        if found is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(found.view(), headers={"Cache-Control": "no-store"})

    @router.post("/actions/{action}")
    @signed_in
    async def action(request: Request, who: Visitor, started: float) -> Response:
        try:
            fields = await session.form(request)
            session.check_post(request, who, fields)
            message, service, rpc = _action(request.path_params["action"], fields)
            job = console.jobs.start(
                request.path_params["action"],
                lambda: console.call(who, service, rpc, message),
            )
        except SemanticError as exc:
            return problem_response(problem_for(exc, request.url.path))
        back = fields.get("back") or f"{BASE}/migration"
        if not back.startswith(BASE):
            back = BASE
        separator = "&" if "?" in back else "?"
        return RedirectResponse(f"{back}{separator}job={job.id}", status_code=303)

    return router, console


class _StaticFiles(StaticFiles):
    """Static files that a browser never sniffs into another type."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


def static_files() -> tuple[str, StaticFiles]:
    """The console's stylesheet and script, served by the service itself (no CDN)."""
    return f"{BASE}/static", _StaticFiles(directory=HERE / "static")


def _action(name: str, fields: dict[str, str]) -> tuple[Message, str, str]:
    """The servicer call of a console action button."""
    if name == "heal":
        return (
            pb.HealRequest(
                space_id=fields.get("space_id", ""),
                only_missing=fields.get("only_missing") == "1",
                content_type=fields.get("content_type", ""),
            ),
            "Admin",
            "Heal",
        )
    if name == "reindex":
        model = fields.get("model_id", "")
        if not model:
            raise InvalidArgument("model_id", "name the model to reindex with")
        return pb.ReindexRequest(model_id=model), "Admin", "Reindex"
    if name == "rollback":
        return pb.RollbackRequest(), "Admin", "Rollback"
    if name in ("replay", "discard"):
        rpc = "ReplayDeadLetters" if name == "replay" else "DiscardDeadLetters"
        request = (
            pb.ReplayDeadLettersRequest() if name == "replay" else pb.DiscardDeadLettersRequest()
        )
        if fields.get("all") == "1":
            request.all = True
        else:
            request.seqs.append(_int(fields.get("seq", ""), "seq"))
        if fields.get("reason") and hasattr(request, "reason"):
            request.reason = fields["reason"]
        return request, "Admin", rpc
    if name == "activate":
        return (
            pb.ActivateSpaceRequest(space_id=fields.get("space_id", "")),
            "Admin",
            "ActivateSpace",
        )
    raise NotFound("console action", name)


async def _nothing() -> None:
    return None


def space_state(value: int) -> str:
    """``SPACE_STATE_ACTIVE`` -> ``active``."""
    try:
        return pb.SpaceState.Name(value).removeprefix("SPACE_STATE_").lower()  # type: ignore[arg-type]
    except ValueError:
        return str(value)


def _types(values: list[str]) -> list[str]:
    """Content types from ``type`` parameters, each repeatable and comma-separated (the
    pages write them back into one field as ``a,b``)."""
    return [t.strip() for value in values for t in value.split(",") if t.strip()]


def _int(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise InvalidArgument(name, f"must be a whole number, got {text!r}")
    return int(text)
