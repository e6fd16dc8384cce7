"""A site's VirtualApplications and VirtualDirectories behind one dispatcher (``cumulo_sitehost``):
the prefix router, SCRIPT_NAME/PATH_INFO (WSGI) and root_path (ASGI), lifespans, static files
and every way out of a static folder, and apps of one process with modules of the same name."""

from __future__ import annotations

import asyncio
import email.utils
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cumulo.host import sitehost
from cumulo.host.sitehost import (
    AsgiDispatcher,
    Mount,
    Router,
    StaticFiles,
    WsgiDispatcher,
    fold,
    static_lookup,
)
from cumulo.state.spec import SiteAppSpec, SiteSpec, VirtualDirectorySpec

# ---------------------------------------------------------------------------- the router


def route(mounts: list[str], path: str, wsgi: bool = False) -> tuple[str, str, str] | None:
    found = Router([Mount(m, "wsgi", m) for m in mounts], wsgi=wsgi).match(path)
    return None if found is None else (found.mount.target, found.prefix, found.rest)


def test_the_longest_prefix_by_whole_segments_wins() -> None:
    mounts = ["/", "/api", "/api/v2", "/static"]
    assert route(mounts, "/") == ("/", "", "/")
    assert route(mounts, "/index.html") == ("/", "", "/index.html")
    assert route(mounts, "/api") == ("/api", "/api", "")
    assert route(mounts, "/api/") == ("/api", "/api", "/")
    assert route(mounts, "/api/users/7") == ("/api", "/api", "/users/7")
    assert route(mounts, "/api/v2/users") == ("/api/v2", "/api/v2", "/users")
    assert route(mounts, "/api/v20") == ("/api", "/api", "/v20")
    assert route(mounts, "/apix/y") == ("/", "", "/apix/y")
    assert route(mounts, "/static/site.css") == ("/static", "/static", "/site.css")


def test_ascii_case_does_not_matter_and_the_prefix_keeps_the_requests_spelling() -> None:
    mounts = ["/", "/Api"]
    assert route(mounts, "/API/Users") == ("/Api", "/API", "/Users")
    assert route(mounts, "/api") == ("/Api", "/api", "")
    # only ASCII letters fold: 'É' and 'é' are different paths
    assert route(["/", "/café"], "/CAFÉ") == ("/", "", "/CAFÉ")
    assert route(["/", "/café"], "/CAFé/x") == ("/café", "/CAFé", "/x")


def test_without_a_root_app_an_unmatched_path_has_no_mount() -> None:
    assert route(["/api"], "/other") is None


def test_wsgi_paths_are_bytes_as_latin1_and_mounts_are_compared_in_that_form() -> None:
    wsgi_path = "/café/menu".encode().decode("latin-1")
    assert route(["/", "/café"], wsgi_path, wsgi=True) == (
        "/café",
        "/café".encode().decode("latin-1"),
        "/menu",
    )


def test_mount_paths_are_normalised() -> None:
    assert sitehost.mount_path("api\\v2/") == "/api/v2"
    assert sitehost.mount_path("//api//") == "/api"
    assert sitehost.mount_path("/") == "/"


SEGMENT = st.text(alphabet="aAbB-é.", min_size=1, max_size=3)
MOUNT = st.lists(SEGMENT, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))


@given(
    st.lists(MOUNT, max_size=6, unique_by=fold),
    st.lists(SEGMENT, max_size=5),
    st.booleans(),
)
def test_router_property(mounts: list[str], segments: list[str], slash: bool) -> None:
    """The router picks, among the mounts whose segments begin the path's (ASCII case
    ignored), the one with the most segments; prefix + rest is the path; the root takes what
    no other mount does."""
    path = "/" + "/".join(segments) + ("/" if slash and segments else "")
    found = Router([Mount(m, "wsgi", m) for m in ["/", *mounts]]).match(path)
    assert found is not None
    parts = fold(path).split("/")[1:]
    candidates = [m for m in mounts if fold(m).split("/")[1:] == parts[: m.count("/")]]
    if not candidates:
        assert (found.mount.target, found.prefix, found.rest) == ("/", "", path)
        return
    best = max(candidates, key=lambda m: m.count("/"))
    assert found.mount.target == best
    assert found.prefix + found.rest == path
    assert fold(found.prefix) == fold(best)
    assert found.rest == "" or found.rest.startswith("/")


# ---------------------------------------------------------------------------- WSGI


def echo_wsgi(name: str) -> Any:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = f"{name} {environ['SCRIPT_NAME']!r} {environ['PATH_INFO']!r}".encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    return app


def wsgi_call(
    app: Any, path: str, method: str = "GET", **extra: str
) -> tuple[str, dict[str, str], bytes]:
    got: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        got["status"], got["headers"] = status, dict(headers)

    environ = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": extra.pop("query", ""),
        **extra,
    }
    body = app(environ, start_response)
    data = b"".join(body)
    if hasattr(body, "close"):
        body.close()
    return got["status"], got["headers"], data


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("body { color: red }")
    (root / "app.js").write_text("let x = 1;")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (root / "empty").mkdir()
    (root / "web.config").write_text("<configuration/>")
    (root / "handler.py").write_text("secret = 1")
    (root / "LICENSE").write_text("no extension")
    (root / "big.bin.png").write_bytes(b"x" * (sitehost.COALESCE_LIMIT + 1))
    (tmp_path / "secret.txt").write_text("outside")
    return root


def test_wsgi_dispatcher_sets_script_name_and_path_info(static_dir: Path) -> None:
    app = WsgiDispatcher(
        [
            Mount("/", "wsgi", echo_wsgi("root")),
            Mount("/api", "wsgi", echo_wsgi("api")),
            Mount("/api/v2", "wsgi", echo_wsgi("v2")),
            Mount("/static", "static", StaticFiles(str(static_dir))),
        ]
    )
    assert wsgi_call(app, "/")[2] == b"root '' '/'"
    assert wsgi_call(app, "/API/users")[2] == b"api '/API' '/users'"
    assert wsgi_call(app, "/api")[2] == b"api '/api' ''"
    assert wsgi_call(app, "/api/v2/x")[2] == b"v2 '/api/v2' '/x'"
    assert wsgi_call(app, "/apiary")[2] == b"root '' '/apiary'"
    status, headers, body = wsgi_call(app, "/static/css/site.css")
    assert (status, headers["Content-Type"], body) == ("200 OK", "text/css", b"body { color: red }")
    assert headers["Content-Length"] == str(len(body))


def test_wsgi_dispatcher_adds_to_a_script_name_the_server_set() -> None:
    app = WsgiDispatcher(
        [Mount("/", "wsgi", echo_wsgi("root")), Mount("/api", "wsgi", echo_wsgi("api"))]
    )
    assert wsgi_call(app, "/api/x", SCRIPT_NAME="/site")[2] == b"api '/site/api' '/x'"


def test_traversal_never_leaves_the_static_folder(static_dir: Path, tmp_path: Path) -> None:
    app = WsgiDispatcher(
        [
            Mount("/", "wsgi", echo_wsgi("root")),
            Mount("/static", "static", StaticFiles(str(static_dir))),
        ]
    )
    # gunicorn hands PATH_INFO percent-decoded: %2e%2e and %2f arrive as '..' and '/'
    for path in (
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/..\\secret.txt",
        "/static/css\\..\\..\\secret.txt",
        "/static/./../secret.txt",
        "/static/\x00/site.css",
    ):
        status, _, body = wsgi_call(app, path)
        assert status == "404 Not Found", path
        assert b"outside" not in body
    # a symbolic link that leads out of the folder is not followed; one inside is
    os.symlink(tmp_path / "secret.txt", static_dir / "leak.txt")
    os.symlink(tmp_path, static_dir / "up")
    os.symlink(static_dir / "css" / "site.css", static_dir / "alias.css")
    assert wsgi_call(app, "/static/leak.txt")[0] == "404 Not Found"
    assert wsgi_call(app, "/static/up/secret.txt")[0] == "404 Not Found"
    assert wsgi_call(app, "/static/alias.css")[2] == b"body { color: red }"


def test_percent_decoded_dots_from_an_asgi_server_are_refused(static_dir: Path) -> None:
    assert static_lookup(str(static_dir), "/%2e%2e/secret.txt").status == 404
    assert static_lookup(str(static_dir), "/../secret.txt").status == 404
    assert static_lookup(str(static_dir), "/css/site.css").status == 200


def test_static_lookup_answers_like_iis(static_dir: Path) -> None:
    root = str(static_dir)
    found = static_lookup(root, "/css/site.css")
    assert (found.status, found.type, found.file) == (
        200,
        "text/css",
        str(static_dir / "css" / "site.css"),
    )
    assert static_lookup(root, "/app.js").type == "text/javascript"
    assert static_lookup(root, "/docs").status == 301  # a folder: add the slash
    assert static_lookup(root, "/docs/").file == str(static_dir / "docs" / "index.html")
    assert static_lookup(root, "/empty/").status == 403  # no listing
    assert static_lookup(root, "/").status == 403
    assert static_lookup(root, "/missing.css").status == 404
    assert static_lookup(root, "/web.config").status == 404  # hidden, as IIS hides it
    assert static_lookup(root, "/WEB.CONFIG").status == 404
    assert static_lookup(root, "/handler.py").status == 404  # sources are not content
    assert static_lookup(root, "/LICENSE").status == 404  # no MIME type: IIS's 404.3


def test_static_responses(static_dir: Path) -> None:
    files = StaticFiles(str(static_dir))
    status, headers, body = files.respond("GET", "/css/site.css", "/static/css/site.css")
    assert status == 200 and body == b"body { color: red }"
    h = dict(headers)
    assert h["Content-Type"] == "text/css" and h["ETag"] and h["Last-Modified"]
    assert files.respond("HEAD", "/css/site.css", "/s/css/site.css")[2] == b""
    assert dict(files.respond("HEAD", "/css/site.css", "/s")[1])["Content-Length"] == "19"
    status, headers, _ = files.respond("POST", "/css/site.css", "/static/css/site.css")
    assert status == 405 and ("Allow", "GET, HEAD") in headers
    assert files.respond("GET", "/css/site.css", "/x", if_none_match=h["ETag"])[0] == 304
    assert files.respond("GET", "/css/site.css", "/x", if_none_match='"other"')[0] == 200
    later = email.utils.formatdate(
        os.stat(static_dir / "css" / "site.css").st_mtime + 60, usegmt=True
    )
    assert files.respond("GET", "/css/site.css", "/x", if_modified_since=later)[0] == 304
    assert files.respond("GET", "/css/site.css", "/x", if_modified_since="garbage")[0] == 200
    status, headers, _ = files.respond("GET", "/docs", "/Static/docs", "a=1")
    assert status == 301 and ("Location", "/Static/docs/?a=1") in headers
    status, headers, body = files.respond("GET", "/big.bin.png", "/static/big.bin.png")
    assert status == 200 and not isinstance(body, bytes)  # a large file is streamed
    with body:
        assert len(body.read()) == sitehost.COALESCE_LIMIT + 1


def test_a_large_static_file_goes_through_the_servers_file_wrapper(static_dir: Path) -> None:
    app = WsgiDispatcher(
        [
            Mount("/", "wsgi", echo_wsgi("root")),
            Mount("/static", "static", StaticFiles(str(static_dir))),
        ]
    )
    wrapped: list[Any] = []

    def file_wrapper(handle: Any, size: int) -> Iterator[bytes]:
        wrapped.append(handle)
        return sitehost._chunks(handle)

    status, headers, body = wsgi_call(
        app, "/static/big.bin.png", **{"wsgi.file_wrapper": file_wrapper}
    )  # type: ignore[arg-type]
    assert status == "200 OK" and len(body) == sitehost.COALESCE_LIMIT + 1 and wrapped
    assert headers["Content-Type"] == "image/png"


# ---------------------------------------------------------------------------- ASGI


def echo_asgi(name: str, events: list[str] | None = None, lifespan: str = "ok") -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if lifespan == "unsupported":
                raise RuntimeError("no lifespan here")
            while True:
                message = await receive()
                assert events is not None
                events.append(f"{name} {message['type']}")
                if message["type"] == "lifespan.startup":
                    if lifespan == "fail":
                        await send({"type": "lifespan.startup.failed", "message": f"{name} broke"})
                        return
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = f"{name} {scope['root_path']!r} {scope['path']!r}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


def asgi_call(
    app: Any, path: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [],
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "asgi": {"version": "3.0"},
    }
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


def test_asgi_dispatcher_sets_root_path_and_keeps_the_full_path(static_dir: Path) -> None:
    from a2wsgi import WSGIMiddleware

    app = AsgiDispatcher(
        [
            Mount("/", "asgi", echo_asgi("root")),
            Mount("/api", "asgi", echo_asgi("api")),
            Mount("/legacy", "wsgi", WSGIMiddleware(echo_wsgi("legacy"))),
            Mount("/static", "static", StaticFiles(str(static_dir))),
        ]
    )
    assert asgi_call(app, "/x")[2] == b"root '' '/x'"
    assert asgi_call(app, "/Api/users")[2] == b"api '/Api' '/Api/users'"
    assert asgi_call(app, "/legacy/page")[2] == b"legacy '/legacy' '/page'"
    status, headers, body = asgi_call(app, "/static/css/site.css")
    assert (status, headers[b"content-type"], body) == (200, b"text/css", b"body { color: red }")
    assert asgi_call(app, "/static/../secret.txt")[0] == 404
    assert asgi_call(app, "/static/css/site.css", "DELETE")[0] == 405
    assert len(asgi_call(app, "/static/big.bin.png")[2]) == sitehost.COALESCE_LIMIT + 1
    etag = asgi_call(app, "/static/app.js")[1][b"etag"]
    assert asgi_call(app, "/static/app.js", headers=[(b"if-none-match", etag)])[0] == 304


def test_lifespan_reaches_every_asgi_app_and_a_failure_fails_the_site() -> None:
    events: list[str] = []
    apps = [
        echo_asgi("root", events),
        echo_asgi("plain", lifespan="unsupported"),
        echo_asgi("api", events),
    ]
    dispatcher = AsgiDispatcher([Mount("/", "asgi", apps[0])], apps)
    sent = run_lifespan(dispatcher)
    assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == [
        "root lifespan.startup",
        "api lifespan.startup",
        "api lifespan.shutdown",
        "root lifespan.shutdown",
    ]
    events.clear()
    broken = AsgiDispatcher([], [echo_asgi("root", events), echo_asgi("api", events, "fail")])
    sent = run_lifespan(broken, shutdown=False)
    assert sent == ["lifespan.startup.failed"]
    # what had started is stopped again
    assert events == ["root lifespan.startup", "api lifespan.startup", "root lifespan.shutdown"]


def run_lifespan(app: Any, shutdown: bool = True) -> list[str]:
    sent: list[str] = []

    async def main() -> None:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        if shutdown:
            await inbox.put({"type": "lifespan.shutdown"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await asyncio.wait_for(app({"type": "lifespan", "state": {}}, inbox.get, send), 5)

    asyncio.run(main())
    return sent


def test_websockets_reach_asgi_apps_only() -> None:
    sent: list[dict[str, Any]] = []

    async def main() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "websocket.connect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        app = AsgiDispatcher(
            [
                Mount("/", "asgi", echo_asgi("root")),
                Mount("/files", "static", StaticFiles("/nonexistent")),
            ]
        )
        await app(
            {"type": "websocket", "path": "/files/x", "root_path": "", "headers": []}, receive, send
        )

    asyncio.run(main())
    assert sent == [{"type": "websocket.close", "code": 1008}]


# ---------------------------------------------------------------------------- loading apps


def test_apps_with_modules_of_the_same_name_each_get_their_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = "vapp_same_name_probe"
    for name in ("Root", "Api"):
        folder = tmp_path / name
        (folder / "helpers").mkdir(parents=True)
        (folder / f"{module}.py").write_text(
            textwrap.dedent(
                f"""
                from helpers import who
                def app():
                    return "{name} " + who()
                """
            )
        )
        (folder / "helpers" / "__init__.py").write_text(
            f"def who():\n    return 'helpers of {name}'\n"
        )
    saved = list(sys.path)
    try:
        root, api = sitehost.load_apps(
            [(f"{module}:app", str(tmp_path / "Root")), (f"{module}:app", str(tmp_path / "Api"))]
        )
        assert root() == "Root helpers of Root"
        assert api() == "Api helpers of Api"
        # the first app keeps the names; the log says which names are shared
        assert sys.modules[module].__file__ == str(tmp_path / "Root" / f"{module}.py")
        err = capsys.readouterr().err
        assert f"module '{module}' is in" in err and "module 'helpers' is in" in err
        assert sys.path[:2] == [str(tmp_path / "Root"), str(tmp_path / "Api")]
    finally:
        sys.path[:] = saved
        for name in [n for n in sys.modules if n.split(".")[0] in (module, "helpers")]:
            del sys.modules[name]


def test_mounts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUMULO_SITE_MOUNTS", "not json")
    with pytest.raises(sitehost.SiteError, match="CUMULO_SITE_MOUNTS is not a JSON list"):
        sitehost.site_mounts()
    monkeypatch.setenv("CUMULO_SITE_MOUNTS", '[{"path": "/a", "kind": "php", "dir": "/x"}]')
    with pytest.raises(sitehost.SiteError):
        sitehost.site_mounts()
    site = SiteSpec(
        "Web",
        "wsgi",
        "app:app",
        apps=(SiteAppSpec("/api", "asgi", "main:app", "sitesroot/Api"),),
        directories=(VirtualDirectorySpec("/static", "static"),),
    )
    import json

    monkeypatch.setenv("CUMULO_SITE_MOUNTS", json.dumps(site.mounts("/inst/approot")))
    assert sitehost.site_mounts() == [
        {"path": "/api", "kind": "asgi", "app": "main:app", "dir": "/inst/approot/sitesroot/Api"},
        {"path": "/static", "kind": "static", "dir": "/inst/approot/static"},
    ]
    # a site with an ASGI app runs on uvicorn; an all-WSGI one on gunicorn
    assert sitehost.server_for("wsgi") == "uvicorn"
    monkeypatch.setenv(
        "CUMULO_SITE_MOUNTS",
        json.dumps(SiteSpec("W", "wsgi", "a:b", directories=site.directories).mounts("/r")),
    )
    assert sitehost.server_for("wsgi") == "gunicorn"
    monkeypatch.setenv("CUMULO_SITE_WSGI_SERVER", "uvicorn")
    assert sitehost.server_for("wsgi") == "uvicorn"


@pytest.fixture(scope="module")
def maze(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A static folder with links in and out, next to a secret."""
    base = tmp_path_factory.mktemp("maze")
    root = base / "static"
    (root / "css").mkdir(parents=True)
    (root / "css" / "site.css").write_text("ok")
    (base / "secret.css").write_text("secret")
    os.symlink(base / "secret.css", root / "leak.css")
    os.symlink(base, root / "up")
    os.symlink(root / "css", root / "alias")
    return root


@given(
    st.lists(
        st.sampled_from(
            [
                "..",
                ".",
                "",
                "css",
                "site.css",
                "secret.css",
                "leak.css",
                "up",
                "alias",
                "..\\..",
                "static",
            ]
        ),
        max_size=7,
    )
)
def test_static_lookup_property_no_answer_from_outside_the_folder(
    maze: Path, segments: list[str]
) -> None:
    found = static_lookup(str(maze), "/" + "/".join(segments))
    if found.status == 200:
        assert os.path.realpath(found.file).startswith(os.path.realpath(maze) + os.sep)
        assert Path(found.file).read_text() == "ok"
