"""Serving the management API with uvicorn, and telling local clients where it is.

- ``write_endpoint(data_dir, url, ca)``: ``<data dir>/api.json`` = ``{"url": ..., "ca": ...}`` so
  the CLI finds a local platform through its data directory (the token is in ``api-token``
  beside it; ``ca``, with TLS, the certificate to verify it with).
- ``ThreadedServer``: uvicorn in a background thread on a real socket (port 0 allowed), for
  tests and for embedding; ``url`` is known once ``start()`` returns.
Loopback by default: the API listens on 127.0.0.1 unless told otherwise, and on any other
address only with TLS (``cumulo serve --tls-cert/--tls-key``) or an explicit
``--allow-plain-http``: the bearer token must not cross a network in clear.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from cumulo.errors import TemporaryError

ENDPOINT_FILE = "api.json"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8283


def write_endpoint(
    data_dir: str | os.PathLike[str], url: str, ca: str | os.PathLike[str] | None = None
) -> Path:
    """``api.json``: the API's URL, the serving process, and (TLS) the certificate file local
    clients verify it with."""
    path = Path(data_dir) / ENDPOINT_FILE
    tmp = path.with_name(path.name + ".tmp")
    info: dict[str, Any] = {"url": url, "pid": os.getpid()}
    if ca is not None:
        info["ca"] = str(Path(ca).resolve())
    tmp.write_text(json.dumps(info) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def bound_url(server: uvicorn.Server) -> str:
    """``http(s)://host:port`` of a started uvicorn server (the real port when 0 was asked)."""
    scheme = "https" if server.config.ssl_certfile else "http"
    for s in server.servers:
        for sock in s.sockets:
            host, port = sock.getsockname()[:2]
            if ":" in host:
                host = f"[{host}]"
            return f"{scheme}://{host}:{port}"
    raise TemporaryError("The API server has no listening socket yet.")


def uvicorn_config(
    app: Any, host: str, port: int, tls: tuple[str, str] | None = None
) -> uvicorn.Config:
    """uvicorn's settings for the API; ``tls`` = (certificate chain file, key file)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )


class ThreadedServer:
    """Run an ASGI app with uvicorn in a thread; ``with ThreadedServer(app) as url: ...``."""

    def __init__(self, app: Any, host: str = DEFAULT_HOST, port: int = 0) -> None:
        self.server = uvicorn.Server(uvicorn_config(app, host, port))
        self.thread = threading.Thread(target=self.server.run, name="cumulo-api", daemon=True)
        self.url = ""

    def start(self, timeout: float = 10.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise TemporaryError("The API server did not start.")
            time.sleep(0.01)
        self.url = bound_url(self.server)
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
