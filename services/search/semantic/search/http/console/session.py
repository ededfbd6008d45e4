"""The console's sign-in: a pasted token kept in an HttpOnly, SameSite=Strict cookie, and the
CSRF token every console form and script sends back.

With authentication on, the session cookie holds the token itself (the server keeps no
session state, so any replica serves any page) and the CSRF token is derived from it
(``security.csrf_token``). With authentication off (development) there is no session; forms
still carry a CSRF token, derived from a key made when the process started, so a page of
another site cannot make a browser on the developer's machine heal or replay anything.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import jwt
from starlette.requests import Request
from starlette.responses import Response

from semantic.common.auth import Principal, Role
from semantic.common.errors import PermissionDenied, SemanticError
from semantic.search.http.gateway import Gateway, HttpProblem
from semantic.search.http.problems import TOO_LARGE, Problem
from semantic.search.http.security import CSRF_FIELD, CSRF_HEADER, SESSION_COOKIE, csrf_token

CONSOLE_METHOD = "/semantic.v1.Admin/HealthReport"
"""The method a console visitor must be allowed to call: its role is the console's (admin)."""
MAX_FORM_BYTES = 64 * 1024
_DEV_KEY = secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Visitor:
    """A signed-in console user (or the development principal when auth is off)."""

    principal: Principal
    session: str | None
    csrf: str

    @property
    def auth_off(self) -> bool:
        """Whether authentication is disabled (no session at all)."""
        return self.session is None


def visitor(gateway: Gateway, request: Request) -> Visitor | None:
    """The signed-in admin of ``request``; None when the visitor must sign in."""
    session = request.cookies.get(SESSION_COOKIE)
    try:
        caller = gateway.auth.authorize(
            CONSOLE_METHOD,
            {},  # the console reads only its cookie
            request.cookies,
            http_method="GET",
            origin_host=request.headers.get("host", ""),
        )
    except SemanticError:
        return None
    if not caller.principal.has_role(Role.ADMIN):
        return None
    if caller.session is None and session is None:
        return Visitor(caller.principal, None, _dev_csrf())
    return Visitor(caller.principal, caller.session, csrf_token(caller.session or ""))


def _dev_csrf() -> str:
    return csrf_token(_DEV_KEY)


async def form(request: Request) -> dict[str, str]:
    """The first value of every field of an urlencoded form body (bounded)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            detail = f"the form exceeds {MAX_FORM_BYTES} bytes"
            raise HttpProblem(Problem(TOO_LARGE, detail, request.url.path))
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


def check_post(request: Request, who: Visitor, fields: dict[str, str]) -> None:
    """PermissionDenied unless a console POST comes from our page (Origin) with the CSRF token."""
    same_origin(request)
    given = fields.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not hmac.compare_digest(given.encode(), who.csrf.encode()):
        raise PermissionDenied("missing or wrong CSRF token; reload the page")


def same_origin(request: Request) -> None:
    """PermissionDenied when the request names another origin (or an opaque one)."""
    origin = request.headers.get("origin")
    if origin is None:
        return
    if origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise PermissionDenied(f"cross-origin request from {origin!r} refused")


def sign_in(response: Response, request: Request, token: str) -> None:
    """Keep ``token`` in the session cookie until it expires."""
    max_age = 12 * 3600
    try:
        exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        if isinstance(exp, int | float):
            max_age = max(0, int(exp - time.time()))
    except jwt.PyJWTError:
        pass
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def sign_out(response: Response, request: Request) -> None:
    """Forget the session cookie."""
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
