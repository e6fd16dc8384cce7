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


MEMORY = re.compile(r'cumulo_instance_memory_bytes\{[^}]*instance="Web_IN_\d"[^}]*\} (\d+)')


def cell(page: object, instance: str, column: int) -> str:
    return str(
        page.text_content(  # type: ignore[attr-defined]
            f'section[data-slot="production"] tr[data-instance="{instance}"] td:nth-child({column})'
        )
    )


def test_the_dashboard_shows_the_service_and_scales_a_role(serve: Serve, tmp_path: Path) -> None:
    port = free_port()
    out = serve.cli("deploy", "hello", str(write_service(tmp_path / "v1", port)), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    link = serve.cli("dashboard").stdout.strip()
    auto_file = tmp_path / "autoscale.json"
    auto_file.write_text('{"capacity": {"minimum": 1, "maximum": 4, "default": 2}, "rules": []}')
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
        # Monitoring: each instance's CPU (once two readings a second apart), memory, restarts.
        wait_until(lambda: "%" in cell(page, "Web_IN_0", 7), 20, "a CPU percentage on the page")
        assert (
            re.fullmatch(r"\d+ MB", cell(page, "Web_IN_0", 8)) and cell(page, "Web_IN_0", 9) == "0"
        )
        assert cell(page, "Web_IN_0", 6) == "in", "in the load balancer's rotation"
        assert page.is_disabled("#swap"), "nothing to swap with an empty staging slot"

        # An autoscale setting shows beside its role.
        out = serve.cli("autoscale", "set", "hello", "--role", "Web", "--file", str(auto_file))
        assert out.returncode == 0, out.stderr
        page.wait_for_selector('section[data-slot="production"] .autoscale')
        assert "autoscale 1–4" in str(page.text_content('section[data-slot="production"] .roles'))
        assert serve.cli("autoscale", "off", "hello", "--role", "Web").returncode == 0

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
    assert httpx.get(f"{base}/v1/metrics", timeout=5).status_code == 401


def test_metrics_show_every_instance_for_a_scraper_with_the_token(
    serve: Serve, tmp_path: Path
) -> None:
    port = free_port()
    out = serve.cli("deploy", "hello", str(write_service(tmp_path / "v1", port)), "--timeout", "90")
    assert out.returncode == 0, out.stderr + serve.logs()
    auth = {"Authorization": f"Bearer {serve.client.token}"}

    def memory_of_both() -> list[str]:
        text = httpx.get(f"{serve.client.url}/v1/metrics", headers=auth, timeout=5).text
        return re.findall(
            r'cumulo_instance_memory_bytes\{[^}]*instance="Web_IN_\d"[^}]*\} (\d+)', text
        )

    values = wait_until(lambda: len(memory_of_both()) == 2 and memory_of_both(), 20, "memory")
    assert all(int(v) > 1 << 20 for v in values), values
    text = httpx.get(f"{serve.client.url}/v1/metrics", headers=auth, timeout=5).text
    assert 'cumulo_deployment_instances{service="hello",slot="production"' in text
    assert text.count('cumulo_instance_in_rotation{service="hello"') == 2
