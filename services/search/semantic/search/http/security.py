"""Who calls over HTTP: the same tokens, roles and tenant rules as gRPC.

A request is authorized for the gRPC method it stands for (``/semantic.v1.Search/Search``
for ``GET /api/semantic/vector-search``), by the search service's own AuthInterceptor, so
one table (``semantic.common.auth.METHOD_ROLES``) governs both transports.

The token comes from ``Authorization: Bearer <JWT>``, or from the console's session cookie.
A cookie is sent by the browser on its own, so a request authenticated by the cookie must
also prove it comes from a page of ours when it changes anything (CSRF): it carries the
session's CSRF token (header ``X-CSRF-Token`` or form field ``csrf``), and its ``Origin``,
when present, is this server's. The CSRF token is derived from the session token
(HMAC-SHA256 keyed by the token), so every replica checks it without shared state, and only
a holder of the session token can compute it.

With authentication off (development) a request carries no credential at all, so anything a
browser can send, any page can make it send. Such a request that changes anything must come
from no browser page or from one of ours: an ``Origin`` other than this server's (unless
``SEMANTIC_HTTP_CORS_ORIGINS`` lists it), an opaque one, or ``Sec-Fetch-Site: cross-site``
/ ``same-site`` is refused. Every request without credentials must also name a host that no
other site can point at this server (DNS rebinding): ``localhost``, an IP address, or one
listed in ``SEMANTIC_HTTP_ALLOWED_HOSTS``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from semantic.common.auth import DEVELOPMENT_PRINCIPAL, AuthInterceptor, Principal, acting_as
from semantic.common.errors import PermissionDenied, Unauthenticated

SESSION_COOKIE = "semantic_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: HMAC-SHA256 keyed by the session token."""
    digest = hmac.new(session_token.encode(), b"semantic-console-csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class Caller:
    """The verified principal of one request and the token it came with."""

    principal: Principal
    authorization: str | None
    """``Bearer <token>`` as received (passed on to the embedder by Reindex); None without."""
    session: str | None = None
    """The session token when the cookie authenticated the request."""

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The caller's credentials as gRPC metadata."""
        return (("authorization", self.authorization),) if self.authorization else ()


class HttpAuth:
    """Authenticates requests with the gRPC server's interceptor and checks CSRF."""

    def __init__(
        self,
        interceptor: AuthInterceptor | None,
        *,
        trusted_origins: Iterable[str] = (),
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        """``interceptor``: the gRPC server's; None refuses every call (a describing-only app).
        ``trusted_origins``: the CORS origins, whose pages may change things without
        credentials when authentication is off; ``allowed_hosts``: host names (without port)
        such a request may name beside ``localhost`` and IP addresses."""
        self._interceptor = interceptor
        self._trusted = frozenset(o.rstrip("/") for o in trusted_origins)
        self._hosts = frozenset(h.lower() for h in allowed_hosts)

    def authorize(
        self,
        method: str,
        headers: Mapping[str, str],
        cookies: Mapping[str, str],
        *,
        http_method: str,
        origin_host: str,
        form_csrf: str | None = None,
    ) -> Caller:
        """The caller allowed to run gRPC ``method``; Unauthenticated or PermissionDenied.
        Two ``Authorization`` headers are refused, as two metadata entries are over gRPC
        (which one counts would depend on the proxy in between)."""
        every = getattr(headers, "getlist", None)  # Starlette's headers keep repeats
        if every is not None and len(every("authorization")) > 1:
            raise Unauthenticated("more than one 'Authorization' header")
        authorization = headers.get("authorization")
        session = None
        if not authorization and cookies.get(SESSION_COOKIE):
            session = cookies[SESSION_COOKIE]
            authorization = f"Bearer {session}"
            if http_method not in SAFE_METHODS:
                check_csrf(session, headers, form_csrf, origin_host)
        metadata = (("authorization", authorization),) if authorization else ()
        if self._interceptor is None:
            raise Unauthenticated("this app only describes the API")
        principal = self._interceptor.authorize(method, metadata)
        # Without credentials, or with authentication off (any credential then passes
        # unchecked, so it proves nothing), nothing but the browser's context vouches for
        # the request.
        if not authorization or principal is DEVELOPMENT_PRINCIPAL:
            self._check_ambient(headers, http_method, origin_host)
        return Caller(principal, authorization, session)

    def _check_ambient(self, headers: Mapping[str, str], http_method: str, host: str) -> None:
        """PermissionDenied for a request without credentials that another site's page could
        have made (module doc)."""
        name = _host_name(host)
        # No Host at all (HTTP/1.0): not a browser, whose requests always name one.
        if name and not _local_host(name) and name not in self._hosts:
            raise PermissionDenied(
                f"host {host!r} is not allowed without authentication: use localhost or an "
                "IP address, or list it in SEMANTIC_HTTP_ALLOWED_HOSTS"
            )
        if http_method in SAFE_METHODS:
            return
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") in self._trusted:
            return
        if origin == "null":
            raise PermissionDenied("cross-origin request from an opaque origin refused")
        if origin and urlsplit(origin).netloc != host:
            raise PermissionDenied(f"cross-origin request from {origin!r} refused")
        if headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
            raise PermissionDenied("a request another site's page made is refused")


def check_csrf(
    session: str, headers: Mapping[str, str], form_csrf: str | None, origin_host: str
) -> None:
    """PermissionDenied unless the request carries the session's CSRF token and, when it
    names an ``Origin``, comes from ``origin_host``."""
    origin = headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != origin_host:
        raise PermissionDenied(f"cross-origin request from {origin!r} refused")
    if origin == "null":
        raise PermissionDenied("cross-origin request from an opaque origin refused")
    given = headers.get(CSRF_HEADER) or form_csrf or ""
    if not hmac.compare_digest(given.encode(), csrf_token(session).encode()):
        raise PermissionDenied(
            "missing or wrong CSRF token: a request authenticated by the session cookie "
            f"that changes something must send it in {CSRF_HEADER} (or the form field "
            f"{CSRF_FIELD!r})"
        )


def _host_name(host: str) -> str:
    """The name of a ``Host`` header, without its port (and brackets, for IPv6)."""
    try:
        return (urlsplit(f"//{host}").hostname or "").lower()
    except ValueError:
        return host.lower()


def _local_host(name: str) -> bool:
    """``localhost`` (or a name under it) or an IP address: names no other site controls."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@contextmanager
def acting(caller: Caller) -> Iterator[Principal]:
    """Run a block as the caller (what the servicers' tenant and user checks read)."""
    with acting_as(caller.principal) as principal:
        yield principal
