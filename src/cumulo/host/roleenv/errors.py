"""Errors of the role-environment builder, subclassing the shared ``cumulo.errors`` hierarchy.

- ``RoleDependenciesError`` (an ``InputError``): the role's own files are wrong (a requirements
  file that includes a missing file, a package.json that is not JSON, a shipped node_modules…).
  Retrying does not help; the message names the file, the line and the value.
- ``EnvironmentBuildError`` (a ``TemporaryError``): pip or npm ran and failed (a requirement that
  does not exist, an index that cannot be reached, a timeout). It carries the tail of the tool's
  output and the path of the full log, and the caller retries it with backoff (``RetryPolicy``).
- ``RoleInterpreterError`` (an ``InternalError``): the role interpreter, node or npm is missing or
  cannot run on this host — a broken host, not a broken role.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cumulo.errors import InputError, InternalError, TemporaryError

_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


def redact(text: str) -> str:
    """``https://user:secret@host/`` -> ``https://***@host/`` (for logs, errors and records)."""
    return _CREDENTIALS.sub(r"\1***@", text)


class RoleDependenciesError(InputError):
    """A role's dependency declaration cannot be used as it is; nothing was built."""

    code = "InvalidRoleDependencies"


class RoleInterpreterError(InternalError):
    """The role interpreter or the Node.js toolchain is missing or unusable on this host."""

    code = "RoleToolchainUnavailable"


class EnvironmentBuildError(TemporaryError):
    """pip or npm failed to build a role environment; nothing half-built was left in use."""

    code = "RoleEnvironmentBuildFailed"

    def __init__(
        self,
        *,
        role: str,
        kind: str,
        digest: str,
        command: Sequence[str],
        returncode: int | None,
        output_tail: str,
        log_path: str | None,
        reason: str | None = None,
        retry_after: float = 5.0,
    ) -> None:
        self.role = role
        self.kind = kind
        self.digest = digest
        self.command = tuple(redact(part) for part in command)
        self.returncode = returncode
        self.output_tail = redact(output_tail)
        self.log_path = log_path
        tool = "pip" if kind == "python" else "npm"
        if reason is None:
            reason = f"{tool} exited with status {returncode}"
        head = (
            f"Building the {kind} environment of role '{role}' failed: {reason} "
            f"(environment {digest}; command: {' '.join(self.command)})."
        )
        if log_path:
            head += f" Full output: {log_path}."
        tail = self.output_tail.rstrip()
        message = head + (f"\nLast lines of {tool}'s output:\n{tail}" if tail else "")
        super().__init__(message, retry_after=retry_after)
