"""The dashboard: one static page (``api/dashboard/``: HTML, CSS and plain JavaScript, no build
step) served by the management API at ``/dashboard/``. The files carry no data and need no
token; the page calls the same ``/v1`` API as the CLI with the bearer token the user gives it
(``cumulo dashboard`` prints a link with the token in the URL fragment, which browsers never
send to a server; the page keeps it in ``sessionStorage`` and removes it from the address).

Every response carries a strict Content-Security-Policy (scripts and styles only from the API's
own origin, no inline code, no framing), and the script sets every API value as text.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

FILES = Path(__file__).with_name("dashboard")
TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "icon.svg": "image/svg+xml",
}
PUBLIC_PATHS = frozenset(
    {"/", "/favicon.ico", "/dashboard/", *(f"/dashboard/{name}" for name in TYPES)}
)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def _root(request: Request) -> Response:
    return RedirectResponse("/dashboard/", status_code=307)


async def _favicon(request: Request) -> Response:
    return RedirectResponse("/dashboard/icon.svg", status_code=301)


async def _file(request: Request) -> Response:
    name = request.path_params.get("name") or "index.html"
    if name not in TYPES:  # only these files: no path ever reaches the filesystem
        return Response("Not Found", status_code=404, media_type="text/plain")
    return Response((FILES / name).read_bytes(), media_type=TYPES[name], headers=HEADERS)


def routes() -> list[Route]:
    return [
        Route("/", _root, methods=["GET"]),
        Route("/favicon.ico", _favicon, methods=["GET"]),
        Route("/dashboard/", _file, methods=["GET"]),
        Route("/dashboard/{name}", _file, methods=["GET"]),
    ]
