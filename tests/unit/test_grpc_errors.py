"""The error table: every domain error maps to its status code, nothing else leaks."""

from collections.abc import Callable

import grpc
import pytest

from semantic.common import errors
from semantic.common.grpc_errors import STATUS_TABLE, Rewrapped, status_for

CASES = [
    (errors.InvalidArgument("texts[3]", "must not be empty"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound("node", "slug=about-us"), grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists("space", "minilm@1"), grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition("no previous space"), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Unauthenticated("token expired"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("role reader may not upsert"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.Overloaded("embed queue"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.DependencyUnavailable("postgresql", "refused"), grpc.StatusCode.UNAVAILABLE),
    (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED),
]


@pytest.mark.parametrize(("exc", "code"), CASES, ids=lambda v: type(v).__name__)
def test_domain_error_maps_to_its_status_code(exc: Exception, code: grpc.StatusCode) -> None:
    assert status_for(exc)[0] is code


def test_every_table_row_is_exercised() -> None:
    covered = {type(exc) for exc, _ in CASES}
    assert {kind for kind, _ in STATUS_TABLE} <= covered


def test_invalid_argument_message_names_the_field_and_the_problem() -> None:
    code, message = status_for(errors.InvalidArgument("top_k", "must be between 1 and 1000"))
    assert code is grpc.StatusCode.INVALID_ARGUMENT
    assert message == "top_k: must be between 1 and 1000"


def test_unknown_exception_is_internal_and_hides_its_details() -> None:
    code, message = status_for(KeyError("secret column name"))
    assert code is grpc.StatusCode.INTERNAL
    assert "secret" not in message


def test_subclass_of_a_domain_error_keeps_the_parent_code() -> None:
    class EmptyText(errors.InvalidArgument):
        pass

    assert status_for(EmptyText("texts[0]", "empty"))[0] is grpc.StatusCode.INVALID_ARGUMENT


def test_checksum_mismatch_message_names_the_file_and_the_remedy() -> None:
    exc = errors.MigrationChecksumMismatch("002_nodes.sql", "a" * 64, "b" * 64)
    assert "002_nodes.sql" in str(exc)
    assert "never be edited" in str(exc)


def test_rewrapped_makes_a_method_wrapping_once_and_again_for_another_handler() -> None:
    async def behave(request: object, context: object) -> object:
        return request

    first = grpc.unary_unary_rpc_method_handler(behave)
    other = grpc.unary_unary_rpc_method_handler(behave)
    made: list[str] = []

    def make(tag: str) -> Callable[[], grpc.RpcMethodHandler]:
        def build() -> grpc.RpcMethodHandler:
            made.append(tag)
            return grpc.unary_unary_rpc_method_handler(behave)

        return build

    kept = Rewrapped()
    wrapped = kept.get("/s.S/M", first, make("a"))
    assert kept.get("/s.S/M", first, make("b")) is wrapped
    assert made == ["a"]
    # Another server's handler for the same method name is not served the first wrapping.
    again = kept.get("/s.S/M", other, make("c"))
    assert again is not wrapped
    assert made == ["a", "c"]
    assert kept.get("/s.S/N", first, make("d")) is not wrapped
    assert made == ["a", "c", "d"]
