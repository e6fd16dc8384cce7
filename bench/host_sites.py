"""Requests per second of a hosted web role site: ASGI (uvicorn) and WSGI (gunicorn, a2wsgi).

Runs the site exactly as the host agent does (``python -m cumulo_sitehost`` with the role
interpreter and the host's runtime directory on PYTHONPATH), one process, on a loopback DIP,
and loads it with ``wrk -t1 -c64 -d5s``. Prints req/s and the ratio to the ASGI figure.
Usage: ``.venv/bin/python bench/host_sites.py`` (needs ``wrk``). Numbers are noisy on a shared
2-core machine: the output includes ``uptime``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from cumulo.host import runtime

APPS = {
    "wsgi": (
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [b'hello']\n"
    ),
    "asgi": (
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await send({'type': 'http.response.start', 'status': 200,\n"
        "                'headers': [(b'content-type', b'text/plain')]})\n"
        "    await send({'type': 'http.response.body', 'body': b'hello'})\n"
    ),
}


def free_port(address: str) -> int:
    with socket.socket() as s:
        s.bind((address, 0))
        return int(s.getsockname()[1])


def measure(kind: str, data: Path, py: str, wsgi_server: str = "gunicorn") -> float:
    (data / f"{kind}app.py").write_text(APPS[kind])
    address = "127.1.200.1"
    port = free_port(address)
    env = {
        "PYTHONPATH": str(data / "runtime" / "python"),
        "CUMULO_SITE_KIND": kind,
        "CUMULO_SITE_APP": f"{kind}app:app",
        "CUMULO_SITE_DIR": str(data),
        "CUMULO_SITE_BIND": f"{address}:{port}",
        "CUMULO_SITE_WSGI_SERVER": wsgi_server,
        "CUMULO_SITE_WORKERS": "2",
        "PATH": "/usr/bin:/bin",
    }
    proc = subprocess.Popen([py, "-m", "cumulo_sitehost"], env=env, cwd=data)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((address, port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        out = subprocess.run(
            ["wrk", "-t1", "-c64", "-d5s", f"http://{address}:{port}/"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        assert m, out
        return float(m.group(1))
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    data = Path(tempfile.mkdtemp(prefix="cumulo-bench-"))
    try:
        runtime.build(data)
        py = runtime.role_interpreter()
        print(f"role interpreter {py}")
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
        results = {
            "asgi": measure("asgi", data, py),
            "wsgi (gunicorn gthread 2x4)": measure("wsgi", data, py, "gunicorn"),
            "wsgi (uvicorn + a2wsgi)": measure("wsgi", data, py, "uvicorn"),
        }
        for kind, rps in results.items():
            print(f"{kind:30} {rps:9,.0f} req/s  ({rps / results['asgi']:.2f} x ASGI)")
        print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("CUMULO_LOG_LEVEL", "warning")
    main()
