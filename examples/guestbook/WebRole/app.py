"""The guestbook's web role: a WSGI app the platform hosts (web.config names ``app.application``).

Routes:
    GET  /                  the entries, newest first, and the form to sign
    POST /sign              sign (multipart: name, message, optional picture) -> 303 to /
    GET  /pictures/NAME     a picture, streamed from its blob
    GET  /thumbnails/NAME   a thumbnail the worker role made
    GET  /static/style.css  the stylesheet
    GET  /static/favicon.svg  the icon every page names (browsers ask for /favicon.ico otherwise)
    GET  /static/live.js    updates the entries in place while a thumbnail is on its way
    GET  /health            200 while the process serves (the custom load-balancer probe)

Visitors get a short page with one sentence for every failure: 400 for a form that cannot be
accepted, 413 for one that is too large, 503 while storage cannot be reached, 500 otherwise
(the details go to the log, not to the visitor).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from entries import BODY_MAX, PICTURE_TYPES, blob_extension, validate
from formdata import FormError, parse_form
from pages import error_page, index_page
from webstore import PICTURES, THUMBNAILS, GuestbookStore, connection_string, log, store_for

StartResponse = Callable[..., Any]
Environ = dict[str, Any]

STATIC = Path(__file__).resolve().parent / "static"
STATIC_TYPES = {
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "live.js": "text/javascript; charset=utf-8",
}
"""The files under /static/ (no other name is looked up on disk)."""
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
    ("Content-Security-Policy", "default-src 'self'; img-src 'self'; form-action 'self'"),
]


class Problem(Exception):
    """A request that ends with an error page."""

    def __init__(
        self, status: int, title: str, sentence: str, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        super().__init__(sentence)
        self.status, self.title, self.sentence = status, title, sentence
        self.headers = list(headers)


_REASONS = {
    200: "OK",
    303: "See Other",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def instance_name() -> str:
    return os.environ.get("CUMULO_ROLE_INSTANCE_ID") or f"pid {os.getpid()}"


def _read_body(environ: Environ) -> bytes:
    stream = environ["wsgi.input"]
    raw_length = environ.get("CONTENT_LENGTH") or ""
    if raw_length.strip():
        try:
            length = int(raw_length)
        except ValueError:
            raise Problem(
                400, "Bad request", "The request's Content-Length is not a number."
            ) from None
        if length > BODY_MAX:
            raise Problem(
                413,
                "Too large",
                f"The form is {length / 1048576:.1f} MB; at most {BODY_MAX // 1048576} MB "
                "are accepted. Choose a smaller picture.",
            )
        chunks, left = [], length
        while left > 0:
            chunk = stream.read(min(left, 1 << 16))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        if left:
            raise Problem(400, "Bad request", "The form arrived incomplete; please send it again.")
        return b"".join(chunks)
    body = stream.read(BODY_MAX + 1)
    if len(body) > BODY_MAX:
        raise Problem(
            413,
            "Too large",
            f"The form is larger than {BODY_MAX // 1048576} MB; choose a smaller picture.",
        )
    return bytes(body)


class Guestbook:
    """The WSGI application. ``store`` is a fixed store (tests) or None: from the role setting."""

    def __init__(self, store: GuestbookStore | None = None) -> None:
        self._store = store

    def store(self) -> GuestbookStore:
        return self._store if self._store is not None else store_for(connection_string())

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET").upper()
        path = environ.get("PATH_INFO") or "/"
        try:
            status, headers, body = self.route(method, path, environ)
        except Problem as problem:
            status, headers, body = self.problem(problem)
        except FormError as exc:
            title = "Too large" if exc.status == 413 else "Cannot sign"
            status, headers, body = self.problem(Problem(exc.status, title, exc.sentence))
        except AzureError as exc:
            log(
                "guestbook.storage_unavailable",
                path=path,
                error=type(exc).__name__,
                detail=str(exc)[:300],
            )
            status, headers, body = self.problem(
                Problem(
                    503,
                    "Storage unavailable",
                    "The guestbook's storage cannot be reached right now; nothing was saved. "
                    "Please try again in a moment.",
                )
            )
        except Exception as exc:
            ref = uuid.uuid4().hex[:8]
            log("guestbook.error", path=path, ref=ref, error=repr(exc)[:300])
            status, headers, body = self.problem(
                Problem(500, "Something went wrong", f"The request failed (reference {ref}).")
            )
        headers = [*headers, *_SECURITY_HEADERS]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        if method == "HEAD":
            return []
        if isinstance(body, bytes):
            return [body]
        return body

    # -- routing ---------------------------------------------------------------------------
    def route(
        self, method: str, path: str, environ: Environ
    ) -> tuple[int, list[tuple[str, str]], bytes | Iterator[bytes]]:
        reading = method in ("GET", "HEAD")
        if path == "/health":
            if not reading:
                raise self._not_allowed(method)
            return 200, [("Content-Type", "text/plain"), ("Cache-Control", "no-store")], b"ok\n"
        if path in ("/", "/index.html"):
            if not reading:
                raise self._not_allowed(method)
            return self.page()
        if path == "/sign":
            if method != "POST":
                raise self._not_allowed(method, "POST")
            return self.sign(environ)
        if path.startswith("/static/") and path.removeprefix("/static/") in STATIC_TYPES:
            if not reading:
                raise self._not_allowed(method)
            name = path.removeprefix("/static/")
            data = _static(name)
            return (
                200,
                [
                    ("Content-Type", STATIC_TYPES[name]),
                    ("Cache-Control", "max-age=3600"),
                    ("Content-Length", str(len(data))),
                ],
                data,
            )
        for prefix, container in (("/pictures/", PICTURES), ("/thumbnails/", THUMBNAILS)):
            if path.startswith(prefix):
                if not reading:
                    raise self._not_allowed(method)
                return self.blob(container, path[len(prefix) :])
        raise Problem(404, "Not found", f"There is no page at {path}.")

    @staticmethod
    def _not_allowed(method: str, allow: str = "GET, HEAD") -> Problem:
        return Problem(
            405, "Not allowed", f"{method} is not allowed here.", headers=[("Allow", allow)]
        )

    def problem(self, problem: Problem) -> tuple[int, list[tuple[str, str]], bytes]:
        body = error_page(problem.status, problem.title, problem.sentence, instance=instance_name())
        headers = [
            ("Content-Type", "text/html; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
        ]
        return problem.status, [*headers, *problem.headers], body

    # -- pages -----------------------------------------------------------------------------
    def page(self) -> tuple[int, list[tuple[str, str]], bytes]:
        body = index_page(self.store().recent(), instance=instance_name())
        return 200, _html_headers(body), body

    def sign(self, environ: Environ) -> tuple[int, list[tuple[str, str]], bytes]:
        body = _read_body(environ)
        form = parse_form(environ.get("CONTENT_TYPE", ""), body)
        try:
            signature = validate(form)
        except FormError as exc:
            # Show the guestbook again with the sentence and what the visitor wrote.
            store = self.store()
            try:
                entries = store.recent()
            except AzureError:
                entries = []
            page = index_page(
                entries,
                instance=instance_name(),
                error=exc.sentence,
                values={k: form.fields.get(k, "") for k in ("name", "message")},
            )
            return exc.status, _html_headers(page), page
        self.store().sign(signature)
        return 303, [("Location", "/"), ("Content-Length", "0"), ("Cache-Control", "no-store")], b""

    def blob(self, container: str, name: str) -> tuple[int, list[tuple[str, str]], Iterator[bytes]]:
        extension = blob_extension(name)
        if extension is None:
            raise Problem(404, "Not found", "There is no such picture.")
        try:
            size, chunks = self.store().open_blob(container, name)
        except ResourceNotFoundError:
            raise Problem(
                404, "Not found", "There is no such picture (it may have been removed)."
            ) from None
        headers = [
            ("Content-Type", PICTURE_TYPES[extension]),
            ("Content-Length", str(size)),
            ("Cache-Control", "public, max-age=86400, immutable"),
        ]
        return 200, headers, chunks


@functools.cache
def _static(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def _html_headers(body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]


def make_app(conn: str | None = None) -> Guestbook:
    """A guestbook on ``conn``, or (None) on the role's StorageConnectionString setting."""
    return Guestbook(GuestbookStore(conn) if conn is not None else None)


application = make_app()
"""What web.config's WSGI_HANDLER names."""
