"""The guestbook end to end on real storage: sign over HTTP, the worker makes the thumbnail.

Each test has its own storage service process (port 0) and web server (uvicorn + a2wsgi, port
0); the worker's functions run in-process, and once as a real ``python worker.py`` process.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import app
import entries
import httpx
import pytest
import worker
from PIL import Image

from .conftest import EXAMPLE, BrowserPage, Storage, WebServer, poll, thumbnail_loaded


def picture(fmt: str = "PNG", size: tuple[int, int] = (640, 480), mode: str = "RGB") -> bytes:
    color: Any = (200, 40, 40, 128) if mode == "RGBA" else (200, 40, 40)
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt)
    return out.getvalue()


def sign(
    web: WebServer,
    name: str = "Ada",
    message: str = "Hello from the test",
    pic: bytes | None = None,
    filename: str = "me.png",
    ctype: str = "image/png",
) -> httpx.Response:
    """POST the form as a browser does (an empty file input when there is no picture)."""
    files = {
        "picture": (filename, pic, ctype)
        if pic is not None
        else ("", b"", "application/octet-stream")
    }
    return httpx.post(
        f"{web.url}/sign", data={"name": name, "message": message}, files=files, timeout=30
    )


def entities(store: worker.WorkerStore) -> list[dict[str, Any]]:
    return [dict(e) for e in store.table.list_entities()]


def queued(store: worker.WorkerStore) -> list[str]:
    return [m.content for m in store.queue.peek_messages(max_messages=32)]


def blob_names(container: Any) -> list[str]:
    return sorted(b.name for b in container.list_blobs())


def page(web: WebServer) -> str:
    response = httpx.get(f"{web.url}/", timeout=30)
    assert response.status_code == 200
    return response.text


def receive_until(store: worker.WorkerStore, count: int, visibility_timeout: int = 30) -> list[Any]:
    """Receive until ``count`` messages came back (they reappear after their visibility timeout)."""
    got: list[Any] = []
    deadline = time.monotonic() + 10
    while len(got) < count:
        assert time.monotonic() < deadline, f"only {len(got)} of {count} messages reappeared"
        got.extend(
            store.queue.receive_messages(visibility_timeout=visibility_timeout, max_messages=count)
        )
        if len(got) < count:
            time.sleep(0.1)
    return got


def test_sign_with_picture_then_worker_makes_the_thumbnail(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    pic = picture("PNG", (640, 480))
    response = sign(web, "Ada <Lovelace>", "First!\nSecond line", pic)
    assert response.status_code == 303 and response.headers["location"] == "/"

    # The entry is in the table, the picture in a blob, and a message names the entry.
    [entity] = entities(worker_store)
    assert entity["PartitionKey"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert entries.is_row_key(entity["RowKey"])
    assert entity["Name"] == "Ada <Lovelace>" and entity["Message"] == "First!\nSecond line"
    assert entity["ThumbnailState"] == "pending"
    assert entity["PictureBlob"] == f"{entity['RowKey']}.png"
    blob = worker_store.pictures.download_blob(entity["PictureBlob"])
    assert blob.readall() == pic
    assert blob.properties.content_settings.content_type == "image/png"
    [message] = queued(worker_store)
    assert json.loads(message) == {"pk": entity["PartitionKey"], "rk": entity["RowKey"]}

    html = page(web)
    assert "Ada &lt;Lovelace&gt;" in html and "<Lovelace>" not in html
    assert "thumbnail…" in html and 'http-equiv="refresh"' in html

    # The worker makes the thumbnail and updates the entry.
    [outcome] = worker.drain_once(worker_store)
    assert outcome.status == "made"
    assert queued(worker_store) == []
    [entity] = entities(worker_store)
    thumb_name = f"{entity['RowKey']}.jpg"
    assert entity["ThumbnailBlob"] == thumb_name and entity["ThumbnailState"] == "done"
    assert entity["ThumbnailUrl"].endswith(f"/guestbook-thumbnails/{thumb_name}")
    thumb = worker_store.thumbnails.download_blob(thumb_name).readall()
    with Image.open(io.BytesIO(thumb)) as image:
        assert image.format == "JPEG" and image.size == (160, 120)

    # The page shows it; the web role serves the thumbnail and the picture from their blobs.
    html = page(web)
    assert f'src="/thumbnails/{thumb_name}"' in html
    assert f'href="/pictures/{entity["PictureBlob"]}"' in html
    assert "thumbnail…" not in html and 'http-equiv="refresh"' not in html
    got = httpx.get(f"{web.url}/thumbnails/{thumb_name}")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert got.content == thumb
    got = httpx.get(f"{web.url}/pictures/{entity['PictureBlob']}")
    assert got.status_code == 200 and got.content == pic


def test_the_page_puts_the_thumbnail_in_place_and_keeps_what_a_visitor_is_typing(
    web: WebServer, worker_store: worker.WorkerStore, browser_page: BrowserPage
) -> None:
    """While a thumbnail is pending the page updates its entries by itself; it used to reload
    itself (meta refresh) and wiped a second entry the visitor was typing."""
    page = browser_page.page
    assert sign(web, "Ada", "waiting for my thumbnail", picture("PNG")).status_code == 303
    page.goto(f"{web.url}/")
    assert page.locator("li.entry", has_text="Ada").locator(".pending").count() == 1
    page.get_by_label("Name").fill("Grace")
    page.get_by_label("Message").fill("half a sentence")
    reloads: list[str] = []
    page.on("framenavigated", lambda frame: reloads.append(frame.url))

    [outcome] = worker.drain_once(worker_store)
    assert outcome.status == "made"
    poll(lambda: thumbnail_loaded(page, "Ada"), 20, "the page did not show the new thumbnail")
    assert page.get_by_label("Name").input_value() == "Grace"
    assert page.get_by_label("Message").input_value() == "half a sentence"
    assert reloads == []
    assert browser_page.problems == [], browser_page.problems


def test_sign_without_picture_needs_no_worker(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    assert sign(web, "Grace", "No picture today").status_code == 303
    [entity] = entities(worker_store)
    assert "PictureBlob" not in entity and entity["ThumbnailState"] == "none"
    assert queued(worker_store) == []
    assert blob_names(worker_store.pictures) == []
    html = page(web)
    assert "No picture today" in html and 'http-equiv="refresh"' not in html


def test_entries_are_listed_newest_first_and_escaped(web: WebServer) -> None:
    for name in ("first", "second", "<script>alert(1)</script>"):
        assert sign(web, name, f"message of {name}").status_code == 303
    html = page(web)
    positions = [
        html.index(n) for n in ("&lt;script&gt;alert(1)&lt;/script&gt;", "second", "first")
    ]
    assert positions == sorted(positions)
    assert "<script>" not in html


def test_a_message_processed_twice_does_no_harm(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    assert sign(web, pic=picture("JPEG", (300, 600))).status_code == 303
    [message] = worker_store.queue.receive_messages(visibility_timeout=30, max_messages=1)
    assert worker.process_message(worker_store, message).status == "made"
    [before] = worker_store.table.list_entities()
    # A second delivery of the same message (another instance had it too): nothing changes and
    # deleting it again is not an error.
    assert worker.process_message(worker_store, message).status == "already"
    [after] = worker_store.table.list_entities()
    assert dict(after) == dict(before)
    assert after.metadata["etag"] == before.metadata["etag"]  # not even rewritten
    assert blob_names(worker_store.thumbnails) == [before["ThumbnailBlob"]]
    assert queued(worker_store) == []


def test_killed_instances_leave_their_messages_to_be_processed_again(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    """One instance dies before doing anything, another after the thumbnail but before the
    delete: both messages come back after their visibility timeout and end well."""
    assert sign(web, "one", pic=picture()).status_code == 303
    assert sign(web, "two", pic=picture("GIF", (50, 40), "P")).status_code == 303
    first, second = worker_store.queue.receive_messages(visibility_timeout=1, max_messages=2)
    partial = worker._process(worker_store, second)  # its instance is killed before delete
    assert partial.status == "made"
    del first  # its instance is killed at once

    again = receive_until(worker_store, 2)
    assert sorted(m.dequeue_count for m in again) == [2, 2]
    outcomes = sorted(worker.process_message(worker_store, m).status for m in again)
    assert outcomes == ["already", "made"]
    assert queued(worker_store) == []
    rows = entities(worker_store)
    assert [r["ThumbnailState"] for r in rows] == ["done", "done"]
    assert blob_names(worker_store.thumbnails) == sorted(r["ThumbnailBlob"] for r in rows)


def test_poison_and_malformed_messages_are_removed(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    assert sign(web, pic=picture()).status_code == 303
    for _ in range(worker.MAX_DEQUEUE):  # five deliveries that never finished
        [message] = worker_store.queue.receive_messages(visibility_timeout=30, max_messages=1)
        worker_store.queue.update_message(message, visibility_timeout=0)
    worker_store.queue.send_message("this is not a thumbnail request")
    outcomes = sorted(o.status for o in worker.drain_once(worker_store))
    assert outcomes == ["malformed", "poison"]
    assert queued(worker_store) == []
    [entity] = entities(worker_store)
    assert entity["ThumbnailState"] == "pending"  # left alone: it is only logged


def test_an_unreadable_picture_is_marked_failed(
    web: WebServer, worker_store: worker.WorkerStore
) -> None:
    damaged = b"\xff\xd8\xff\xe0" + b"not really a jpeg" * 20
    assert sign(web, pic=damaged, filename="broken.jpg", ctype="image/jpeg").status_code == 303
    [outcome] = worker.drain_once(worker_store)
    assert outcome.status == "unreadable"
    [entity] = entities(worker_store)
    assert entity["ThumbnailState"] == "failed" and "cannot be read" in entity["ThumbnailError"]
    assert queued(worker_store) == []
    html = page(web)
    assert f'href="/pictures/{entity["PictureBlob"]}"' in html
    assert 'http-equiv="refresh"' not in html


@pytest.mark.parametrize(
    ("kwargs", "status", "sentence"),
    [
        (
            {"pic": b"hello, I am text", "filename": "notes.txt", "ctype": "text/plain"},
            400,
            "The file &#x27;notes.txt&#x27; is not a picture the guestbook accepts",
        ),
        ({"name": "   "}, 400, "Please write your name."),
        ({"message": ""}, 400, "Please write your message."),
        ({"name": "x" * 61}, 400, "Your name has 61 characters; at most 60 fit."),
        (
            {"pic": b"\x89PNG\r\n\x1a\n" + b"\0" * entries.PICTURE_MAX},
            413,
            "at most 4 MB are accepted",
        ),
    ],
    ids=["not-a-picture", "no-name", "no-message", "long-name", "picture-too-large"],
)
def test_bad_uploads_get_a_clear_error_and_store_nothing(
    web: WebServer,
    worker_store: worker.WorkerStore,
    kwargs: dict[str, Any],
    status: int,
    sentence: str,
) -> None:
    form: dict[str, Any] = {"name": "Ada", "message": "kept message", **kwargs}
    response = sign(web, **form)
    assert response.status_code == status
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert sentence in response.text
    assert 'class="error"' in response.text
    if form["message"]:
        assert "kept message" in response.text  # the visitor's text is kept in the form
    assert entities(worker_store) == []
    assert queued(worker_store) == []
    assert blob_names(worker_store.pictures) == []


def test_the_page_names_its_icon_and_stylesheet_and_both_are_served(web: WebServer) -> None:
    html = page(web)
    links = dict(re.findall(r'<link rel="(icon|stylesheet)" href="([^"]+)"', html))
    assert links == {"icon": "/static/favicon.svg", "stylesheet": "/static/style.css"}
    for href, ctype in (
        (links["icon"], "image/svg+xml"),
        (links["stylesheet"], "text/css; charset=utf-8"),
    ):
        response = httpx.get(f"{web.url}{href}")
        assert response.status_code == 200 and response.headers["content-type"] == ctype
        assert response.content == (EXAMPLE / "WebRole" / href.lstrip("/")).read_bytes()
    for path in ("/static/app.py", "/static/../app.py", "/static/", "/style.css"):
        assert httpx.get(f"{web.url}{path}").status_code == 404, path


def test_malformed_requests_get_an_error_page(web: WebServer) -> None:
    boundary = "b0undary"
    truncated = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nAda\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="message"\r\n\r\nhel'
    ).encode()
    response = httpx.post(
        f"{web.url}/sign",
        content=truncated,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400
    assert "ends before its closing boundary" in response.text
    response = httpx.post(f"{web.url}/sign", json={"name": "Ada"})
    assert response.status_code == 400
    assert "must be sent as multipart/form-data, not application/json" in response.text
    response = httpx.get(f"{web.url}/sign")
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    for path in ("/nowhere", "/pictures/..%2f..%2fetc%2fpasswd", "/thumbnails/x.jpg"):
        response = httpx.get(f"{web.url}{path}")
        assert response.status_code == 404, path
        assert "Back to the guestbook" in response.text
    missing = entries.row_key(time.time_ns()) + ".jpg"
    assert httpx.get(f"{web.url}/thumbnails/{missing}").status_code == 404


def test_a_body_over_the_limit_is_refused_before_it_is_read() -> None:
    """Direct WSGI call: the app answers 413 from Content-Length alone."""

    class Unreadable:
        def read(self, *_: object) -> bytes:
            raise AssertionError("the body must not be read")

    captured: list[str] = []
    body = app.make_app("UseDevelopmentStorage=true")(
        {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/sign",
            "CONTENT_TYPE": "multipart/form-data; boundary=x",
            "CONTENT_LENGTH": str(entries.BODY_MAX + 1),
            "wsgi.input": Unreadable(),
        },
        lambda status, headers: captured.append(status),
    )
    assert captured == ["413 Content Too Large"]
    assert b"Choose a smaller picture." in b"".join(body)


def test_storage_down_gives_a_clear_503_and_health_stays_up(private_storage: Storage) -> None:
    web = WebServer(app.make_app(private_storage.connection_string))
    try:
        assert sign(web, "before the outage", "ok").status_code == 303
        private_storage.stop()
        started = time.monotonic()
        response = httpx.get(f"{web.url}/", timeout=30)
        assert response.status_code == 503
        assert "storage cannot be reached right now; nothing was saved" in response.text
        response = sign(web, "during the outage", "lost?")
        assert response.status_code == 503
        assert time.monotonic() - started < 10  # short retries, not the SDKs' 15 s+ back-off
        assert httpx.get(f"{web.url}/health").status_code == 200
    finally:
        web.stop()


def test_the_worker_role_as_a_real_process(
    web: WebServer, storage: Storage, tmp_path: Path
) -> None:
    """`python worker.py` outside cumulo: connection string from the environment, thumbnails
    made while it runs, SIGTERM ends it cleanly."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CUMULO_") and "STORAGE" not in k
    }
    env["STORAGE_CONNECTION_STRING"] = storage.connection_string
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "worker.py"],
            cwd=EXAMPLE / "WorkerRole",
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        assert sign(web, "Linus", pic=picture("WEBP", (400, 400))).status_code == 303
        store = worker.WorkerStore(storage.connection_string)
        deadline = time.monotonic() + 15
        while True:
            [entity] = entities(store)
            if entity["ThumbnailState"] == "done":
                break
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the worker made no thumbnail in 15 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert re.search(r"^worker\.started ", output, re.M)
    assert re.search(r"^thumbnail\.made ", output, re.M)
    assert re.search(r"^worker\.stopped", output, re.M)


def test_a_stopping_worker_hands_back_the_messages_it_did_not_start(
    web: WebServer, worker_store: worker.WorkerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a", "b", "c"):
        assert sign(web, name, pic=picture(size=(40, 40))).status_code == 303
    stop = threading.Event()
    real = worker.process_message

    def then_stop(store: worker.WorkerStore, message: Any) -> worker.Outcome:
        outcome = real(store, message)
        stop.set()  # the instance is asked to stop while it holds three messages
        return outcome

    monkeypatch.setattr(worker, "process_message", then_stop)
    outcomes = worker.drain_once(worker_store, stop=stop)
    assert [o.status for o in outcomes] == ["made"]
    assert len(queued(worker_store)) == 2  # visible again at once, not after 30 s


def test_on_stop_lets_the_run_loop_finish(
    web: WebServer, storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's lifecycle: run() works until OnStop, which returns once run() has finished."""
    monkeypatch.delenv("CUMULO_AGENT_SOCKET", raising=False)
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", storage.connection_string)
    role = worker.Worker()
    assert role.on_start()
    thread = threading.Thread(target=role.run)
    thread.start()
    try:
        assert sign(web, pic=picture()).status_code == 303
        store = worker.WorkerStore(storage.connection_string)
        deadline = time.monotonic() + 10
        while entities(store)[0]["ThumbnailState"] != "done":
            assert time.monotonic() < deadline, "run() made no thumbnail"
            time.sleep(0.05)
    finally:
        role.on_stop()
    assert role.finished.is_set()
    thread.join(5)
    assert not thread.is_alive()


def test_an_entry_is_acknowledged_only_with_its_queue_message(
    storage: Storage, worker_store: worker.WorkerStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the thumbnail request cannot be queued, the visitor gets the 503 page and the entry
    is taken back, so no acknowledged entry waits for a thumbnail that will never come."""
    from azure.core.exceptions import ServiceRequestError

    guestbook = app.make_app(storage.connection_string)
    store = guestbook.store()

    def queue_down(*_: object, **__: object) -> None:
        raise ServiceRequestError("queue endpoint unreachable")

    monkeypatch.setattr(store.queue, "send_message", queue_down)
    web = WebServer(guestbook)
    try:
        response = sign(web, "Ada", pic=picture())
        assert response.status_code == 503
        assert "nothing was saved" in response.text
        assert entities(worker_store) == []
        monkeypatch.undo()
        assert sign(web, "Ada", pic=picture()).status_code == 303
        assert len(entities(worker_store)) == 1 and len(queued(worker_store)) == 1
    finally:
        web.stop()
