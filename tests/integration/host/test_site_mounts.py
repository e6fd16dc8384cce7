"""A hosted site with VirtualApplications and VirtualDirectories: a real host agent starts the
site's one server (gunicorn when every app is WSGI, uvicorn when one is ASGI), which serves the
root app at ``/``, other apps (from their own folders, with modules of the same name) under
``/api`` and ``/api/v2``, and static files under ``/static`` and ``/api/docs``."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from cumulo.state.spec import EndpointSpec, SiteAppSpec, SiteSpec, VirtualDirectorySpec

from .conftest import observed, run, running_agent, spec, state_is, wait_for, write_role

ROOT = {
    "app.py": """
        def app(environ, start_response):
            body = f"root {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
    """,
    "static/x.css": "body { color: red }",
    "static/sub/index.html": "<p>index</p>",
    "docs/readme.txt": "read me",
    "secret.txt": "not for the web",
}
WSGI_API = """
    import helper
    def app(environ, start_response):
        body = f"{helper.NAME} {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
"""
ASGI_API = """
    import helper
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = f"{helper.NAME} {scope['root_path']!r} {scope['path']!r}".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
"""


def http_get(address: str, port: int, path: str, method: str = "GET") -> tuple[int, bytes, bytes]:
    with socket.create_connection((address, port), timeout=10) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head, body


@pytest.mark.parametrize("api_kind", ["wsgi", "asgi"], ids=["all-wsgi-gunicorn", "mixed-uvicorn"])
def test_site_serves_root_virtual_applications_and_directories(
    tmp_path: Path, data_dir: Path, host_id: str, api_kind: str
) -> None:
    files = dict(ROOT)
    files["sitesroot/Api/app.py"] = WSGI_API if api_kind == "wsgi" else ASGI_API
    files["sitesroot/Api/helper.py"] = "NAME = 'api'"
    files["sitesroot/Api/v2/app.py"] = WSGI_API
    files["sitesroot/Api/v2/helper.py"] = "NAME = 'v2'"
    source = tmp_path / "web"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
    write_role(source, files)
    s = spec(
        source,
        "Web",
        endpoints=(EndpointSpec("Http", "input", "http", 80, "*"),),
        site=SiteSpec(
            "Web",
            "wsgi",
            "app:app",
            apps=(
                SiteAppSpec("/api", api_kind, "app:app", "sitesroot/Api"),  # type: ignore[arg-type]
                SiteAppSpec("/api/v2", "wsgi", "app:app", "sitesroot/Api/v2"),
            ),
            directories=(
                VirtualDirectorySpec("/static", "static"),
                VirtualDirectorySpec("/api/docs", "docs"),
            ),
        ),
    )

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"), 30, "ReadyRole")
            ep = next(e for e in observed(agent, s.key)["endpoints"] if e["name"] == "Http")
            where = (ep["address"], int(ep["local_port"]))

            async def get(path: str, method: str = "GET") -> tuple[int, bytes, bytes]:
                return await asyncio.to_thread(http_get, *where, path, method)

            assert (await get("/hello"))[2] == b"root '' '/hello'"
            assert (await get("/apiary"))[2] == b"root '' '/apiary'"
            if api_kind == "wsgi":
                assert (await get("/api/users/7"))[2] == b"api '/api' '/users/7'"
                assert (await get("/API/x"))[2] == b"api '/API' '/x'"
            else:  # ASGI: root_path is the prefix, path stays whole
                assert (await get("/api/users/7"))[2] == b"api '/api' '/api/users/7'"
                assert (await get("/API/x"))[2] == b"api '/API' '/API/x'"
            # nested: the longer prefix wins; its own helper.py, though the name is shared
            assert (await get("/api/v2/users"))[2] == b"v2 '/api/v2' '/users'"
            status, head, data = await get("/static/x.css")
            assert (status, data) == (200, b"body { color: red }")
            assert b"\r\nContent-Type: text/css" in head or b"\r\ncontent-type: text/css" in head
            assert (await get("/static/x.css", "HEAD"))[2] == b""
            assert (await get("/api/docs/readme.txt"))[2] == b"read me"
            assert (await get("/static/sub/"))[2] == b"<p>index</p>"
            status, head, _ = await get("/static/sub")
            assert status == 301 and b"/static/sub/" in head
            assert (await get("/static/"))[0] == 403  # no listing
            for escape in (
                "/static/../secret.txt",
                "/static/%2e%2e/secret.txt",
                "/static/..%2fsecret.txt",
            ):
                status, _, data = await get(escape)
                assert status == 404 and b"not for the web" not in data, escape
            assert (await get("/static/x.css", "POST"))[0] == 405
            assert observed(agent, s.key)["state"] == "ReadyRole"

    run(body())
