"""The dashboard in a real browser against a real ``cumulo serve``: the sign-in link from
``cumulo dashboard`` opens it signed in (and the token leaves the address bar), it shows the
service, both slots and every instance's status, scales a role from its form, and a refused
token sends the user back to the sign-in form. The static files need no token, carry a strict
Content-Security-Policy and serve nothing but themselves."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ...browser import chromium_page  # type: ignore[import-not-found]
from ...platform_harness import wait_until  # type: ignore[import-not-found]
from ..controller.test_serve import Serve, free_port, serving, write_service

pytestmark = pytest.mark.slow


@pytest.fixture
def serve() -> Iterator[Serve]:
    with serving() as s:
        yield s


def rows(page: object, slot: str) -> dict[str, str]:
    """Instance id -> status, as the page shows them in ``slot``'s table."""
    cells = page.eval_on_selector_all(  # type: ignore[attr-defined]
        f'section[data-slot="{slot}"] tbody tr',
        "trs => trs.map(tr => [tr.cells[0].textContent, tr.cells[1].textContent])",
    )
    return dict(cells)


def test_the_dashboard_shows_the_service_and_scales_a_role(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    out = serve.cli("deploy", "hello", str(write_service(tmp_path / "v1", port)), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    link = serve.cli("dashboard").stdout.strip()
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/dashboard/#token=\S+", link), link

    with chromium_page() as browser:
        page = browser.page
        page.goto(link)
        page.wait_for_selector('section[data-slot="production"] tbody tr')
        assert "token" not in page.url, "the token must leave the address bar"
        assert page.text_content("#services") == "hello"
        wait_until(
            lambda: rows(page, "production") == {"Web_IN_0": "ReadyRole", "Web_IN_1": "ReadyRole"},
            20,
            "both instances Ready on the page",
        )
        assert "No deployment." in (page.text_content('section[data-slot="staging"]') or "")
        assert page.is_disabled("#swap"), "nothing to swap with an empty staging slot"

        page.fill('input[aria-label="Web instances"]', "3")
        page.click('section[data-slot="production"] button:text("Scale")')
        wait_until(
            lambda: rows(page, "production").get("Web_IN_2") == "ReadyRole",
            60,
            "the third instance Ready on the page",
        )
        assert len(serve.client.get_deployment("hello", "production")["instances"]) == 3

        # A reload keeps the session; a token the API refuses returns to the sign-in form.
        page.reload()
        page.wait_for_selector('section[data-slot="production"] tbody tr')
        page.evaluate("sessionStorage.setItem('cumulo-token', 'wrong')")
        page.reload()
        page.wait_for_selector("#sign-in:not([hidden])")
        assert "refused" in (page.text_content("#sign-in-error") or "")
        browser.problems[:] = [p for p in browser.problems if "401" not in p]
        page.fill("#token", serve.client.token)
        page.click('#sign-in-form button[type="submit"]')
        page.wait_for_selector('section[data-slot="production"] tbody tr')
        page.goto(link.split("#")[0] + "../favicon.ico")  # what a browser asks for by itself
    assert browser.problems == []


def test_the_static_files_need_no_token_and_serve_only_themselves(serve: Serve) -> None:
    base = serve.client.url
    page = httpx.get(f"{base}/dashboard/", timeout=5)
    assert page.status_code == 200 and "<title>cumulo</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert httpx.get(f"{base}/", timeout=5).headers.get("location") == "/dashboard/"
    assert httpx.get(f"{base}/", timeout=5, follow_redirects=True).status_code == 200
    for path in ("/dashboard/app.js", "/dashboard/style.css", "/dashboard/icon.svg"):
        assert httpx.get(f"{base}{path}", timeout=5).status_code == 200
    for path in ("/dashboard/..%2Fapi-token", "/dashboard/dashboard.py", "/dashboard/x.js"):
        assert httpx.get(f"{base}{path}", timeout=5).status_code in (401, 404), path
    assert httpx.get(f"{base}/v1/services", timeout=5).status_code == 401
