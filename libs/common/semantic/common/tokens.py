"""JSON Web Tokens: auth settings, roles, verification with pinned algorithms, minting.

Verification picks the key by the token's ``alg`` header, but only among the algorithms
configured, each bound to its own key (HS256 to the secret, RS256/ES256 to a public key
of the matching type), so a token can never choose ``none`` or make a public key act as
an HMAC secret. Every failure becomes :class:`~semantic.common.errors.Unauthenticated`
with a message that says what is wrong and never echoes the token. Configuration
problems are :class:`~semantic.common.errors.BootstrapError` raised at start-up.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal, TextIO

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from semantic.common import errors
from semantic.common.settings import BaseServiceSettings

AuthMode = Literal["jwt", "disabled"]
JwtAlgorithm = Literal["HS256", "RS256", "ES256"]
ALGORITHMS: tuple[JwtAlgorithm, ...] = ("HS256", "RS256", "ES256")
MIN_SECRET_BYTES = 32  # RFC 7518 §3.2: an HS256 key is at least as long as the hash
MIN_RSA_BITS = 2048

_NO_KEY_HINT = (
    "set SEMANTIC_AUTH_JWT_SECRET (HS256, at least 32 bytes) or SEMANTIC_AUTH_JWT_PUBLIC_KEY "
    "/ SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE (RS256/ES256, with SEMANTIC_AUTH_JWT_ALGORITHMS), "
    "or SEMANTIC_AUTH_MODE=disabled for local development only"
)


class Role(StrEnum):
    """Roles a token may carry; what each may do is in ``auth.ROLE_GRANTS``."""

    READER = "reader"
    WRITER = "writer"
    SERVICE = "service"  # a backend: writer, and may read any user's recommendations
    ADMIN = "admin"


class AuthSettings(BaseSettings):
    """How callers authenticate. Mix into a service's settings::

        class SearchSettings(BaseServiceSettings, AuthSettings): ...

    Every field reads ``SEMANTIC_<FIELD NAME>``, e.g. ``SEMANTIC_AUTH_JWT_SECRET``. Key
    material is checked when the verifier is built (:meth:`TokenVerifier.from_settings`,
    done by ``AuthInterceptor``), so tools that only mint tokens can still read these.
    """

    model_config = SettingsConfigDict(**BaseServiceSettings.model_config)

    auth_mode: AuthMode = Field(
        "jwt",
        description="`jwt`: every RPC needs a valid token. `disabled`: no checks, every "
        "caller has every role; an explicit development setting, logged loudly at start.",
    )
    auth_jwt_algorithms: Annotated[tuple[JwtAlgorithm, ...], NoDecode] = Field(
        ("HS256",),
        description="Accepted signing algorithms, comma separated: HS256, RS256, ES256. "
        "Tokens signed otherwise (or with `none`) are rejected.",
    )
    auth_jwt_secret: SecretStr | None = Field(
        None, description="HS256 shared secret, at least 32 bytes."
    )
    auth_jwt_public_key: str | None = Field(
        None,
        description="RS256/ES256 verification key as PEM text (`\\n` escapes are accepted).",
    )
    auth_jwt_public_key_file: Path | None = Field(
        None, description="File holding the RS256/ES256 PEM public key (instead of the text)."
    )
    auth_jwt_audience: str | None = Field(
        None, description="When set, tokens must carry this `aud`; unset, `aud` is not checked."
    )
    auth_jwt_issuer: str | None = Field(
        None, description="When set, tokens must carry this `iss`; unset, `iss` is not checked."
    )
    auth_leeway_seconds: float = Field(
        30.0, ge=0, le=600, description="Clock skew allowed on `exp`, `nbf` and `iat`."
    )
    auth_roles_claim: str = Field(
        "roles",
        min_length=1,
        description="Claim holding the roles: a list or a space-separated string. A dotted "
        "path (`realm_access.roles`) reaches nested claims. `scope` is always read as well.",
    )
    auth_tenant_claim: str = Field(
        "tenant", min_length=1, description="Claim naming the only tenant a token may use."
    )

    @field_validator(
        "auth_jwt_secret",
        "auth_jwt_public_key",
        "auth_jwt_public_key_file",
        "auth_jwt_audience",
        "auth_jwt_issuer",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("auth_jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.upper() for part in value.replace(",", " ").split()]
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError("name at least one algorithm: HS256, RS256 or ES256")
            return tuple(dict.fromkeys(value))
        return value


class TokenVerifier:
    """Checks a token's signature and claims with keys fixed at start-up."""

    def __init__(
        self,
        keys: Mapping[str, Any],
        *,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_seconds: float = 30.0,
    ) -> None:
        unknown = set(keys) - set(ALGORITHMS)
        if not keys or unknown:
            raise errors.BootstrapError(f"token algorithms must be among {', '.join(ALGORITHMS)}")
        self._keys = dict(keys)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway_seconds

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The accepted algorithms, each bound to its key."""
        return tuple(self._keys)

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenVerifier:
        """Load and check the key material; raises BootstrapError with what to set."""
        secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
        has_public = bool(settings.auth_jwt_public_key or settings.auth_jwt_public_key_file)
        if not secret and not has_public:
            raise errors.BootstrapError(
                f"SEMANTIC_AUTH_MODE=jwt but no key material is configured: {_NO_KEY_HINT}"
            )
        keys: dict[str, Any] = {}
        for algorithm in settings.auth_jwt_algorithms:
            if algorithm == "HS256":
                keys[algorithm] = _hmac_key(secret)
            else:
                keys[algorithm] = _public_key(settings, algorithm)
        return cls(
            keys,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
            leeway_seconds=settings.auth_leeway_seconds,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims once signature, exp, nbf, iat, aud and iss hold."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise errors.Unauthenticated("malformed token: not a signed JWT") from exc
        algorithm = header.get("alg")
        key = self._keys.get(algorithm) if isinstance(algorithm, str) else None
        if key is None or not isinstance(algorithm, str):
            shown = repr(algorithm) if isinstance(algorithm, str) and len(algorithm) <= 16 else ""
            raise errors.Unauthenticated(
                f"token algorithm {shown or 'in the header'} is not accepted; "
                f"allowed: {', '.join(self._keys)}"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self._audience is not None,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise errors.Unauthenticated(self._reason(exc)) from exc
        for name in ("exp", "nbf", "iat"):  # NumericDate: a JSON number (the library takes "1")
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise errors.Unauthenticated(f"malformed token: the {name!r} claim is not a number")
        return claims

    def _reason(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "token expired"
        if isinstance(exc, jwt.InvalidSignatureError):
            return "bad token signature"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"wrong token audience: expected {self._audience!r}"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"wrong token issuer: expected {self._issuer!r}"
        if isinstance(exc, jwt.ImmatureSignatureError):
            return "token not yet valid (nbf or iat in the future)"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"malformed token: the {exc.claim!r} claim is missing"
        if isinstance(exc, jwt.InvalidIssuedAtError | jwt.exceptions.InvalidSubjectError):
            return f"malformed token: {exc}"
        return "malformed token"


def _hmac_key(secret: str) -> bytes:
    if not secret:
        raise errors.BootstrapError(
            "SEMANTIC_AUTH_JWT_ALGORITHMS includes HS256, which needs SEMANTIC_AUTH_JWT_SECRET"
        )
    key = secret.encode()
    if len(key) < MIN_SECRET_BYTES:
        raise errors.BootstrapError(
            f"SEMANTIC_AUTH_JWT_SECRET is {len(key)} bytes; HS256 needs at least "
            f"{MIN_SECRET_BYTES} (e.g. `openssl rand -base64 48`)"
        )
    return key


def _public_key(settings: AuthSettings, algorithm: str) -> Any:
    text, file = settings.auth_jwt_public_key, settings.auth_jwt_public_key_file
    source = "SEMANTIC_AUTH_JWT_PUBLIC_KEY"
    if text and file:
        raise errors.BootstrapError(
            "set SEMANTIC_AUTH_JWT_PUBLIC_KEY or SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE, not both"
        )
    if file:
        source = f"SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE ({file})"
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.BootstrapError(f"cannot read {source}: {exc.strerror}") from exc
    if not text:
        raise errors.BootstrapError(
            f"SEMANTIC_AUTH_JWT_ALGORITHMS includes {algorithm}, which needs "
            "SEMANTIC_AUTH_JWT_PUBLIC_KEY (PEM text) or SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE"
        )
    if "\n" not in text:
        text = text.replace("\\n", "\n")
    try:
        key = serialization.load_pem_public_key(text.strip().encode())
    except ValueError as exc:
        raise errors.BootstrapError(
            f"{source} is not a PEM public key (expected -----BEGIN PUBLIC KEY-----)"
        ) from exc
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise errors.BootstrapError(f"{source} is not an RSA key, so it cannot verify RS256")
        if key.key_size < MIN_RSA_BITS:
            raise errors.BootstrapError(
                f"{source} is a {key.key_size}-bit RSA key; RS256 needs >= {MIN_RSA_BITS}"
            )
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise errors.BootstrapError(f"{source} is not a P-256 EC key, so it cannot verify ES256")
    return key


def mint_token(
    secret_or_private_key: str | bytes,
    *,
    subject: str,
    roles: Iterable[str],
    tenant: str | None = None,
    audience: str | None = None,
    issuer: str | None = None,
    ttl_seconds: float = 3600,
    algorithm: str = "HS256",
    roles_claim: str = "roles",
    tenant_claim: str = "tenant",
    issued_at: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed token for tests and operations.

    ``secret_or_private_key`` is the HS256 secret or the RS256/ES256 PEM private key.
    ``issued_at`` (epoch seconds, default now) lets tests make expired or future tokens;
    ``extra_claims`` are added last and may override the standard ones.
    """
    if algorithm not in ALGORITHMS:
        raise errors.InvalidArgument("algorithm", f"must be one of {', '.join(ALGORITHMS)}")
    if ttl_seconds <= 0:
        raise errors.InvalidArgument("ttl_seconds", "must be positive")
    if not subject:
        raise errors.InvalidArgument("subject", "must not be empty")
    now = int(time.time() if issued_at is None else issued_at)
    claims: dict[str, Any] = {
        "sub": subject,
        roles_claim: sorted(set(roles)),
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    if tenant is not None:
        claims[tenant_claim] = tenant
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    claims.update(extra_claims or {})
    return jwt.encode(claims, secret_or_private_key, algorithm=algorithm)


def signing_algorithm(private_key_pem: bytes) -> JwtAlgorithm:
    """RS256 or ES256, whichever the PEM private key can sign."""
    try:
        key = serialization.load_pem_private_key(private_key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise errors.InvalidArgument("private_key", "not an unencrypted PEM private key") from exc
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise errors.InvalidArgument("private_key", "must be an RSA or a P-256 EC key")


def add_token_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of a `token` command that prints a signed JWT (see token_command)."""
    parser.add_argument("--subject", required=True, help="the `sub` claim (user or service)")
    parser.add_argument(
        "--role",
        dest="roles",
        action="append",
        required=True,
        choices=[str(role) for role in Role],
        help="a role to grant; repeat for several",
    )
    parser.add_argument("--tenant", help="limit the token to this tenant")
    parser.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    parser.add_argument(
        "--private-key-file", type=Path, help="PEM private key: sign RS256 or ES256 with it"
    )
    parser.add_argument(
        "--secret-file", type=Path, help="HS256 secret file (default: $SEMANTIC_AUTH_JWT_SECRET)"
    )
    parser.add_argument("--algorithm", choices=ALGORITHMS, help="default: from the key")
    parser.add_argument("--audience", help="default: $SEMANTIC_AUTH_JWT_AUDIENCE")
    parser.add_argument("--issuer", help="default: $SEMANTIC_AUTH_JWT_ISSUER")


def token_command(
    args: argparse.Namespace,
    *,
    settings: AuthSettings | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print a token for ``args`` (from add_token_arguments); returns the exit code."""
    settings = settings if settings is not None else AuthSettings()
    out, err = out or sys.stdout, err or sys.stderr
    try:
        if args.private_key_file is not None:
            pem: bytes = args.private_key_file.read_bytes()
            key: str | bytes = pem
            algorithm = args.algorithm or signing_algorithm(pem)
        elif args.secret_file is not None:
            key, algorithm = args.secret_file.read_text(encoding="utf-8").strip(), "HS256"
        elif settings.auth_jwt_secret and settings.auth_jwt_secret.get_secret_value():
            key, algorithm = settings.auth_jwt_secret.get_secret_value(), "HS256"
        else:
            err.write(
                "no signing key: pass --private-key-file or --secret-file, "
                "or set SEMANTIC_AUTH_JWT_SECRET\n"
            )
            return 2
        token = mint_token(
            key,
            subject=args.subject,
            roles=args.roles,
            tenant=args.tenant,
            audience=args.audience or settings.auth_jwt_audience,
            issuer=args.issuer or settings.auth_jwt_issuer,
            ttl_seconds=args.ttl,
            algorithm=algorithm,
            roles_claim=settings.auth_roles_claim,
            tenant_claim=settings.auth_tenant_claim,
        )
    except (OSError, errors.InvalidArgument) as exc:
        err.write(f"cannot mint a token: {exc}\n")
        return 2
    out.write(token + "\n")
    return 0
