"""A real browser for the tests: Debian's Chromium (``make test`` installs it) driven by
Playwright, one fresh headless browser and page per use, closed afterwards. Everything the page
reports as wrong (script errors, console errors and warnings, HTTP answers >= 400) is collected
in ``problems`` so a test can assert there were none."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CUMULO_TEST_CHROMIUM", "/usr/bin/chromium"))
"""Debian's Chromium, which `make test` installs (Playwright's own browser download does not
work on these machines, so Playwright drives this one)."""

CHROMIUM_ARGS = [
    "--no-sandbox",  # as root (CI), Chromium refuses to start with its sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium keeps opening connections to Google's hosts, which a closed
    # network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class BrowserPage:
    page: Any
    problems: list[str]


@contextlib.contextmanager
def chromium_page(width: int = 900, height: int = 900) -> Iterator[BrowserPage]:
    """A fresh headless Chromium (its own empty profile) with one page; closed afterwards."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: `make test` installs Debian's chromium."
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            seen = BrowserPage(page, [])
            page.on("pageerror", lambda exc: seen.problems.append(f"page error: {exc}"))
            page.on("console", lambda m: _console(seen.problems, m))
            page.on("response", lambda r: _response(seen.problems, r))
            yield seen
        finally:
            browser.close()


def _console(problems: list[str], message: Any) -> None:
    if message.type in ("error", "warning"):
        problems.append(f"console {message.type}: {message.text} at {message.location['url']}")


def _response(problems: list[str], response: Any) -> None:
    if response.status >= 400:
        problems.append(f"{response.status} for {response.request.method} {response.url}")
