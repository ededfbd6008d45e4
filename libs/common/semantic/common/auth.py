"""Who may call what: the role table, the verified caller, and the auth interceptor.

    AuthSettings      SEMANTIC_AUTH_* fields a service's settings mix in (from ``tokens``)
    Role, ROLE_GRANTS reader < writer < service < admin; each includes the ones below
    METHOD_ROLES      the one table: full method name -> the least role that may call it
    EMBEDDER_METHOD_ROLES, EMBEDDER_OPEN_METHODS   the embedder's table: LoadModel needs
                      admin; Embed, EmbedStream and Info need no token
    EVERY_TENANT_METHODS  methods acting on every tenant at once: a token with a tenant
                      claim may not call them, whatever its roles
    PER_TENANT_ADMIN_METHODS  Admin methods acting on one tenant (Explore, ExplainRecommendation)
    Principal         the verified caller: subject, roles, tenant, raw claims
    AuthInterceptor   checks ``authorization: Bearer <JWT>`` and the role of every RPC,
                      then runs the handler with the caller in ``current_principal()``
    enforce_tenant / enforce_user / require_role / require_every_tenant
                      checks a servicer makes itself

Health and reflection are open without a token; a method of ours missing from the table
is denied. Rejections follow the status table of ``grpc_errors``: Unauthenticated ->
UNAUTHENTICATED, PermissionDenied -> PERMISSION_DENIED. ServerKit runs extra interceptors
outside ErrorInterceptor, so the interceptor aborts with that table itself; checks made
inside a handler raise the domain errors and ErrorInterceptor maps them. Verifying and
minting tokens is ``semantic.common.tokens``; its public names are re-exported here.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc
import structlog
from grpc.aio import ServicerContext

from semantic.common import errors, validation
from semantic.common.grpc_errors import RPC_HANDLED, Rewrapped, rewrap, status_for
from semantic.common.tokens import (
    AuthSettings,
    Role,
    TokenVerifier,
    add_token_arguments,
    mint_token,
    token_command,
)

__all__ = [
    "DEVELOPMENT_PRINCIPAL",
    "EMBEDDER_METHOD_ROLES",
    "EMBEDDER_OPEN_METHODS",
    "EVERY_TENANT_METHODS",
    "METHOD_ROLES",
    "PER_TENANT_ADMIN_METHODS",
    "ROLE_GRANTS",
    "AuthInterceptor",
    "AuthSettings",
    "Principal",
    "Role",
    "TokenVerifier",
    "acting_as",
    "add_token_arguments",
    "bearer_token",
    "current_principal",
    "enforce_tenant",
    "enforce_user",
    "is_public_method",
    "mint_token",
    "principal_from_claims",
    "require_every_tenant",
    "require_role",
    "token_command",
]

log = structlog.get_logger(__name__)


ROLE_GRANTS: Mapping[str, frozenset[Role]] = MappingProxyType(
    {
        Role.READER: frozenset({Role.READER}),
        Role.WRITER: frozenset({Role.READER, Role.WRITER}),
        Role.SERVICE: frozenset({Role.READER, Role.WRITER, Role.SERVICE}),
        Role.ADMIN: frozenset(Role),
    }
)

METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {
        "/semantic.v1.Search/Get": Role.READER,
        "/semantic.v1.Search/Search": Role.READER,
        "/semantic.v1.Search/Nearest": Role.READER,
        "/semantic.v1.Search/Recommend": Role.READER,
        "/semantic.v1.Search/Stats": Role.READER,
        "/semantic.v1.Search/Upsert": Role.WRITER,
        "/semantic.v1.Search/Delete": Role.WRITER,
        "/semantic.v1.Search/Track": Role.WRITER,
        "/semantic.v1.Search/Relate": Role.WRITER,
        "/semantic.v1.Search/Unrelate": Role.WRITER,
        "/semantic.v1.Search/Related": Role.READER,
        "/semantic.v1.Search/Feedback": Role.WRITER,
        "/semantic.v1.Search/WriteRules": Role.WRITER,
        "/semantic.v1.Search/RemoveRules": Role.WRITER,
        "/semantic.v1.Search/Check": Role.READER,
        "/semantic.v1.Admin/HealthReport": Role.ADMIN,
        "/semantic.v1.Admin/Heal": Role.ADMIN,
        "/semantic.v1.Admin/Reindex": Role.ADMIN,
        "/semantic.v1.Admin/ActivateSpace": Role.ADMIN,
        "/semantic.v1.Admin/Rollback": Role.ADMIN,
        "/semantic.v1.Admin/ListSpaces": Role.ADMIN,
        "/semantic.v1.Admin/ListDeadLetters": Role.ADMIN,
        "/semantic.v1.Admin/ReplayDeadLetters": Role.ADMIN,
        "/semantic.v1.Admin/DiscardDeadLetters": Role.ADMIN,
        "/semantic.v1.Admin/ExplainRecommendation": Role.ADMIN,
        "/semantic.v1.Admin/CheckConsistency": Role.ADMIN,
        "/semantic.v1.Admin/Explore": Role.ADMIN,
        "/semantic.v1.Admin/Snapshot": Role.ADMIN,
        "/semantic.v1.Admin/ListSnapshots": Role.ADMIN,
    }
)

EMBEDDER_METHOD_ROLES: Mapping[str, Role] = MappingProxyType(
    {"/semantic.v1.Embedder/LoadModel": Role.ADMIN}
)
"""The embedder's table: loading a model changes what every caller of the process gets."""

EMBEDDER_OPEN_METHODS: frozenset[str] = frozenset(
    {
        "/semantic.v1.Embedder/Embed",
        "/semantic.v1.Embedder/EmbedStream",
        "/semantic.v1.Embedder/Info",
    }
)
"""Embedder RPCs callable without a token: the embedder holds no data, and its callers
(search, the indexer) are let in by the network (the NetworkPolicy under deploy/)."""

PER_TENANT_ADMIN_METHODS: frozenset[str] = frozenset(
    {"/semantic.v1.Admin/ExplainRecommendation", "/semantic.v1.Admin/Explore"}
)
"""Admin RPCs that act on one tenant (the request names it; a token's tenant claim forces
it, as on Search): an admin pinned to a tenant may call them."""

EVERY_TENANT_METHODS: frozenset[str] = frozenset(
    {
        *(
            method
            for method in METHOD_ROLES
            if method.startswith("/semantic.v1.Admin/") and method not in PER_TENANT_ADMIN_METHODS
        ),
        "/semantic.v1.Embedder/LoadModel",
    }
)
"""Methods that read or change every tenant at once (spaces, heal, reindex, health,
consistency, the dead letters of every tenant's events, snapshots, model loading). A token pinned to
a tenant cannot be held to its tenant there, so it is refused."""


def is_public_method(method: str) -> bool:
    """Health checks and server reflection are open to everyone."""
    service = method.lstrip("/").split("/", 1)[0]
    return service == "grpc.health.v1.Health" or service.startswith("grpc.reflection.")


@dataclass(frozen=True)
class Principal:
    """The caller of the current RPC, as its verified token describes it."""

    subject: str
    roles: frozenset[str]
    tenant: str | None = None  # None: not limited to one tenant
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def has_role(self, role: Role | str) -> bool:
        """Whether one of the token's roles includes ``role`` (admin includes all)."""
        return any(role in ROLE_GRANTS.get(granted, ()) for granted in self.roles)


DEVELOPMENT_PRINCIPAL = Principal(subject="anonymous", roles=frozenset(Role), tenant=None)
_PRINCIPAL: ContextVar[Principal] = ContextVar("semantic_principal")


def current_principal() -> Principal:
    """The caller of the RPC being handled (every role when auth is disabled)."""
    try:
        return _PRINCIPAL.get()
    except LookupError:
        raise RuntimeError(
            "no principal: the call did not pass through AuthInterceptor (or acting_as)"
        ) from None


@contextlib.contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run a block as ``principal`` (for consumers outside gRPC and for tests)."""
    token = _PRINCIPAL.set(principal)
    try:
        yield principal
    finally:
        _PRINCIPAL.reset(token)


def require_role(role: Role | str) -> Principal:
    """The current principal if it has ``role``; else PermissionDenied."""
    principal = current_principal()
    if not principal.has_role(role):
        raise errors.PermissionDenied(f"this operation needs role {role}{_granted(principal)}")
    return principal


def enforce_tenant(requested: str) -> str:
    """The tenant a request may use: the token's tenant claim, if it has one, wins.

    Empty ``requested`` becomes the claim's tenant; another tenant is PermissionDenied.
    Without a claim, ``requested`` is returned as is.
    """
    tenant = current_principal().tenant
    if tenant is None:
        return requested
    if requested in ("", tenant):
        return tenant
    raise errors.PermissionDenied(f"token is limited to tenant {tenant!r}")


def require_every_tenant(role: Role | str = Role.ADMIN) -> Principal:
    """The current principal if it has ``role`` and may act on every tenant at once (its
    token has no tenant claim); else PermissionDenied."""
    principal = require_role(role)
    if principal.tenant is not None:
        raise errors.PermissionDenied(
            f"token is limited to tenant {principal.tenant!r}; acting on every tenant "
            "needs a token without a tenant claim"
        )
    return principal


def enforce_user(requested_user_id: str) -> str:
    """The user whose data a request may read: any with the service role, else only the
    token's subject. Empty (no user) is returned as is."""
    principal = current_principal()
    if requested_user_id in ("", principal.subject) or principal.has_role(Role.SERVICE):
        return requested_user_id
    raise errors.PermissionDenied(
        f"token for user {principal.subject!r} may only read its own user's data "
        f"(or needs role {Role.SERVICE})"
    )


def _granted(principal: Principal) -> str:
    known = sorted(r for r in principal.roles if r in ROLE_GRANTS)
    return f"; the token grants {', '.join(known)}" if known else "; the token grants no role"


def _claim(claims: Mapping[str, Any], name: str) -> Any:
    """A claim by exact name, else by dotted path into nested objects."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _names(value: Any, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return frozenset(value)
    raise errors.Unauthenticated(
        f"malformed token: the {claim!r} claim must be a list of strings or a "
        "space-separated string"
    )


def principal_from_claims(
    claims: Mapping[str, Any], *, roles_claim: str = "roles", tenant_claim: str = "tenant"
) -> Principal:
    """The principal of verified claims; roles come from ``roles_claim`` and ``scope``."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise errors.Unauthenticated("malformed token: the 'sub' claim is missing or empty")
    roles = _names(_claim(claims, roles_claim), roles_claim)
    if roles_claim != "scope":
        roles |= _names(claims.get("scope"), "scope")
    tenant = _claim(claims, tenant_claim)
    if tenant is not None and not isinstance(tenant, str):
        raise errors.Unauthenticated(
            f"malformed token: the {tenant_claim!r} claim must be a string"
        )
    if tenant:
        try:
            validation.tenant(tenant, tenant_claim)
        except errors.InvalidArgument as exc:
            raise errors.Unauthenticated(f"malformed token: {exc}") from exc
    return Principal(subject, roles, tenant, MappingProxyType(dict(claims)))


def bearer_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    """The JWT of ``authorization: Bearer <JWT>`` metadata; Unauthenticated otherwise."""
    values = [value for key, value in metadata or () if key.lower() == "authorization"]
    if not values:
        raise errors.Unauthenticated("missing token: send metadata 'authorization: Bearer <JWT>'")
    if len(values) > 1:
        raise errors.Unauthenticated("more than one 'authorization' metadata entry")
    value = values[0]
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    scheme, _, token = text.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.Unauthenticated("malformed 'authorization' metadata: expected 'Bearer <JWT>'")
    return token.strip()


Behavior = Callable[[Any, ServicerContext[Any, Any]], Any]


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates and authorizes every RPC; pass it in ServerKit's extra_interceptors.

    ``method_roles`` is the role table; ``open_methods`` need no token (like health and
    reflection); ``every_tenant_methods`` are refused to tokens with a tenant claim.
    Raises BootstrapError at construction when jwt mode lacks usable key material. With
    ``auth_mode=disabled`` every call (health, reflection and ours alike) goes through as
    DEVELOPMENT_PRINCIPAL, and the table is not consulted.
    """

    def __init__(
        self,
        settings: AuthSettings,
        *,
        method_roles: Mapping[str, Role] = METHOD_ROLES,
        open_methods: Collection[str] = frozenset(),
        every_tenant_methods: Collection[str] = EVERY_TENANT_METHODS,
    ) -> None:
        self._method_roles = method_roles
        self._open_methods = frozenset(open_methods)
        self._every_tenant_methods = frozenset(every_tenant_methods)
        self._roles_claim = settings.auth_roles_claim
        self._tenant_claim = settings.auth_tenant_claim
        self._verifier: TokenVerifier | None = None
        self._bound = Rewrapped()
        # Not the module logger: a fresh proxy follows the configuration of this moment
        # even when the module logger was cached under an earlier one.
        start_log = structlog.get_logger(__name__)
        if settings.auth_mode == "disabled":
            start_log.warning(
                "auth_disabled",
                mode=settings.auth_mode,
                detail="AUTHENTICATION IS OFF: every RPC is allowed without a token and acts "
                "with every role. Development only; never expose this server.",
            )
            return
        self._verifier = TokenVerifier.from_settings(settings)
        start_log.info(
            "auth_enabled",
            algorithms=list(self._verifier.algorithms),
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
            roles_claim=self._roles_claim,
            tenant_claim=self._tenant_claim,
        )

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller named by verified ``authorization`` metadata; else Unauthenticated."""
        if self._verifier is None:
            return DEVELOPMENT_PRINCIPAL
        claims = self._verifier.verify(bearer_token(metadata))
        return principal_from_claims(
            claims, roles_claim=self._roles_claim, tenant_claim=self._tenant_claim
        )

    def check(self, method: str, principal: Principal) -> None:
        """PermissionDenied unless the table lets ``principal`` call ``method``."""
        if self._verifier is None:
            return  # disabled: no table either
        needed = self._method_roles.get(method)
        if needed is None:
            raise errors.PermissionDenied(f"method {method} is not open to any role")
        if not principal.has_role(needed):
            raise errors.PermissionDenied(
                f"method {method} needs role {needed}{_granted(principal)}"
            )
        if principal.tenant is not None and method in self._every_tenant_methods:
            raise errors.PermissionDenied(
                f"method {method} acts on every tenant; the token is limited to tenant "
                f"{principal.tenant!r}"
            )

    def authorize(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]] | None
    ) -> Principal:
        """The principal allowed to call ``method``; Unauthenticated or PermissionDenied."""
        principal = self.authenticate(metadata)
        self.check(method, principal)
        return principal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or is_public_method(method) or method in self._open_methods:
            return handler
        if self._verifier is None:  # disabled: one principal, so one wrapping per method
            return self._bound.get(
                method,
                handler,
                lambda: rewrap(
                    handler, lambda behavior, _kind: _binding(behavior, DEVELOPMENT_PRINCIPAL)
                ),
            )
        principal: Principal | None = None
        try:
            principal = self.authenticate(handler_call_details.invocation_metadata)
            self.check(method, principal)
        except (errors.Unauthenticated, errors.PermissionDenied) as exc:
            subject = principal.subject if principal is not None else None
            rejection = _rejecting(exc, method, subject)
            return rewrap(handler, lambda _behavior, _kind: rejection)
        bound = principal
        return rewrap(handler, lambda behavior, _kind: _binding(behavior, bound))


def _binding(behavior: Behavior, principal: Principal) -> Behavior:
    """``behavior`` run with ``principal`` in the context var, set inside the call's task.

    Streaming behaviours are async generators or coroutines calling ``context.write``
    (as in grpc_errors); the wrapper keeps the shape so grpc.aio drives it the same way.
    """
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            token = _PRINCIPAL.set(principal)
            try:
                async for item in behavior(request, context):
                    yield item
            finally:
                # A generator closed from another context cannot reset; the call is over.
                with contextlib.suppress(ValueError):
                    _PRINCIPAL.reset(token)

        return stream

    async def unary(request: Any, context: ServicerContext[Any, Any]) -> Any:
        token = _PRINCIPAL.set(principal)
        try:
            return await behavior(request, context)
        finally:
            _PRINCIPAL.reset(token)

    return unary


def _rejecting(exc: errors.SemanticError, method: str, subject: str | None) -> Behavior:
    """A behaviour that aborts with the status grpc_errors gives ``exc``.

    A coroutine serves every RPC kind: grpc.aio awaits coroutine stream handlers too.
    """
    code, message = status_for(exc)

    async def reject(request: Any, context: ServicerContext[Any, Any]) -> None:
        log.info("auth_rejected", method=method, code=code.name, reason=message, subject=subject)
        RPC_HANDLED.labels(method, code.name).inc()
        await context.abort(code, message)

    return reject
