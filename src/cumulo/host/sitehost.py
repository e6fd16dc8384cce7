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
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import socket
import ssl
import sys
import threading
from typing import Any


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
    app = load_app(os.environ["CUMULO_SITE_APP"], os.environ.get("CUMULO_SITE_DIR", ""))
    if kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        app = WSGIMiddleware(app, workers=int(os.environ.get("CUMULO_SITE_THREADS", "16")))
    sockets = bind(os.environ["CUMULO_SITE_BIND"])
    contexts = load_tls(tls_files())
    config = uvicorn.Config(
        app,
        loop="none",
        http="httptools",
        interface="asgi3",
        lifespan="auto" if kind == "asgi" else "off",
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

    app = load_app(os.environ["CUMULO_SITE_APP"], os.environ.get("CUMULO_SITE_DIR", ""))
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
        if (
            os.environ.get("CUMULO_SITE_KIND", "wsgi") == "wsgi"
            and os.environ.get("CUMULO_SITE_WSGI_SERVER", "gunicorn") == "gunicorn"
        ):
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
