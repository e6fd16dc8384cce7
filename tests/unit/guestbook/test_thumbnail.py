"""The worker role's thumbnails, made with real Pillow."""

from __future__ import annotations

import io

import pytest
import thumbnail
from PIL import Image
from thumbnail import ThumbnailError, make_thumbnail


def encode(image: Image.Image, fmt: str, **kw: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kw)
    return out.getvalue()


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize(
    ("size", "expected"),
    [((1600, 1200), (160, 120)), ((300, 900), (53, 160)), ((100, 50), (100, 50))],
)
def test_fits_in_160_keeping_the_aspect_ratio(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    thumb = decode(make_thumbnail(encode(Image.new("RGB", size, (10, 200, 30)), "JPEG")))
    assert thumb.format == "JPEG" and thumb.size == expected


def test_transparency_is_flattened_on_white() -> None:
    clear = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    thumb = decode(make_thumbnail(encode(clear, "PNG")))
    assert thumb.mode == "RGB"
    assert all(channel > 245 for channel in thumb.getpixel((32, 32)))  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mode", "fmt"), [("P", "GIF"), ("L", "PNG"), ("RGB", "WEBP"), ("CMYK", "JPEG"), ("1", "PNG")]
)
def test_other_modes_and_formats(mode: str, fmt: str) -> None:
    thumb = decode(make_thumbnail(encode(Image.new(mode, (400, 200)), fmt)))
    assert thumb.mode == "RGB" and thumb.size == (160, 80)


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    data = encode(Image.new("RGB", (400, 200)), "JPEG", exif=exif.tobytes())
    assert decode(make_thumbnail(data)).size == (80, 160)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello",
        b"\xff\xd8\xff\xe0" + b"\0" * 100,
        encode(Image.new("RGB", (50, 50)), "PNG")[:60],
    ],
    ids=["empty", "text", "jpeg-header-only", "truncated-png"],
)
def test_unreadable_data_is_a_thumbnail_error(data: bytes) -> None:
    with pytest.raises(ThumbnailError, match="cannot be read"):
        make_thumbnail(data)


def test_too_many_pixels_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thumbnail, "MAX_PIXELS", 100 * 100)
    with pytest.raises(ThumbnailError, match=r"101 × 100 pixels; at most 10,000"):
        make_thumbnail(encode(Image.new("RGB", (101, 100)), "PNG"))
