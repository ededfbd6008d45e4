"""The domain exception tree shared by every service.

    SemanticError                      base; never raised directly
    ├── InvalidArgument(field, problem)   the client sent something wrong
    ├── NotFound(kind, key)               the thing asked for does not exist
    ├── AlreadyExists(kind, key)          a create collided with an existing thing
    ├── FailedPrecondition(reason)        the system is not in a state to do it
    ├── Unauthenticated(reason)           no or bad credentials
    ├── PermissionDenied(reason)          credentials lack the role or tenant
    ├── Overloaded(resource)              a limit is reached; retry later
    ├── DependencyUnavailable(dependency, reason)  PostgreSQL, NATS or the embedder is down
    └── BootstrapError                    start-up cannot proceed
        └── MigrationChecksumMismatch(name, recorded, actual)

Adapters catch third-party exceptions and re-raise one of these with ``from``;
the gRPC layer maps them to status codes in exactly one table (``grpc_errors``).
"""

from __future__ import annotations


class SemanticError(Exception):
    """Base of every error this project raises on purpose."""


class InvalidArgument(SemanticError):
    """A request field is missing, malformed or out of bounds."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFound(SemanticError):
    """The addressed entity does not exist."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} not found: {key}")


class AlreadyExists(SemanticError):
    """A create collided with an existing entity."""

    def __init__(self, kind: str, key: str) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} already exists: {key}")


class FailedPrecondition(SemanticError):
    """The operation is valid but the system is not in a state to perform it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Unauthenticated(SemanticError):
    """Credentials are missing, expired or invalid."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PermissionDenied(SemanticError):
    """Credentials are valid but do not allow this operation."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class Overloaded(SemanticError):
    """A configured limit is reached; the caller should back off and retry."""

    def __init__(self, resource: str) -> None:
        self.resource = resource
        super().__init__(f"overloaded: {resource}; retry later")


class DependencyUnavailable(SemanticError):
    """A dependency (PostgreSQL, NATS, the embedder) cannot be reached."""

    def __init__(self, dependency: str, reason: str) -> None:
        self.dependency = dependency
        self.reason = reason
        super().__init__(f"{dependency} unavailable: {reason}")


class BootstrapError(SemanticError):
    """Start-up cannot proceed (schema, configuration, dependencies)."""


class MigrationChecksumMismatch(BootstrapError):
    """An already-applied migration file was changed after it was applied."""

    def __init__(self, name: str, recorded: str, actual: str) -> None:
        self.name = name
        self.recorded = recorded
        self.actual = actual
        super().__init__(
            f"migration {name} was changed after it was applied "
            f"(recorded sha256 {recorded[:12]}, file now {actual[:12]}); "
            "applied migrations must never be edited: restore the file and add a new migration"
        )
