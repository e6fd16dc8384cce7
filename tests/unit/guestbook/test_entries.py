"""The web role's entry rules: validation sentences, picture sniffing, newest-first keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from entries import (
    MESSAGE_MAX,
    NAME_MAX,
    PICTURE_MAX,
    Picture,
    blob_extension,
    is_partition_key,
    is_row_key,
    partition_key,
    picture_blob_name,
    row_key,
    sniff_picture,
    validate,
)
from formdata import FilePart, FormData, FormError
from hypothesis import given
from hypothesis import strategies as st

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 20


def form(name: str = "Ada", message: str = "Hi", picture: FilePart | None = None) -> FormData:
    return FormData({"name": name, "message": message}, {"picture": picture} if picture else {})


def test_a_valid_signature_is_cleaned() -> None:
    sig = validate(form("  Ada  ", "one\r\ntwo\rthree\n", FilePart("a.png", "text/plain", PNG)))
    assert sig.name == "Ada" and sig.message == "one\ntwo\nthree"
    assert sig.picture == Picture(PNG, "png") and sig.picture.content_type == "image/png"


def test_an_empty_file_input_is_no_picture() -> None:
    assert validate(form(picture=FilePart("", "application/octet-stream", b""))).picture is None


@pytest.mark.parametrize(
    ("data", "sentence", "status"),
    [
        (form(name=""), "Please write your name.", 400),
        (form(message=" \n "), "Please write your message.", 400),
        (form(name="a" * (NAME_MAX + 1)), f"at most {NAME_MAX} fit", 400),
        (form(message="m" * (MESSAGE_MAX + 1)), f"at most {MESSAGE_MAX} fit", 400),
        (form(name="two\nlines"), "must not contain line breaks", 400),
        (form(message="bell\x07"), "must not contain control characters", 400),
        (form(picture=FilePart("e.png", "image/png", b"")), "The picture 'e.png' is empty.", 400),
        (
            form(picture=FilePart("x.svg", "image/svg+xml", b"<svg onload=alert(1)>")),
            "The file 'x.svg' is not a picture the guestbook accepts; send a JPEG, PNG, GIF or "
            "WebP image.",
            400,
        ),
        (
            form(picture=FilePart("big.png", "image/png", PNG + b"\0" * PICTURE_MAX)),
            "at most 4 MB are accepted",
            413,
        ),
    ],
)
def test_invalid_signatures_get_a_sentence(data: FormData, sentence: str, status: int) -> None:
    with pytest.raises(FormError) as caught:
        validate(data)
    assert sentence in caught.value.sentence
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("head", "ext"),
    [
        (b"\xff\xd8\xff\xe0", "jpg"),
        (b"\x89PNG\r\n\x1a\n", "png"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
        (b"<svg", None),
        (b"BM", None),
        (b"", None),
    ],
)
def test_pictures_are_recognised_by_their_bytes(head: bytes, ext: str | None) -> None:
    assert sniff_picture(head + b"\0" * 16) == ext


@given(st.integers(0, 10**18 * 5), st.integers(1, 10**12))
def test_newer_row_keys_sort_first(t: int, later: int) -> None:
    newer, older = row_key(t + later, "a" * 12), row_key(t, "f" * 12)
    assert newer < older
    assert is_row_key(newer) and is_row_key(older)


def test_row_keys_are_unique_within_a_nanosecond() -> None:
    assert len({row_key(1_700_000_000_000_000_000) for _ in range(100)}) == 100


def test_partition_key_is_the_utc_date() -> None:
    late = datetime(2026, 11, 25, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert partition_key(late) == "2026-11-26"
    assert is_partition_key(partition_key(datetime.now(UTC)))


def test_only_names_the_guestbook_made_are_blob_names() -> None:
    name = picture_blob_name(row_key(123), "webp")
    assert blob_extension(name) == "webp"
    for bad in ("../etc/passwd", "x.jpg", name + "x", name.replace(".webp", ".svg"), ""):
        assert blob_extension(bad) is None
