"""The web role's form parser: browser-shaped bodies, malformed ones, and properties."""

from __future__ import annotations

import contextlib

import pytest
from formdata import FilePart, FormData, FormError, boundary_of, parse_form, parse_header_value
from hypothesis import given, settings
from hypothesis import strategies as st

BOUNDARY = "----WebKitFormBoundaryx8T3bS0vAqLd9GmQ"


def encode(fields: dict[str, str], files: dict[str, FilePart], boundary: str = BOUNDARY) -> bytes:
    """Encode a form the way browsers do (HTML's multipart/form-data algorithm)."""

    def quote(value: str) -> str:
        return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")

    out = b""
    for name, value in fields.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{quote(name)}"\r\n\r\n'
            ).encode()
            + value.encode()
            + b"\r\n"
        )
    for name, part in files.items():
        out += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{quote(name)}"; '
                f'filename="{quote(part.filename)}"\r\nContent-Type: {part.content_type}\r\n\r\n'
            ).encode()
            + part.data
            + b"\r\n"
        )
    return out + f"--{boundary}--\r\n".encode()


CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def test_a_browser_form_with_a_picture() -> None:
    png = b"\x89PNG\r\n\x1a\n\r\n--not-the-boundary\r\n\x00\xff"
    body = encode(
        {"name": "Zoë", "message": "line one\r\nline two"},
        {"picture": FilePart("moi.png", "image/png", png)},
    )
    form = parse_form(CTYPE, body)
    assert form.fields == {"name": "Zoë", "message": "line one\r\nline two"}
    assert form.files == {"picture": FilePart("moi.png", "image/png", png)}


def test_an_empty_file_input_and_a_preamble() -> None:
    body = b"ignored preamble\r\n" + encode(
        {"name": "A"}, {"picture": FilePart("", "application/octet-stream", b"")}
    )
    form = parse_form(CTYPE, body)
    assert form.files["picture"] == FilePart("", "application/octet-stream", b"")


def test_the_first_of_repeated_names_wins() -> None:
    body = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nfirst\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="name"\r\n\r\nsecond\r\n'
        f"--{BOUNDARY}--"
    ).encode()
    assert parse_form(CTYPE, body).fields == {"name": "first"}


def test_urlencoded_forms() -> None:
    form = parse_form("application/x-www-form-urlencoded", b"name=Ada+L&message=hi%21&x=")
    assert form == FormData({"name": "Ada L", "message": "hi!", "x": ""}, {})


def test_header_parameters() -> None:
    assert parse_header_value('form-data; name="a;b"; filename="x\\"y.png"') == (
        "form-data",
        {"name": "a;b", "filename": 'x"y.png'},
    )
    assert parse_header_value("form-data; filename=plain.gif; filename*=UTF-8''%C3%A9t%C3%A9.gif")[
        1
    ] == {"filename": "été.gif"}
    assert parse_header_value('Multipart/Form-Data; BOUNDARY="abc"') == (
        "multipart/form-data",
        {"boundary": "abc"},
    )


@pytest.mark.parametrize(
    ("ctype", "body", "sentence"),
    [
        ("application/json", b"{}", "must be sent as multipart/form-data, not application/json"),
        ("", b"", "not nothing"),
        ("multipart/form-data", b"", "boundary is missing or invalid"),
        (f"multipart/form-data; boundary={'x' * 71}", b"", "boundary is missing or invalid"),
        (CTYPE, b"no boundary here", "does not contain its boundary"),
        (
            CTYPE,
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\nvalue'.encode(),
            "ends before its closing boundary",
        ),
        (
            CTYPE,
            f"--{BOUNDARY}\r\nno colon\r\n\r\nx\r\n--{BOUNDARY}--".encode(),
            "malformed header",
        ),
        (CTYPE, f"--{BOUNDARY}\r\nX: y\r\n\r\nx\r\n--{BOUNDARY}--".encode(), "form-data name"),
        (
            CTYPE,
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n'.encode()
            + b"\xff\xfe\r\n"
            + f"--{BOUNDARY}--".encode(),
            "'a' is not valid UTF-8",
        ),
        (
            CTYPE,
            encode({f"f{i}": "v" for i in range(17)}, {}),
            "more than 16 parts",
        ),
        ("application/x-www-form-urlencoded", "name=é".encode(), "not valid URL-encoded"),
        ("application/x-www-form-urlencoded", b"a=%ff", "not valid URL-encoded"),
    ],
)
def test_bad_forms_are_a_sentence(ctype: str, body: bytes, sentence: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_form(ctype, body)
    assert sentence in caught.value.sentence
    assert caught.value.status == 400


names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=12)
values = st.text(st.characters(blacklist_categories=["Cs"]), max_size=60)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.dictionaries(names, values, max_size=4),
    files=st.dictionaries(
        names,
        st.builds(
            FilePart,
            st.text(st.characters(blacklist_categories=["Cs"]), max_size=12),
            st.sampled_from(["image/png", "application/octet-stream"]),
            st.binary(max_size=200),
        ),
        max_size=3,
    ),
)
def test_what_a_browser_encodes_parses_back(
    fields: dict[str, str], files: dict[str, FilePart]
) -> None:
    # Browsers percent-escape CR, LF and '"' in names; only forms without them round-trip.
    def plain(s: str) -> bool:
        return not any(c in s for c in '\r\n"\\')

    fields = {k: v for k, v in fields.items() if plain(k)}
    files = {k: f for k, f in files.items() if plain(k) and plain(f.filename) and k not in fields}
    body = encode(fields, files)
    form = parse_form(CTYPE, body)
    assert form.fields == fields
    assert form.files == files


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.sampled_from([CTYPE, "application/x-www-form-urlencoded"]))
def test_any_body_parses_or_is_a_form_error(body: bytes, ctype: str) -> None:
    try:
        parse_form(ctype, body)
    except FormError as exc:
        assert exc.sentence.endswith(".")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=300), st.binary(min_size=1, max_size=50))
def test_truncated_or_corrupted_bodies_never_crash(cut: int, junk: bytes) -> None:
    body = encode(
        {"name": "Ada", "message": "hello"}, {"picture": FilePart("p.png", "image/png", b"\x89PNG")}
    )
    for candidate in (body[:cut], body[:cut] + junk + body[cut:]):
        with contextlib.suppress(FormError):
            parse_form(CTYPE, candidate)


def test_boundary_of_a_quoted_boundary() -> None:
    assert boundary_of('multipart/form-data; boundary="a b:c"') == b"a b:c"
