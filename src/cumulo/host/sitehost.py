"""The hosted web site of a web role: gunicorn for WSGI apps, uvicorn for ASGI apps.

Run by the role interpreter as ``python -m cumulo_sitehost`` (this file, copied into the host's
runtime directory beside the servers' packages). Configuration comes from the environment:
``CUMULO_SITE_KIND`` (``wsgi``/``asgi``), ``CUMULO_SITE_APP`` (``module:attr``, a trailing ``()``
calls it), ``CUMULO_SITE_DIR`` (imported from there), ``CUMULO_SITE_BIND`` (``addr:port`` list,
comma-separated: the site's http and https endpoints), ``CUMULO_SITE_WORKERS`` and
``CUMULO_SITE_THREADS`` (WSGI: gunicorn ``gthread`` workers and threads per worker),
``CUMULO_STOP_GRACE`` (seconds). ``CUMULO_SITE_FDS`` lists listening sockets the agent bound
for the site (so a limited role can serve on a port below 1024); without it the site binds
``CUMULO_SITE_BIND`` itself. ``CUMULO_SITE_TLS`` (JSON ``{"addr:port": [certfile, keyfile]}``)
names the listeners of https endpoints: those serve TLS with that certificate and key, every
other listener serves plain HTTP.

TLS is chosen per listener inside one server, so a site with http and https bindings is still
one process tree with one app, one lifespan and one SDK connection: uvicorn gets one asyncio
server per socket, each with its own ``ssl`` context (``ListenerTLSServer.startup``); gunicorn,
whose ssl settings hold for a whole arbiter, gets a connection class that wraps connections
accepted on a TLS listener with that listener's context and marks their requests ``https``
(``serve_tls_per_listener``). ``wsgi.url_scheme`` / ``scope["scheme"]`` is ``https`` on TLS
listeners.

- ASGI: uvicorn with uvloop and httptools, one process.
- WSGI: gunicorn with ``gthread`` workers (``CUMULO_SITE_WORKERS`` processes × threads);
  ``CUMULO_SITE_WSGI_SERVER=uvicorn`` serves WSGI through a2wsgi in uvicorn instead.

Both servers are made to send a response's header block together with its first body bytes, in
one ``send``: a site killed between two writes would otherwise leave a client (or the load
balancer) holding headers without their body, an answer nobody can replay.

When the server listens it tells the agent (``started``) through the SDK, and the instance
becomes Ready. Standard library + the servers only; it never imports the rest of cumulo.

VirtualApplications and VirtualDirectories: ``CUMULO_SITE_MOUNTS`` (JSON list of ``{"path",
"kind": "wsgi" | "asgi" | "static", "dir", "app"}``) mounts more apps and static folders beside
the root app, in the same server, behind a dispatcher (``Router``): the mount whose path is the
longest prefix of the request's path (by whole segments, ASCII letters in any case, as IIS
matches) takes it, with ``SCRIPT_NAME`` (WSGI) / ``root_path`` (ASGI) = the prefix as the
request spelled it and ``PATH_INFO`` the rest (ASGI keeps the full ``path``, as uvicorn and
Starlette do); the root app takes the rest. All-WSGI sites stay on gunicorn; a site with any
ASGI app runs on uvicorn, its WSGI apps through a2wsgi. A static folder is served by
``static_lookup`` + ``StaticFiles``.
"""

from __future__ import annotations

import asyncio
import email.utils
import importlib
import json
import mimetypes
import os
import socket
import ssl
import stat
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple


class SiteError(Exception):
    """A site that cannot start; the message is one sentence for the site's log."""


def load_app(spec: str, directory: str) -> Any:
    target, call = (spec[:-2], True) if spec.endswith("()") else (spec, False)
    module_name, sep, attr = target.partition(":")
    if not sep:  # wfastcgi's dotted form: module.attr
        module_name, _, attr = target.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f'Site app "{spec}" must be in format "<module>:<attribute>".')
    if directory and directory not in sys.path:
        sys.path.insert(0, directory)
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj() if call else obj


# ------------------------------------------------------------------------------------------
# VirtualApplications and VirtualDirectories: one dispatcher in front of the site's mounts

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold(path: str) -> str:
    """``path`` with ASCII letters in lower case (IIS matches URL paths without regard to their
    case; other characters are compared as they are)."""
    return path.translate(_ASCII_LOWER)


def mount_path(path: str) -> str:
    """``/api``-form of a mount's URL path: one leading slash, no trailing one; ``/`` = root."""
    return "/" + "/".join(s for s in path.replace("\\", "/").split("/") if s)


@dataclass(frozen=True)
class Mount:
    """One thing the site serves: the root app (``path`` ``/``), a VirtualApplication (``kind``
    ``wsgi``/``asgi``, ``target`` the app) or a VirtualDirectory (``static``, ``target`` a
    ``StaticFiles``)."""

    path: str
    kind: str
    target: Any = None
    directory: str = ""


class Match(NamedTuple):  # a tuple: made on every request
    mount: Mount
    prefix: str
    """The part of the request's path the mount took, as the request spelled it ('' for /)."""
    rest: str
    """The remainder: ``PATH_INFO``."""


class Router:
    """Longest-prefix match of a request path over mount paths, by whole segments and ASCII
    case-insensitively. ``wsgi=True`` takes paths as WSGI strings (bytes as latin-1): the mount
    paths are compared in that form too."""

    def __init__(self, mounts: Iterable[Mount], *, wsgi: bool = False) -> None:
        keyed = []
        for m in mounts:
            path = mount_path(m.path)
            key = path.encode("utf-8").decode("latin-1") if wsgi else path
            keyed.append((fold(key), m))
        # longest first; equal paths keep their given order (the first one wins)
        self._mounts = sorted(keyed, key=lambda item: -len(item[0]))

    def match(self, path: str) -> Match | None:
        folded = fold(path)
        for key, mount in self._mounts:
            if key == "/":
                return Match(mount, "", path)
            if folded == key or folded.startswith(key + "/"):
                return Match(mount, path[: len(key)], path[len(key) :])
        return None


# IIS serves only the file types its MIME map knows (others are 404.3): Python's built-in table
# (never the machine's /etc/mime.types, so every host answers alike) with a few web types it
# lacks, and Python sources left out.
_TYPES = mimetypes.MimeTypes(filenames=())
for _ext, _type in {
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".webp": "image/webp",
    ".map": "application/json",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
}.items():
    _TYPES.add_type(_type, _ext)
_NOT_SERVED = frozenset({".py", ".pyc", ".pyo", ".pyd", ".pyi", ".config"})
_HIDDEN = frozenset({"web.config", "__pycache__"})
DEFAULT_DOCUMENTS = ("index.html", "index.htm", "default.htm", "Default.htm")
"""What a request for a static folder's directory (ending in ``/``) is answered with, in this
order; IIS's default documents as they exist on a case-sensitive disk."""


def content_type(name: str) -> str | None:
    """The Content-Type of a static file, or None when it is not served (unknown type)."""
    ext = os.path.splitext(name)[1].lower()
    if ext in _NOT_SERVED:
        return None
    kind, encoding = _TYPES.guess_type("x" + ext, strict=False)
    return kind if encoding is None else None


@dataclass(frozen=True)
class StaticResult:
    """What ``static_lookup`` found: ``status`` 200 (``file``, its ``stat`` and ``type``), 301
    (a directory asked for without its slash: add it), 403 (a directory without a default
    document: no listing) or 404 (missing, hidden, of an unknown type, or outside the folder)."""

    status: int
    file: str = ""
    type: str = ""
    stat: os.stat_result | None = None


def static_lookup(root: str, path: str) -> StaticResult:
    """The file of the static folder ``root`` that the URL path ``path`` (below the mount,
    percent-decoded) names. Never a file outside ``root``: ``..`` segments (also from ``%2e%2e``
    or backslashes) are refused and symbolic links are followed only while they stay inside."""
    missing = StaticResult(404)
    if "\x00" in path:
        return missing
    parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or any(fold(p) in _HIDDEN for p in parts):
        return missing
    base = os.path.realpath(root)
    try:
        real = os.path.realpath(os.path.join(base, *parts))
    except (OSError, ValueError):
        return missing
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        return missing
    try:
        st = os.stat(real)
    except (OSError, ValueError):
        return missing
    if stat.S_ISDIR(st.st_mode):
        if not path.endswith("/"):
            return StaticResult(301)
        for name in DEFAULT_DOCUMENTS:
            found = static_lookup(root, path + name)
            if found.status == 200:
                return found
        return StaticResult(403)
    if not stat.S_ISREG(st.st_mode):
        return missing
    kind = content_type(real)
    if kind is None:
        return missing
    return StaticResult(200, real, kind, st)


_REASONS = {
    200: "OK",
    301: "Moved Permanently",
    304: "Not Modified",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
}
_MESSAGES = {
    403: b"Directory listing is not allowed.\n",
    404: b"Not found.\n",
    405: b"A static file answers GET and HEAD only.\n",
}


class StaticFiles:
    """The responses of one VirtualDirectory (the folder ``root``), for both server kinds:
    ``respond`` gives status, headers and either bytes or an open file, from the method, the
    path below the mount, the request's own URL path (for redirects), its query string and its
    conditional headers."""

    def __init__(self, root: str) -> None:
        self.root = root

    def respond(
        self,
        method: str,
        path: str,
        url_path: str,
        query: str = "",
        if_none_match: str | None = None,
        if_modified_since: str | None = None,
    ) -> tuple[int, list[tuple[str, str]], bytes | Any]:
        if method not in ("GET", "HEAD"):
            return self._error(405, [("Allow", "GET, HEAD")])
        found = static_lookup(self.root, path)
        if found.status == 301:
            location = urllib.parse.quote(url_path + "/", safe="/:@!$&'()*+,;=~")
            return 301, [("Location", location + (f"?{query}" if query else ""))], b""
        if found.status != 200 or found.stat is None:
            return self._error(found.status, [])
        st = found.stat
        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        headers = [("Last-Modified", modified), ("ETag", etag)]
        if _not_modified(etag, st.st_mtime, if_none_match, if_modified_since):
            return 304, headers, b""
        headers = [
            ("Content-Type", found.type),
            ("Content-Length", str(st.st_size)),
            *headers,
        ]
        if method == "HEAD":
            return 200, headers, b""
        try:
            handle = open(found.file, "rb")  # noqa: SIM115 - handed to the server, which closes it
        except OSError:
            return self._error(404, [])
        if st.st_size <= COALESCE_LIMIT:  # small: one write with the headers
            with handle:
                return 200, headers, handle.read()
        return 200, headers, handle

    @staticmethod
    def _error(
        status: int, headers: list[tuple[str, str]]
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        body = _MESSAGES.get(status, b"")
        return (
            status,
            [
                ("Content-Type", "text/plain; charset=utf-8"),
                ("Content-Length", str(len(body))),
                *headers,
            ],
            body,
        )


def _not_modified(
    etag: str, mtime: float, if_none_match: str | None, if_modified_since: str | None
) -> bool:
    if if_none_match is not None:
        tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
        return "*" in tags or etag in tags
    if if_modified_since:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
        return int(mtime) <= since
    return False


def _wsgi_text(value: str) -> str:
    """A WSGI string (bytes as latin-1) as the text it encodes (UTF-8, undecodable bytes kept
    as surrogates so they name no file)."""
    return value.encode("latin-1").decode("utf-8", "surrogateescape")


class WsgiDispatcher:
    """A WSGI app in front of WSGI apps and static folders (see ``Router``)."""

    def __init__(self, mounts: Iterable[Mount]) -> None:
        self.router = Router(mounts, wsgi=True)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        path = environ.get("PATH_INFO", "") or ""
        found = self.router.match(path)
        if found is None:
            return _wsgi_reply(start_response, *StaticFiles._error(404, []))
        script_name = environ.get("SCRIPT_NAME", "") + found.prefix
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = script_name, found.rest
        mount = found.mount
        if mount.kind != "static":
            return mount.target(environ, start_response)
        status, headers, body = mount.target.respond(
            environ.get("REQUEST_METHOD", "GET"),
            _wsgi_text(found.rest),
            _wsgi_text(script_name + found.rest),
            environ.get("QUERY_STRING", ""),
            environ.get("HTTP_IF_NONE_MATCH"),
            environ.get("HTTP_IF_MODIFIED_SINCE"),
        )
        if isinstance(body, bytes):
            return _wsgi_reply(start_response, status, headers, body)
        start_response(f"{status} {_REASONS[status]}", headers)
        wrapper = environ.get("wsgi.file_wrapper")
        return wrapper(body, 65536) if wrapper else _chunks(body)


def _wsgi_reply(
    start_response: Callable[..., Any], status: int, headers: list[tuple[str, str]], body: bytes
) -> list[bytes]:
    start_response(f"{status} {_REASONS[status]}", headers)
    return [body] if body else []


def _chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(65536):
            yield chunk


class AsgiDispatcher:
    """An ASGI app in front of ASGI apps (WSGI ones wrapped by a2wsgi) and static folders (see
    ``Router``). Lifespan events go to every ASGI app that takes them (``lifespans``), in mount
    order at startup and in reverse at shutdown; one that fails fails the site's startup."""

    def __init__(self, mounts: Iterable[Mount], lifespans: Iterable[Any] = ()) -> None:
        self.router = Router(mounts)
        self.lifespans = list(lifespans)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        path = scope.get("path", "")
        if root_path and (path == root_path or path.startswith(root_path + "/")):
            path = path[len(root_path) :]
        found = self.router.match(path)
        mount = found.mount if found is not None else None
        if scope["type"] != "http" and (mount is None or mount.kind != "asgi"):
            if scope["type"] == "websocket":
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
            return
        if found is None or mount is None:
            await _asgi_reply(send, *StaticFiles._error(404, []))
            return
        if mount.kind != "static":
            scope["root_path"] = root_path + found.prefix  # the scope is this request's own
            await mount.target(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status, out, body = await asyncio.to_thread(
            mount.target.respond,
            scope["method"],
            found.rest,
            root_path + found.prefix + found.rest,
            scope.get("query_string", b"").decode("latin-1"),
            headers.get("if-none-match"),
            headers.get("if-modified-since"),
        )
        if isinstance(body, bytes):
            await _asgi_reply(send, status, out, body)
            return
        with body:
            await send(_asgi_start(status, out))
            while chunk := await asyncio.to_thread(body.read, 65536):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        runners = [Lifespan(app, scope) for app in self.lifespans]
        await receive()  # lifespan.startup
        started: list[Lifespan] = []
        for runner in runners:
            failure = await runner.startup()
            if failure is not None:
                for done in reversed(started):
                    await done.shutdown()
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            started.append(runner)
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        for runner in reversed(started):
            await runner.shutdown()
        await send({"type": "lifespan.shutdown.complete"})


class Lifespan:
    """The lifespan conversation with one ASGI app, run in its own task. An app that returns or
    raises before answering the startup does not do lifespan (as uvicorn's ``auto``)."""

    def __init__(self, app: Any, scope: dict[str, Any]) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[Any] | None = None
        self.app, self.scope = app, scope

    async def _exchange(self, message: dict[str, Any]) -> dict[str, Any] | None:
        if self.task is None:
            self.task = asyncio.ensure_future(self.app(self.scope, self.inbox.get, self.outbox.put))
        elif self.task.done():
            return None
        await self.inbox.put(message)
        answer = asyncio.ensure_future(self.outbox.get())
        await asyncio.wait({answer, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        answer.cancel()
        return None

    async def startup(self) -> str | None:
        """None when started (or the app does not do lifespan), else the failure message."""
        answer = await self._exchange({"type": "lifespan.startup"})
        if answer is not None and answer.get("type") == "lifespan.startup.failed":
            return str(answer.get("message") or "the app's lifespan startup failed")
        return None

    async def shutdown(self) -> None:
        await self._exchange({"type": "lifespan.shutdown"})


def _asgi_start(status: int, headers: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        "type": "http.response.start",
        "status": status,
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
    }


async def _asgi_reply(send: Any, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
    await send(_asgi_start(status, headers))
    await send({"type": "http.response.body", "body": body})


def site_mounts() -> list[dict[str, str]]:
    """``CUMULO_SITE_MOUNTS``: the VirtualApplications and VirtualDirectories."""
    raw = os.environ.get("CUMULO_SITE_MOUNTS", "").strip()
    if not raw:
        return []
    try:
        mounts = json.loads(raw)
        for m in mounts:
            if not isinstance(m, dict) or m.get("kind") not in ("wsgi", "asgi", "static"):
                raise ValueError(m)
            str(m["path"]), str(m["dir"])
            if m["kind"] != "static":
                str(m["app"])
    except (ValueError, TypeError, KeyError):
        raise SiteError(
            "CUMULO_SITE_MOUNTS is not a JSON list of {path, kind (wsgi, asgi or static), dir, "
            f"app}}: {raw!r}."
        ) from None
    return [{k: str(v) for k, v in m.items()} for m in mounts]


def load_apps(apps: list[tuple[str, str]]) -> list[Any]:
    """Import each ``(handler, directory)`` app from its own directory, in order.

    One process holds them all, so two apps' modules of the same name (``app.py`` in the root's
    folder and in a VirtualApplication's) would be one module. Each app is imported with only
    its own directory on ``sys.path`` and with the modules other apps' directories provided
    out of ``sys.modules``, so each gets its own; afterwards the first app's modules keep the
    name (a later ``import app`` finds that one) and the site's log says which names are
    shared."""
    base = [p for p in sys.path if p not in {d for _, d in apps}]
    owner: dict[str, str] = {}  # top-level module name -> the directory that provided it first
    loaded = []
    shadowed: dict[str, list[str]] = {}
    for handler, directory in apps:
        folder = os.path.realpath(directory) if directory else ""
        hidden = {
            name: module
            for name, module in sys.modules.items()
            if owner.get(name.partition(".")[0], folder) != folder
        }
        for name in hidden:
            del sys.modules[name]
        before = set(sys.modules)
        sys.path[:] = ([directory] if directory else []) + base
        try:
            loaded.append(load_app(handler, ""))
        finally:
            hidden_tops = {n.partition(".")[0] for n in hidden}
            for name in set(sys.modules) - before:
                top = name.partition(".")[0]
                mine = bool(folder) and _module_in(sys.modules[name], folder)
                if top in hidden_tops:
                    # this app keeps its module objects; the name goes back to the first app
                    if mine and directory not in shadowed.get(top, []):
                        shadowed.setdefault(top, []).append(directory)
                    del sys.modules[name]
                elif mine:
                    owner.setdefault(top, folder)
            sys.modules.update(hidden)
    sys.path[:] = [d for _, d in apps if d] + base
    for name, directories in sorted(shadowed.items()):
        print(
            f"cumulo_sitehost: module '{name}' is in {owner.get(name, '?')} and in "
            f"{', '.join(directories)}; each app was imported with its own, and a later "
            f"'import {name}' finds the first.",
            file=sys.stderr,
            flush=True,
        )
    return loaded


def _module_in(module: Any, folder: str) -> bool:
    paths = [getattr(module, "__file__", None) or "", *list(getattr(module, "__path__", []) or [])]
    return any(p and os.path.realpath(p).startswith(folder + os.sep) for p in paths)


def build_site(kind: str, server: str, threads: int) -> tuple[Any, bool]:
    """The site's app from the environment: the root app alone, or a dispatcher in front of the
    root app and the mounts. Returns (app, is_asgi) for ``server`` ``gunicorn`` (WSGI only) or
    ``uvicorn`` (ASGI; WSGI apps are wrapped by a2wsgi)."""
    root_dir = os.environ.get("CUMULO_SITE_DIR", "")
    mounts = site_mounts()
    if not mounts:
        app = load_app(os.environ["CUMULO_SITE_APP"], root_dir)
        if server == "uvicorn" and kind == "wsgi":
            from a2wsgi import WSGIMiddleware

            return WSGIMiddleware(app, workers=threads), True
        return app, kind == "asgi"
    apps = [("/", kind, os.environ["CUMULO_SITE_APP"], root_dir)]
    apps += [(m["path"], m["kind"], m["app"], m["dir"]) for m in mounts if m["kind"] != "static"]
    loaded = load_apps([(handler, directory) for _, _, handler, directory in apps])
    built = [
        Mount(path, app_kind, app, directory)
        for (path, app_kind, _, directory), app in zip(apps, loaded, strict=True)
    ]
    built += [
        Mount(m["path"], "static", StaticFiles(m["dir"]), m["dir"])
        for m in mounts
        if m["kind"] == "static"
    ]
    if server == "gunicorn":
        return WsgiDispatcher(built), False
    from a2wsgi import WSGIMiddleware

    wrapped = [
        Mount(m.path, "asgi", WSGIMiddleware(m.target, workers=threads), m.directory)
        if m.kind == "wsgi"
        else m
        for m in built
    ]
    return AsgiDispatcher(wrapped, [m.target for m in built if m.kind == "asgi"]), True


def server_for(kind: str) -> str:
    """``gunicorn`` when every app of the site is WSGI (unless ``CUMULO_SITE_WSGI_SERVER`` says
    uvicorn), else ``uvicorn``."""
    kinds = {kind} | {m["kind"] for m in site_mounts() if m["kind"] != "static"}
    if kinds == {"wsgi"} and os.environ.get("CUMULO_SITE_WSGI_SERVER", "gunicorn") == "gunicorn":
        return "gunicorn"
    return "uvicorn"


def inherited() -> list[int]:
    """Listening sockets the agent bound for us (``CUMULO_SITE_FDS``: fd numbers)."""
    return [int(fd) for fd in os.environ.get("CUMULO_SITE_FDS", "").split(",") if fd.strip()]


def bind(spec: str) -> list[socket.socket]:
    fds = inherited()
    if fds:
        return [socket.socket(fileno=fd) for fd in fds]
    socks = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        host, _, port = item.rpartition(":")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
        sock.listen(2048)
        sock.set_inheritable(True)
        socks.append(sock)
    return socks


def address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"{host}:{port}"


def tls_files() -> dict[str, tuple[str, str]]:
    """``CUMULO_SITE_TLS``: listener ``addr:port`` (as its ``getsockname()`` names it) ->
    (certificate file, key file)."""
    raw = os.environ.get("CUMULO_SITE_TLS", "").strip()
    if not raw:
        return {}
    try:
        return {where: (str(files[0]), str(files[1])) for where, files in json.loads(raw).items()}
    except (ValueError, TypeError, IndexError, AttributeError):
        raise SiteError(
            f"CUMULO_SITE_TLS is not a JSON object of [certfile, keyfile]: {raw!r}."
        ) from None


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server context (TLS 1.2 or later, HTTP/1.1) with the certificate and its key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["http/1.1"])
    return context


def load_tls(files: dict[str, tuple[str, str]]) -> dict[str, ssl.SSLContext]:
    contexts = {}
    for where, (certfile, keyfile) in files.items():
        try:
            contexts[where] = tls_context(certfile, keyfile)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
            raise SiteError(
                f"cannot serve TLS on {where} with the certificate {certfile} and the key "
                f"{keyfile}: {reason}."
            ) from None
    return contexts


def coalesce_uvicorn_responses() -> None:
    """Make every uvicorn (httptools) response send its headers with its first body bytes."""
    from uvicorn.protocols.http import httptools_impl

    class Cycle(httptools_impl.RequestResponseCycle):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.held = HeldHeaders(self.transport, method="write")
            self.transport = self.held  # type: ignore[assignment]

        async def send(self, message: Any) -> None:
            if message.get("type") == "http.response.start" and not self.response_started:
                self.held.hold_next = True
            await super().send(message)
            if self.response_complete:
                self.held.flush()

    httptools_impl.RequestResponseCycle = Cycle  # type: ignore[misc]


def listener_tls_server_class() -> type[Any]:
    import uvicorn

    class ListenerTLSServer(uvicorn.Server):
        """A uvicorn server whose listeners in ``contexts`` (``addr:port``) serve TLS."""

        def __init__(self, config: Any, contexts: dict[str, ssl.SSLContext]) -> None:
            super().__init__(config)
            self.contexts = contexts
            self.listening = False

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            given = list(sockets or [])
            secure = [s for s in given if address(s) in self.contexts]
            await super().startup(sockets=[s for s in given if s not in secure])
            config = self.config
            loop = asyncio.get_running_loop()
            protocol_class: Any = config.http_protocol_class

            def create_protocol(_loop: Any = None) -> Any:
                return protocol_class(
                    config=config,
                    server_state=self.server_state,
                    app_state=self.lifespan.state,
                    _loop=_loop,
                )

            for sock in secure:
                self.servers.append(
                    await loop.create_server(
                        create_protocol,
                        sock=sock,
                        ssl=self.contexts[address(sock)],
                        backlog=config.backlog,
                    )
                )
            self.listening = True

    return ListenerTLSServer


async def serve() -> int:
    import uvicorn

    Server = listener_tls_server_class()

    coalesce_uvicorn_responses()

    kind = os.environ.get("CUMULO_SITE_KIND", "wsgi")
    app, lifespan = build_site(kind, "uvicorn", int(os.environ.get("CUMULO_SITE_THREADS", "16")))
    if kind == "wsgi" and not site_mounts():
        lifespan = False  # a lone WSGI app has none
    sockets = bind(os.environ["CUMULO_SITE_BIND"])
    contexts = load_tls(tls_files())
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        interface="asgi3",
        lifespan="auto" if lifespan else "off",
        log_level=os.environ.get("CUMULO_SITE_LOG_LEVEL", "warning"),
        access_log=False,
        server_header=False,
    )
    server = Server(config, contexts)
    task = asyncio.ensure_future(server.serve(sockets=sockets))
    while not server.listening and not task.done():
        await asyncio.sleep(0.01)
    if server.listening:
        try:
            from cumulo.sdk.environment import RoleEnvironment

            if RoleEnvironment._connect(entry_point=True):
                RoleEnvironment._after_stop = lambda: setattr(server, "should_exit", True)
                loop = asyncio.get_running_loop()

                def loop_alive(args: Any) -> None:
                    # The heartbeat is answered only once the event loop runs a callback: an
                    # app that blocks the loop makes the instance UnresponsiveRole.
                    done = threading.Event()
                    loop.call_soon_threadsafe(done.set)
                    done.wait()

                RoleEnvironment.status_check += loop_alive
                RoleEnvironment._send({"op": "started"})
        except Exception as exc:  # the site runs without the SDK; say so in the log
            print(f"cumulo_sitehost: no agent connection ({exc})", file=sys.stderr, flush=True)
    await task
    return 0


# A body up to this size leaves in the same send as the headers; a larger one is not worth the
# copy (it cannot be sent atomically anyway).
COALESCE_LIMIT = 64 * 1024


class HeldHeaders:
    """A stand-in for the socket of one gunicorn response (writes with ``sendall``) or the
    transport of one uvicorn request (``write``): after ``hold_next`` is set, the next write
    (the header block) is held back and leaves in the same write as the first body bytes, or on
    ``flush``."""

    def __init__(self, sock: Any, method: str = "sendall") -> None:
        self._sock = sock
        self._method = method
        self._held = b""
        self.hold_next = False

    def _send(self, data: bytes) -> None:
        if self.hold_next:
            self.hold_next = False
            self._held = bytes(data)
            return
        if self._held and len(data) <= COALESCE_LIMIT:
            data, self._held = self._held + data, b""
        self.flush()
        if data:
            getattr(self._sock, self._method)(data)

    sendall = write = _send

    def sendfile(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        return self._sock.sendfile(*args, **kwargs)

    def flush(self) -> None:
        if self._held:
            held, self._held = self._held, b""
            getattr(self._sock, self._method)(held)

    def close(self) -> Any:
        # a response without body bytes (HEAD, 204, an empty body) that closes its connection
        # must not lose its held headers
        self.flush()
        return self._sock.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def coalesce_gunicorn_responses() -> None:
    """Make every gunicorn response send its headers with its first body bytes."""
    from gunicorn.http import wsgi

    class Response(wsgi.Response):  # type: ignore[misc]
        def __init__(self, req: Any, sock: Any, cfg: Any) -> None:
            super().__init__(req, HeldHeaders(sock), cfg)

        def send_headers(self) -> None:
            if not self.headers_sent:
                self.sock.hold_next = True
            super().send_headers()

        def close(self) -> None:
            super().close()
            self.sock.flush()

        def can_sendfile(self) -> bool:
            # os-level sendfile would bypass TLS; the worker's cfg does not know the listener
            tls = isinstance(getattr(self.sock, "_sock", None), ssl.SSLSocket)
            return not tls and bool(super().can_sendfile())

    wsgi.Response = Response


def serve_tls_per_listener(contexts: dict[str, ssl.SSLContext]) -> None:
    """Make gunicorn's gthread worker serve TLS on the listeners in ``contexts`` only.

    gunicorn's ssl settings hold for a whole arbiter. Here a connection accepted on a TLS
    listener gets a view of the config that says ``is_ssl`` (so the connection is wrapped and
    its requests are ``https``) and whose ``ssl_context`` hook returns that listener's
    context; connections on other listeners keep the plain config."""
    from gunicorn.workers import gthread

    class ListenerTLS:
        is_ssl = True

        def __init__(self, base: Any, context: ssl.SSLContext) -> None:
            self._base = base
            self._context = context

        def __getattr__(self, name: str) -> Any:
            return getattr(self._base, name)

        def ssl_context(self, conf: Any, default_factory: Any) -> ssl.SSLContext:
            return self._context

    class TConn(gthread.TConn):  # type: ignore[misc]
        def __init__(self, cfg: Any, sock: Any, client: Any, server: Any) -> None:
            context = None
            if isinstance(server, tuple) and len(server) >= 2:
                context = contexts.get(f"{server[0]}:{server[1]}")
            super().__init__(
                cfg if context is None else ListenerTLS(cfg, context), sock, client, server
            )

    gthread.TConn = TConn


def serve_gunicorn() -> int:
    from gunicorn.app.base import BaseApplication

    coalesce_gunicorn_responses()
    serve_tls_per_listener(load_tls(tls_files()))

    app, _ = build_site(os.environ.get("CUMULO_SITE_KIND", "wsgi"), "gunicorn", 0)
    binds = [f"fd://{fd}" for fd in inherited()] or [
        b.strip() for b in os.environ["CUMULO_SITE_BIND"].split(",") if b.strip()
    ]
    grace = float(os.environ.get("CUMULO_STOP_GRACE", "30"))

    def when_ready(arbiter: Any) -> None:
        try:
            from cumulo.sdk.environment import RoleEnvironment

            if RoleEnvironment._connect(entry_point=True):
                RoleEnvironment._after_stop = lambda: os.kill(arbiter.pid, 15)
                RoleEnvironment._send({"op": "started"})
        except Exception as exc:
            print(f"cumulo_sitehost: no agent connection ({exc})", file=sys.stderr, flush=True)

    def post_fork(arbiter: Any, worker: Any) -> None:
        # Workers must not hold the arbiter's SDK connection (its thread is not theirs).
        from cumulo.sdk.environment import RoleEnvironment

        conn = RoleEnvironment._conn
        if conn is not None:
            conn._sock.close()
        RoleEnvironment._conn = None
        RoleEnvironment._env = None

    class Site(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings = {
                "bind": binds,
                "workers": int(os.environ.get("CUMULO_SITE_WORKERS", "2")),
                "worker_class": "gthread",
                "threads": int(os.environ.get("CUMULO_SITE_THREADS", "4")),
                "graceful_timeout": int(max(1, grace - 1)),
                "loglevel": os.environ.get("CUMULO_SITE_LOG_LEVEL", "warning"),
                "accesslog": None,
                "errorlog": "-",
                "when_ready": when_ready,
                "post_fork": post_fork,
                "proc_name": "cumulo-site",
                "worker_tmp_dir": os.environ.get("TMPDIR") or None,
            }
            if "control_socket_disable" in self.cfg.settings:  # gunicorn >= 25.1: no gunicornc
                settings["control_socket_disable"] = True
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            return app

    Site().run()
    return 0


def main() -> int:
    try:
        if server_for(os.environ.get("CUMULO_SITE_KIND", "wsgi")) == "gunicorn":
            return serve_gunicorn()
        try:
            import uvloop
        except ImportError:
            return asyncio.run(serve())
        return uvloop.run(serve())
    except SiteError as exc:
        print(f"cumulo_sitehost: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
