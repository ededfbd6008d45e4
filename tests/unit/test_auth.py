"""Auth without a server: settings, key checks, token verification, claims, the role
table and the checks servicers make on the current principal."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import io
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError

from semantic.common import errors
from semantic.common.auth import (
    DEVELOPMENT_PRINCIPAL,
    METHOD_ROLES,
    AuthInterceptor,
    AuthSettings,
    Principal,
    Role,
    TokenVerifier,
    acting_as,
    add_token_arguments,
    bearer_token,
    current_principal,
    enforce_tenant,
    enforce_user,
    is_public_method,
    mint_token,
    principal_from_claims,
    require_role,
    token_command,
)
from semantic.common.settings import BaseServiceSettings
from semantic.v1 import search_pb2

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"


def _settings(**values: Any) -> AuthSettings:
    return AuthSettings(_env_file=None, **values)


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier.from_settings(
        _settings(auth_jwt_secret=SECRET, auth_jwt_audience="semantic", auth_jwt_issuer="idp")
    )


def _token(**overrides: Any) -> str:
    values: dict[str, Any] = {
        "subject": "alice",
        "roles": ["reader"],
        "audience": "semantic",
        "issuer": "idp",
    }
    values.update(overrides)
    key = values.pop("key", SECRET)
    return mint_token(key, **values)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_signed_with(key: bytes, claims: dict[str, Any]) -> str:
    """An HS256 token signed by hand (PyJWT refuses PEM keys as HMAC secrets)."""
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


# --- settings -----------------------------------------------------------------------


def test_defaults_are_jwt_hs256_with_standard_claims_and_thirty_seconds_leeway() -> None:
    settings = _settings()
    assert settings.auth_mode == "jwt"
    assert settings.auth_jwt_algorithms == ("HS256",)
    assert settings.auth_leeway_seconds == 30
    assert (settings.auth_roles_claim, settings.auth_tenant_claim) == ("roles", "tenant")
    assert settings.auth_jwt_audience is None
    assert settings.auth_jwt_issuer is None


def test_every_field_reads_its_semantic_auth_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SEMANTIC_AUTH_MODE": "disabled",
        "SEMANTIC_AUTH_JWT_ALGORITHMS": "rs256, ES256",
        "SEMANTIC_AUTH_JWT_SECRET": SECRET,
        "SEMANTIC_AUTH_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----",
        "SEMANTIC_AUTH_JWT_PUBLIC_KEY_FILE": "/etc/semantic/jwt.pem",
        "SEMANTIC_AUTH_JWT_AUDIENCE": "semantic",
        "SEMANTIC_AUTH_JWT_ISSUER": "https://idp.example",
        "SEMANTIC_AUTH_LEEWAY_SECONDS": "5",
        "SEMANTIC_AUTH_ROLES_CLAIM": "realm_access.roles",
        "SEMANTIC_AUTH_TENANT_CLAIM": "org",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = _settings()
    assert settings.auth_mode == "disabled"
    assert settings.auth_jwt_algorithms == ("RS256", "ES256")
    assert settings.auth_jwt_secret is not None
    assert settings.auth_jwt_secret.get_secret_value() == SECRET
    assert settings.auth_jwt_public_key == "-----BEGIN PUBLIC KEY-----"
    assert settings.auth_jwt_public_key_file == Path("/etc/semantic/jwt.pem")
    assert settings.auth_jwt_audience == "semantic"
    assert settings.auth_jwt_issuer == "https://idp.example"
    assert settings.auth_leeway_seconds == 5
    assert settings.auth_roles_claim == "realm_access.roles"
    assert settings.auth_tenant_claim == "org"


def test_auth_fields_mix_into_service_settings_keeping_env_file_and_redaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class ServiceSettings(BaseServiceSettings, AuthSettings):
        pass

    monkeypatch.setenv("SEMANTIC_AUTH_JWT_SECRET", SECRET)
    monkeypatch.setenv("SEMANTIC_GRPC_PORT", "6001")
    settings = ServiceSettings(_env_file=None)
    assert settings.grpc_port == 6001
    assert settings.auth_jwt_secret is not None
    assert ServiceSettings.model_config.get("env_file") == ".env"
    assert ServiceSettings.model_config.get("frozen") is True
    assert settings.redacted()["auth_jwt_secret"] == "***"
    assert SECRET not in repr(settings)


def test_empty_variables_count_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SECRET", "PUBLIC_KEY", "PUBLIC_KEY_FILE", "AUDIENCE", "ISSUER"):
        monkeypatch.setenv(f"SEMANTIC_AUTH_JWT_{name}", "")
    settings = _settings()
    assert settings.auth_jwt_secret is None
    assert settings.auth_jwt_public_key is None
    assert settings.auth_jwt_public_key_file is None
    assert (settings.auth_jwt_audience, settings.auth_jwt_issuer) == (None, None)


@pytest.mark.parametrize("algorithms", ["none", "HS512", ""])
def test_only_hs256_rs256_and_es256_are_valid_algorithm_settings(algorithms: str) -> None:
    with pytest.raises(ValidationError):
        _settings(auth_jwt_algorithms=algorithms)


# --- key material is checked at construction ----------------------------------------


def test_jwt_mode_without_key_material_is_a_configuration_error_at_construction() -> None:
    with pytest.raises(errors.BootstrapError) as caught:
        AuthInterceptor(_settings())
    message = str(caught.value)
    assert "no key material" in message
    assert "SEMANTIC_AUTH_JWT_SECRET" in message
    assert "SEMANTIC_AUTH_MODE=disabled" in message


def test_empty_secret_counts_as_no_key_material() -> None:
    with pytest.raises(errors.BootstrapError, match="no key material"):
        AuthInterceptor(_settings(auth_jwt_secret=""))


def test_hs256_secret_shorter_than_32_bytes_is_rejected() -> None:
    with pytest.raises(errors.BootstrapError, match="at least 32"):
        AuthInterceptor(_settings(auth_jwt_secret="short"))


def test_rs256_without_a_public_key_is_rejected_even_with_a_secret() -> None:
    with pytest.raises(errors.BootstrapError, match="includes RS256"):
        TokenVerifier.from_settings(
            _settings(auth_jwt_algorithms="HS256,RS256", auth_jwt_secret=SECRET)
        )


def test_public_key_of_the_wrong_type_for_the_algorithm_is_rejected(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    with pytest.raises(errors.BootstrapError, match="not an RSA key"):
        TokenVerifier.from_settings(
            _settings(auth_jwt_algorithms="RS256", auth_jwt_public_key=_pem_public(ec_key))
        )
    with pytest.raises(errors.BootstrapError, match="not a P-256 EC key"):
        TokenVerifier.from_settings(
            _settings(auth_jwt_algorithms="ES256", auth_jwt_public_key=_pem_public(rsa_key))
        )


def test_private_key_given_as_the_public_key_is_rejected(
    ec_key: ec.EllipticCurvePrivateKey,
) -> None:
    with pytest.raises(errors.BootstrapError, match="not a PEM public key"):
        TokenVerifier.from_settings(
            _settings(
                auth_jwt_algorithms="ES256", auth_jwt_public_key=_pem_private(ec_key).decode()
            )
        )


def test_public_key_text_and_file_together_are_rejected(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    path = tmp_path / "key.pem"
    path.write_text(_pem_public(ec_key))
    with pytest.raises(errors.BootstrapError, match="not both"):
        TokenVerifier.from_settings(
            _settings(
                auth_jwt_algorithms="ES256",
                auth_jwt_public_key=_pem_public(ec_key),
                auth_jwt_public_key_file=path,
            )
        )


def test_missing_public_key_file_is_rejected_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.pem"
    with pytest.raises(errors.BootstrapError, match="cannot read") as caught:
        TokenVerifier.from_settings(
            _settings(auth_jwt_algorithms="RS256", auth_jwt_public_key_file=missing)
        )
    assert str(missing) in str(caught.value)


def test_public_key_is_read_from_a_file_or_from_text_with_escaped_newlines(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = _token(key=_pem_private(rsa_key), algorithm="RS256", audience=None, issuer=None)
    path = tmp_path / "key.pem"
    path.write_text(_pem_public(rsa_key))
    from_file = _settings(auth_jwt_algorithms="RS256", auth_jwt_public_key_file=path)
    escaped = _pem_public(rsa_key).replace("\n", "\\n")
    from_text = _settings(auth_jwt_algorithms="RS256", auth_jwt_public_key=escaped)
    for settings in (from_file, from_text):
        assert TokenVerifier.from_settings(settings).verify(token)["sub"] == "alice"


# --- verification -------------------------------------------------------------------


def _none_token() -> str:
    claims = {"sub": "mallory", "roles": ["admin"], "aud": "semantic", "iss": "idp"}
    return jwt.encode({**claims, "exp": int(time.time()) + 600}, "", algorithm="none")


REJECTIONS: dict[str, tuple[Callable[[], str], str]] = {
    "expired": (lambda: _token(issued_at=time.time() - 7200, ttl_seconds=3600), "token expired"),
    "bad_signature": (
        lambda: _token(key="another-secret-that-is-also-long-enough-x"),
        "bad token signature",
    ),
    "wrong_audience": (lambda: _token(audience="billing"), "wrong token audience"),
    "no_audience": (lambda: _token(audience=None), "'aud' claim is missing"),
    "wrong_issuer": (lambda: _token(issuer="evil"), "wrong token issuer"),
    "not_yet_valid": (lambda: _token(issued_at=time.time() + 3600), "not yet valid"),
    "alg_none": (_none_token, "token algorithm 'none' is not accepted"),
    "malformed": (lambda: "not-a-jwt", "malformed token"),
    "garbage_segments": (lambda: "e30.e30.!!!!", "malformed token"),
    "no_exp": (lambda: _token(extra_claims={"exp": None}), "malformed token"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_bad_tokens_are_unauthenticated_with_a_reason_and_without_the_token(
    case: str, verifier: TokenVerifier
) -> None:
    make, reason = REJECTIONS[case]
    token = make()
    with pytest.raises(errors.Unauthenticated) as caught:
        verifier.verify(token)
    assert reason in str(caught.value)
    assert token not in str(caught.value)


def test_token_without_exp_or_sub_is_rejected() -> None:
    verifier = TokenVerifier.from_settings(_settings(auth_jwt_secret=SECRET))
    no_exp = jwt.encode({"sub": "alice"}, SECRET, algorithm="HS256")
    no_sub = jwt.encode({"exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    with pytest.raises(errors.Unauthenticated, match="'exp' claim is missing"):
        verifier.verify(no_exp)
    with pytest.raises(errors.Unauthenticated, match="'sub' claim is missing"):
        verifier.verify(no_sub)


@pytest.mark.parametrize("name", ["exp", "nbf", "iat"])
def test_a_time_claim_that_is_no_number_is_malformed(name: str) -> None:
    """NumericDate claims are JSON numbers; a string the library would convert is not."""
    verifier = TokenVerifier.from_settings(_settings(auth_jwt_secret=SECRET))
    now = int(time.time())
    claims: dict[str, Any] = {"sub": "alice", "exp": now + 60, "nbf": now - 5, "iat": now - 5}
    claims[name] = str(claims[name])
    with pytest.raises(errors.Unauthenticated, match=f"the '{name}' claim is not a number"):
        verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    claims[name] = int(claims[name])
    assert verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))["sub"] == "alice"


def test_expiry_within_the_leeway_is_accepted(verifier: TokenVerifier) -> None:
    token = _token(issued_at=time.time() - 70, ttl_seconds=60)  # expired 10 s ago
    assert verifier.verify(token)["sub"] == "alice"


def test_audience_and_issuer_are_not_checked_when_not_configured() -> None:
    verifier = TokenVerifier.from_settings(_settings(auth_jwt_secret=SECRET))
    assert verifier.verify(_token(audience="anything", issuer="anyone"))["sub"] == "alice"


def test_hs256_token_is_refused_when_only_rs256_is_configured(rsa_key: rsa.RSAPrivateKey) -> None:
    verifier = TokenVerifier.from_settings(
        _settings(auth_jwt_algorithms="RS256", auth_jwt_public_key=_pem_public(rsa_key))
    )
    with pytest.raises(errors.Unauthenticated, match="'HS256' is not accepted; allowed: RS256"):
        verifier.verify(_token(audience=None, issuer=None))


def test_public_key_never_serves_as_an_hmac_secret(rsa_key: rsa.RSAPrivateKey) -> None:
    public_pem = _pem_public(rsa_key)
    verifier = TokenVerifier.from_settings(
        _settings(
            auth_jwt_algorithms="HS256,RS256",
            auth_jwt_secret=SECRET,
            auth_jwt_public_key=public_pem,
        )
    )
    forged = _hs256_signed_with(
        public_pem.encode(), {"sub": "mallory", "roles": ["admin"], "exp": time.time() + 600}
    )
    with pytest.raises(errors.Unauthenticated, match="bad token signature"):
        verifier.verify(forged)


def test_rs256_and_es256_tokens_verify_with_their_public_keys(
    rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    for algorithm, key in (("RS256", rsa_key), ("ES256", ec_key)):
        verifier = TokenVerifier.from_settings(
            _settings(auth_jwt_algorithms=algorithm, auth_jwt_public_key=_pem_public(key))
        )
        token = _token(key=_pem_private(key), algorithm=algorithm)
        assert verifier.verify(token)["roles"] == ["reader"]


# --- claims -> principal ------------------------------------------------------------


def test_roles_come_from_a_list_or_a_space_separated_string_plus_scope() -> None:
    listed = principal_from_claims({"sub": "a", "roles": ["reader", "writer"]})
    spaced = principal_from_claims({"sub": "a", "roles": "reader writer"})
    scoped = principal_from_claims({"sub": "a", "roles": ["reader"], "scope": "writer openid"})
    assert listed.roles == spaced.roles == frozenset({"reader", "writer"})
    assert scoped.roles == frozenset({"reader", "writer", "openid"})


def test_roles_and_tenant_claims_may_be_renamed_or_nested() -> None:
    claims = {"sub": "a", "realm_access": {"roles": ["admin"]}, "org": "acme"}
    principal = principal_from_claims(claims, roles_claim="realm_access.roles", tenant_claim="org")
    assert principal.roles == frozenset({"admin"})
    assert principal.tenant == "acme"
    scope_only = principal_from_claims({"sub": "a", "scope": "reader"}, roles_claim="scope")
    assert scope_only.roles == frozenset({"reader"})


def test_principal_keeps_subject_tenant_and_raw_claims() -> None:
    claims = {"sub": "alice", "roles": ["reader"], "tenant": "acme", "email": "a@x"}
    principal = principal_from_claims(claims)
    assert (principal.subject, principal.tenant) == ("alice", "acme")
    assert principal.claims["email"] == "a@x"
    assert principal_from_claims({"sub": "bob"}).tenant is None


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "a", "roles": 7},
        {"sub": "a", "roles": ["reader", 3]},
        {"sub": "a", "tenant": ["acme"]},
        {"sub": "", "roles": ["reader"]},
        # a tenant claim must be a tenant name, as a request's tenant field must
        {"sub": "a", "tenant": "a\x00"},
        {"sub": "a", "tenant": "-bad"},
        {"sub": "a", "tenant": "a.b*>"},
        {"sub": "a", "tenant": "x" * 65},
        {"sub": "a", "tenant": " "},
        {"sub": "a", "tenant": "\u00e9"},
    ],
)
def test_malformed_claims_are_unauthenticated(claims: dict[str, Any]) -> None:
    with pytest.raises(errors.Unauthenticated, match="malformed token"):
        principal_from_claims(claims)


# --- the role table -----------------------------------------------------------------


def test_every_search_and_admin_rpc_has_exactly_one_table_entry() -> None:
    contract = {
        f"/{service.full_name}/{method.name}"
        for service in search_pb2.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(METHOD_ROLES) == contract


ALLOWED = {
    Role.READER: {"Get", "Search", "Nearest", "Recommend", "Stats", "Related", "Check"},
    Role.WRITER: {
        *("Get", "Search", "Nearest", "Recommend", "Stats", "Related", "Check"),
        *("Upsert", "Delete", "Track", "Relate", "Unrelate", "Feedback", "WriteRules"),
        "RemoveRules",
    },
    Role.SERVICE: {
        *("Get", "Search", "Nearest", "Recommend", "Stats", "Related", "Check"),
        *("Upsert", "Delete", "Track", "Relate", "Unrelate", "Feedback", "WriteRules"),
        "RemoveRules",
    },
    Role.ADMIN: {method.rsplit("/", 1)[1] for method in METHOD_ROLES},
}


@pytest.mark.parametrize("role", list(Role))
def test_each_role_may_call_exactly_the_methods_of_the_contract(role: Role) -> None:
    principal = Principal("p", frozenset({role}))
    allowed = {
        m.rsplit("/", 1)[1] for m, needed in METHOD_ROLES.items() if principal.has_role(needed)
    }
    assert allowed == ALLOWED[role]


def test_unknown_role_names_grant_nothing() -> None:
    principal = Principal("p", frozenset({"openid", "superuser"}))
    assert not any(principal.has_role(role) for role in Role)


def test_health_and_reflection_are_public_and_our_services_are_not() -> None:
    assert is_public_method("/grpc.health.v1.Health/Check")
    assert is_public_method("/grpc.health.v1.Health/Watch")
    assert is_public_method("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo")
    assert is_public_method("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo")
    assert not is_public_method("/semantic.v1.Search/Search")
    assert not is_public_method("/grpc.healthy.Evil/Check")


# --- metadata -----------------------------------------------------------------------


def test_bearer_token_is_read_from_authorization_metadata() -> None:
    assert bearer_token([("authorization", "Bearer abc.def.ghi")]) == "abc.def.ghi"
    assert bearer_token([("x-request-id", "1"), ("authorization", "bearer  t ")]) == "t"


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        (None, "missing token"),
        ([("x-request-id", "1")], "missing token"),
        ([("authorization", "Basic dXNlcjpwdw==")], "expected 'Bearer <JWT>'"),
        ([("authorization", "Bearer ")], "expected 'Bearer <JWT>'"),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], "more than one"),
    ],
)
def test_bad_authorization_metadata_is_unauthenticated(
    metadata: list[tuple[str, str]] | None, reason: str
) -> None:
    with pytest.raises(errors.Unauthenticated, match=reason):
        bearer_token(metadata)


# --- checks a servicer makes --------------------------------------------------------


def test_enforce_tenant_fills_in_or_checks_the_tokens_tenant() -> None:
    with acting_as(Principal("alice", frozenset({"writer"}), tenant="acme")):
        assert enforce_tenant("") == "acme"
        assert enforce_tenant("acme") == "acme"
        with pytest.raises(errors.PermissionDenied, match="token is limited to tenant 'acme'"):
            enforce_tenant("globex")
    with acting_as(Principal("ops", frozenset({"writer"}))):
        assert enforce_tenant("globex") == "globex"
        assert enforce_tenant("") == ""


def test_require_role_names_the_needed_and_the_granted_roles() -> None:
    with acting_as(Principal("alice", frozenset({"reader"}))):
        assert require_role(Role.READER).subject == "alice"
        with pytest.raises(
            errors.PermissionDenied, match="needs role writer; the token grants reader"
        ):
            require_role("writer")


def test_enforce_user_lets_users_read_only_their_own_data_unless_service() -> None:
    with acting_as(Principal("alice", frozenset({"reader"}))):
        assert enforce_user("alice") == "alice"
        assert enforce_user("") == ""
        with pytest.raises(errors.PermissionDenied, match="may only read its own"):
            enforce_user("bob")
    for role in (Role.SERVICE, Role.ADMIN):
        with acting_as(Principal("recommender", frozenset({role}))):
            assert enforce_user("bob") == "bob"


def test_current_principal_outside_a_call_is_an_error_and_acting_as_restores() -> None:
    with pytest.raises(RuntimeError, match="no principal"):
        current_principal()
    with acting_as(DEVELOPMENT_PRINCIPAL):
        assert current_principal() is DEVELOPMENT_PRINCIPAL
    with pytest.raises(RuntimeError):
        current_principal()


def test_development_principal_has_every_role_and_no_tenant() -> None:
    assert all(DEVELOPMENT_PRINCIPAL.has_role(role) for role in Role)
    assert DEVELOPMENT_PRINCIPAL.tenant is None


def test_disabled_mode_authorizes_anything_and_logs_auth_disabled() -> None:
    with structlog.testing.capture_logs() as logs:
        interceptor = AuthInterceptor(_settings(auth_mode="disabled"))
    assert any(e["event"] == "auth_disabled" and e["log_level"] == "warning" for e in logs)
    assert interceptor.authorize("/semantic.v1.Admin/Heal", None) is DEVELOPMENT_PRINCIPAL


def test_interceptor_authorizes_by_the_table_before_any_handler_runs() -> None:
    interceptor = AuthInterceptor(_settings(auth_jwt_secret=SECRET))
    reader = [("authorization", f"Bearer {_token(audience=None, issuer=None)}")]
    assert interceptor.authorize("/semantic.v1.Search/Get", reader).subject == "alice"
    with pytest.raises(
        errors.PermissionDenied, match=re.escape("/semantic.v1.Search/Upsert needs role writer")
    ):
        interceptor.authorize("/semantic.v1.Search/Upsert", reader)
    with pytest.raises(errors.PermissionDenied, match="not open to any role"):
        interceptor.authorize("/semantic.v1.Search/Secret", reader)


# --- minting ------------------------------------------------------------------------


def test_minted_token_carries_the_requested_claims() -> None:
    token = mint_token(
        SECRET,
        subject="svc",
        roles=["service", "reader"],
        tenant="acme",
        audience="semantic",
        issuer="ops",
        ttl_seconds=120,
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="semantic")
    assert claims["sub"] == "svc"
    assert claims["roles"] == ["reader", "service"]
    assert (claims["tenant"], claims["iss"]) == ("acme", "ops")
    assert claims["exp"] - claims["iat"] == 120
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"algorithm": "none"}, "algorithm"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"subject": ""}, "subject"),
    ],
)
def test_mint_token_refuses_none_and_nonsense(kwargs: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"subject": "a", "roles": ["reader"], **kwargs}
    with pytest.raises(errors.InvalidArgument) as caught:
        mint_token(SECRET, **values)
    assert caught.value.field == field


def _token_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_token_arguments(parser)
    return parser.parse_args(list(argv))


def test_token_command_prints_a_token_the_server_accepts() -> None:
    settings = _settings(auth_jwt_secret=SECRET, auth_jwt_audience="semantic")
    out, err = io.StringIO(), io.StringIO()
    code = token_command(
        _token_args("--subject", "ops", "--role", "admin", "--tenant", "acme"),
        settings=settings,
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    claims = TokenVerifier.from_settings(settings).verify(out.getvalue().strip())
    assert (claims["sub"], claims["roles"], claims["tenant"]) == ("ops", ["admin"], "acme")


def test_token_command_signs_with_a_private_key_file_and_infers_the_algorithm(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    key_file = tmp_path / "private.pem"
    key_file.write_bytes(_pem_private(ec_key))
    out = io.StringIO()
    args = _token_args("--subject", "svc", "--role", "service", "--private-key-file", str(key_file))
    assert token_command(args, settings=_settings(), out=out) == 0
    token = out.getvalue().strip()
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    verifier = TokenVerifier.from_settings(
        _settings(auth_jwt_algorithms="ES256", auth_jwt_public_key=_pem_public(ec_key))
    )
    assert verifier.verify(token)["sub"] == "svc"


def test_token_command_without_a_key_says_what_to_pass() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = token_command(
        _token_args("--subject", "a", "--role", "reader"), settings=_settings(), out=out, err=err
    )
    assert code == 2
    assert out.getvalue() == ""
    assert "SEMANTIC_AUTH_JWT_SECRET" in err.getvalue()
