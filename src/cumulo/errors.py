"""One error hierarchy for all of cumulo.

Every error carries a stable ``code`` (used by the API's problem+json ``code`` field and in docs),
an HTTP status for the management API, and an exit code for the CLI. Messages are whole sentences
that name the file, line, element and value where there is one. Only ``cumulo.cli`` turns these
into exit codes; library code raises them and never calls ``sys.exit``.

    CumuloError
    ├── InputError            bad user input; nothing was changed             (exit 2, HTTP 400)
    │   ├── ModelError        .csdef/.cscfg problems, all of them at once
    │   ├── PackageError      a package that cannot be built or read safely
    │   └── UnsupportedError  valid Azure input that cumulo refuses, with the reason
    ├── NotFoundError         a named thing does not exist                    (exit 3, HTTP 404)
    ├── ConflictError         the request clashes with the current state      (exit 4, HTTP 409)
    ├── AuthError             missing or wrong credentials                    (exit 5, HTTP 401)
    ├── TemporaryError        retry later; carries a delay                    (exit 6, HTTP 503)
    └── InternalError         a bug or a broken environment                   (exit 70, HTTP 500)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class CumuloError(Exception):
    """Base of every error cumulo raises on purpose."""

    code: str = "Internal"
    http_status: int = 500
    exit_code: int = 70

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(CumuloError):
    code = "InvalidInput"
    http_status = 400
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One problem found in a user's file: where it is and a sentence saying what is wrong."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class ModelError(InputError):
    """A service definition or configuration with one or more problems (all reported at once)."""

    code = "InvalidServiceModel"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class PackageError(InputError):
    code = "InvalidPackage"


class UnsupportedError(InputError):
    code = "Unsupported"


class NotFoundError(CumuloError):
    code = "NotFound"
    http_status = 404
    exit_code = 3


class ConflictError(CumuloError):
    code = "Conflict"
    http_status = 409
    exit_code = 4


class AuthError(CumuloError):
    code = "AuthenticationFailed"
    http_status = 401
    exit_code = 5


class TemporaryError(CumuloError):
    """Something that may work if tried again after ``retry_after`` seconds."""

    code = "TemporarilyUnavailable"
    http_status = 503
    exit_code = 6

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class InternalError(CumuloError):
    code = "Internal"
    http_status = 500
    exit_code = 70
