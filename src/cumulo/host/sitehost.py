"""The hosted web site of a web role: gunicorn for WSGI apps, uvicorn for ASGI apps.

Run by the role interpreter as ``python -m cumulo_sitehost`` (this file, copied into the host's
runtime directory beside the servers' packages). Configuration comes from the environment:
``CUMULO_SITE_KIND`` (``wsgi``/``asgi``), ``CUMULO_SITE_APP`` (``module:attr``, a trailing ``()``
calls it), ``CUMULO_SITE_DIR`` (imported from there), ``CUMULO_SITE_BIND`` (``addr:port`` list,
comma-separated: the instance's http endpoints), ``CUMULO_SITE_WORKERS`` and
``CUMULO_SITE_THREADS`` (WSGI: gunicorn ``gthread`` workers and threads per worker),
``CUMULO_STOP_GRACE`` (seconds). ``CUMULO_SITE_FDS`` lists listening sockets the agent bound
for the site (so a limited role can serve on a port below 1024); without it the site binds
``CUMULO_SITE_BIND`` itself.

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
import os
import socket
import sys
import threading
from typing import Any


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


async def serve() -> int:
    import uvicorn

    coalesce_uvicorn_responses()

    kind = os.environ.get("CUMULO_SITE_KIND", "wsgi")
    app = load_app(os.environ["CUMULO_SITE_APP"], os.environ.get("CUMULO_SITE_DIR", ""))
    if kind == "wsgi":
        from a2wsgi import WSGIMiddleware

        app = WSGIMiddleware(app, workers=int(os.environ.get("CUMULO_SITE_THREADS", "16")))
    sockets = bind(os.environ["CUMULO_SITE_BIND"])
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
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve(sockets=sockets))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if server.started:
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

    wsgi.Response = Response


def serve_gunicorn() -> int:
    from gunicorn.app.base import BaseApplication

    coalesce_gunicorn_responses()

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


if __name__ == "__main__":
    sys.exit(main())
