"""The guestbook's HTML. Pure: every value that came from a visitor goes through ``html.escape``."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from entries import MESSAGE_MAX, NAME_MAX, PICTURE_MAX


class EntryView(Protocol):
    name: str
    message: str
    created: datetime | None
    picture: str | None
    thumbnail: str | None
    thumbnail_state: str


REFRESH_WINDOW = timedelta(minutes=2)
"""The page updates its entries by itself while an entry this young waits for its thumbnail."""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


REFRESH_SECONDS = 5
"""How often it does (live.js; a meta refresh without scripts)."""


def _layout(title: str, body: str, *, instance: str, refresh: bool = False) -> bytes:
    # While a thumbnail is on its way, live.js fetches the page again every few seconds and
    # swaps in the entries, so that what a visitor is typing in the form stays. A browser
    # without scripts reloads the whole page instead.
    meta = (
        f'<noscript><meta http-equiv="refresh" content="{REFRESH_SECONDS}"></noscript>'
        f'<script src="/static/live.js" data-seconds="{REFRESH_SECONDS}" defer></script>'
        if refresh
        else ""
    )
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{meta}<title>{_e(title)}</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/style.css"></head>\n'
        f'<body><header><h1><a href="/">Guestbook</a></h1></header>\n<main>\n{body}\n</main>\n'
        f"<footer>Served by {_e(instance)} · a cumulo example</footer>\n</body></html>\n"
    ).encode()


def _form(values: Mapping[str, str]) -> str:
    return (
        '<form class="sign" method="post" action="/sign" enctype="multipart/form-data">\n'
        "<h2>Sign the guestbook</h2>\n"
        f'<label>Name <input name="name" required maxlength="{NAME_MAX}" '
        f'value="{_e(values.get("name", ""))}"></label>\n'
        f'<label>Message <textarea name="message" required maxlength="{MESSAGE_MAX}" rows="3">'
        f"{_e(values.get('message', ''))}</textarea></label>\n"
        f"<label>Picture <small>(optional; JPEG, PNG, GIF or WebP, up to "
        f"{PICTURE_MAX // 1048576} MB)</small>"
        '<input type="file" name="picture" accept="image/jpeg,image/png,image/gif,image/webp">'
        "</label>\n"
        '<button type="submit">Sign</button>\n</form>'
    )


def _entry(entry: EntryView) -> str:
    when = entry.created.strftime("%Y-%m-%d %H:%M UTC") if entry.created else ""
    stamp = entry.created.isoformat(timespec="seconds") if entry.created else ""
    if entry.thumbnail:
        link = (
            f"/pictures/{_e(entry.picture)}"
            if entry.picture
            else f"/thumbnails/{_e(entry.thumbnail)}"
        )
        figure = (
            f'<a class="pic" href="{link}"><img src="/thumbnails/{_e(entry.thumbnail)}" '
            f'alt="picture from {_e(entry.name)}" loading="lazy"></a>'
        )
    elif entry.picture and entry.thumbnail_state == "failed":
        figure = f'<a class="pic none" href="/pictures/{_e(entry.picture)}">picture</a>'
    elif entry.picture:
        figure = '<span class="pic pending" title="the worker role is making it">thumbnail…</span>'
    else:
        figure = ""
    return (
        f'<li class="entry">{figure}<div><p class="who"><strong>{_e(entry.name)}</strong> '
        f'<time datetime="{_e(stamp)}">{_e(when)}</time></p>'
        f'<p class="msg">{_e(entry.message)}</p></div></li>'
    )


def index_page(
    entries: Iterable[EntryView],
    *,
    instance: str,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> bytes:
    """The guestbook: the form (with an error and the visitor's values kept) and the entries."""
    items = list(entries)
    banner = f'<p class="error" role="alert">{_e(error)}</p>\n' if error else ""
    listing = (
        '<ol class="entries">' + "".join(_entry(e) for e in items) + "</ol>"
        if items
        else '<p class="empty">No entries yet. Be the first to sign!</p>'
    )
    # Refresh while a recent thumbnail is on its way; an old pending one (its request was never
    # queued, e.g. the instance died while signing) must not make the page refresh for ever.
    clock = now or datetime.now(UTC)
    pending = any(
        e.picture
        and not e.thumbnail
        and e.thumbnail_state == "pending"
        and e.created is not None
        and clock - e.created < REFRESH_WINDOW
        for e in items
    )
    return _layout(
        "Guestbook",
        f"{banner}{_form(values or {})}\n"
        f'<section id="entries"><h2>Entries</h2>\n{listing}</section>',
        instance=instance,
        refresh=pending and error is None,
    )


def error_page(status: int, title: str, sentence: str, *, instance: str) -> bytes:
    """A short page for a failed request: what happened, in one sentence, and a way back."""
    body = (
        f'<section class="problem"><h2>{_e(title)}</h2><p>{_e(sentence)}</p>'
        f'<p class="code">HTTP {status}</p><p><a href="/">Back to the guestbook</a></p></section>'
    )
    return _layout(title, body, instance=instance)
