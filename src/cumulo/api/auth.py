"""Bearer-token authentication of the management API.

The token is created at the first start, 32 random bytes (urlsafe base64), in
``<data dir>/api-token`` with mode 0600 (created with ``O_EXCL``, so two starts cannot race to
different tokens). Every request but ``GET /openapi.json``, ``GET /v1/health`` and the
dashboard's static files (``api.dashboard``: no data in them) must carry
``Authorization: Bearer <token>``; anything else gets 401 ``AuthenticationFailed``.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from cumulo.api import dashboard
from cumulo.api.problems import problem_response
from cumulo.errors import AuthError

TOKEN_FILE = "api-token"
PUBLIC_PATHS = frozenset({"/openapi.json", "/v1/health"}) | dashboard.PUBLIC_PATHS


def ensure_token(data_dir: str | os.PathLike[str]) -> str:
    """The API token of ``data_dir``, created (0600) when there is none yet."""
    path = Path(data_dir) / TOKEN_FILE
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            os.chmod(path, 0o600)
        token = path.read_text(encoding="ascii").strip()
        if token:
            return token
        os.unlink(path)
        return ensure_token(data_dir)
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return token


class BearerAuth:
    """ASGI middleware: refuse HTTP requests without the right bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        header = b""
        for key, value in scope["headers"]:
            if key == b"authorization":
                header = value
                break
        scheme, _, given = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
            reason = "carries no bearer token" if not header else "carries a wrong token"
            response = problem_response(
                AuthError(
                    f"The request {reason}; send 'Authorization: Bearer <token>' with the token "
                    f"in the data directory's {TOKEN_FILE} file."
                )
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
