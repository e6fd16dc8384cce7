"""Errors of the controller, with their stable codes (subclasses of ``cumulo.errors``)."""

from __future__ import annotations

from cumulo.errors import ConflictError


class OperationInProgress(ConflictError):
    """A mutating request while another operation on the same deployment runs (HTTP 409).

    cumulo refuses instead of superseding (docs/api.md, "Concurrent operations"): only ``walk``
    and ``rollback`` act on an update in progress.
    """

    code = "OperationInProgress"

    def __init__(self, message: str, operation_id: str | None = None) -> None:
        super().__init__(message)
        self.operation_id = operation_id


class SwapNotAllowed(ConflictError):
    code = "SwapNotAllowed"


class WalkNotAllowed(ConflictError):
    code = "WalkNotAllowed"


class RollbackNotAllowed(ConflictError):
    code = "RollbackNotAllowed"
