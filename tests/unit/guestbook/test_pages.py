"""The web role's HTML: everything a visitor wrote is escaped; the page says what is pending."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st
from pages import error_page, index_page


@dataclass
class View:
    name: str
    message: str
    created: datetime | None = None
    picture: str | None = None
    thumbnail: str | None = None
    thumbnail_state: str = "none"


@given(st.text(max_size=80), st.text(max_size=200), st.text(max_size=40))
def test_visitor_text_is_always_escaped(name: str, message: str, error: str) -> None:
    page = index_page(
        [View(name, message)], instance="Web_IN_0", error=error or None, values={"name": name}
    ).decode()
    # The only tags are the page's own: no '<' from the visitor survives.
    tags = set(re.findall(r"</?([a-zA-Z0-9!]+)", page))
    assert tags <= {
        "!doctype", "html", "head", "meta", "title", "link", "body", "header", "h1", "a",
        "main", "form", "h2", "label", "input", "textarea", "small", "button", "section",
        "ol", "li", "div", "p", "strong", "time", "footer",
    }  # fmt: skip
    assert page.count("<strong>") == 1


def test_entries_show_thumbnail_pending_failed_or_nothing() -> None:
    when = datetime.now(UTC).replace(second=0, microsecond=0)
    page = index_page(
        [
            View("a", "done", when, "1.png", "1.jpg", "done"),
            View("b", "waiting", when, "2.png", None, "pending"),
            View("c", "broken", when, "3.png", None, "failed"),
            View("d", "text only", when),
        ],
        instance="WebRole_IN_1",
    ).decode()
    assert '<a class="pic" href="/pictures/1.png"><img src="/thumbnails/1.jpg"' in page
    assert "thumbnail…" in page
    assert '<a class="pic none" href="/pictures/3.png">' in page
    assert when.strftime("%Y-%m-%d %H:%M UTC") in page
    assert 'http-equiv="refresh"' in page  # something is pending: the page refreshes itself
    assert "Served by WebRole_IN_1" in page


def test_no_refresh_without_pending_thumbnails_and_an_empty_book() -> None:
    page = index_page([], instance="x").decode()
    assert "No entries yet" in page and "refresh" not in page


def test_error_page_says_what_happened() -> None:
    page = error_page(503, "Storage unavailable", "Try <again>.", instance="x").decode()
    assert "<h2>Storage unavailable</h2>" in page and "Try &lt;again&gt;." in page
    assert "HTTP 503" in page and 'href="/"' in page


def test_an_old_pending_thumbnail_does_not_refresh_the_page_for_ever() -> None:
    signed = datetime(2026, 11, 25, 9, 5, tzinfo=UTC)
    entry = View("b", "waiting", signed, "2.png", None, "pending")
    soon = index_page([entry], instance="x", now=signed + timedelta(seconds=30)).decode()
    later = index_page([entry], instance="x", now=signed + timedelta(minutes=5)).decode()
    assert 'http-equiv="refresh"' in soon and 'http-equiv="refresh"' not in later
