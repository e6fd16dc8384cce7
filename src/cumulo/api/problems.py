"""Errors as RFC 9457 problem+json, with the stable codes of ``cumulo.errors``.

Body: ``{"type", "title", "status", "detail", "code"}`` plus ``problems`` (file, line, message)
for a ``ModelError`` and ``operation`` for ``OperationInProgress``. ``type`` is
``https://cumulo.dev/problems/<code>``; clients should switch on ``code``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from cumulo.errors import CumuloError, InternalError, ModelError, TemporaryError
from cumulo.log import get_logger

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://cumulo.dev/problems/"


def problem_body(exc: CumuloError) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + exc.code,
        "title": exc.code,
        "status": exc.http_status,
        "detail": exc.message,
        "code": exc.code,
    }
    if isinstance(exc, ModelError):
        body["problems"] = [
            {"file": p.file, "line": p.line, "message": p.message} for p in exc.problems
        ]
    operation = getattr(exc, "operation_id", None)
    if operation:
        body["operation"] = operation
    return body


def problem_response(exc: CumuloError) -> JSONResponse:
    headers = {}
    if isinstance(exc, TemporaryError):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if exc.http_status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="cumulo"'
    return JSONResponse(
        problem_body(exc), status_code=exc.http_status, headers=headers, media_type=PROBLEM_JSON
    )


async def handle_cumulo_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CumuloError)
    return problem_response(exc)


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    get_logger(component="api").error("api.internal_error", path=request.url.path, error=repr(exc))
    return problem_response(
        InternalError(f"The request failed inside cumulo ({type(exc).__name__}); see the log.")
    )
