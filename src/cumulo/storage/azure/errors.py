"""The storage service's errors: Azure's error codes, carried by the cumulo hierarchy.

A handler raises ``StorageError(status, code, message)``; the server turns it into Azure's wire
form (XML ``<Error>`` for blob and queue, JSON ``odata.error`` for table) with the
``x-ms-error-code`` header, which the SDKs map to their exception types.
"""

from __future__ import annotations

from cumulo.errors import CumuloError


class StorageError(CumuloError):
    """An Azure Storage error response: HTTP status, Azure error code and a sentence."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = status
        self.code = code
        self.extra_headers = headers or []


def bad_query(name: str, value: str, why: str) -> StorageError:
    return StorageError(
        400,
        "InvalidQueryParameterValue",
        f"Value for one of the query parameters specified in the request URI is invalid: "
        f"{name}={value!r} ({why}).",
        [("x-ms-query-parameter-name", name)],
    )


def out_of_range(name: str, value: str, why: str) -> StorageError:
    return StorageError(
        400,
        "OutOfRangeQueryParameterValue",
        f"One of the query parameters specified in the request URI is outside the permissible "
        f"range: {name}={value!r} ({why}).",
        [("x-ms-query-parameter-name", name)],
    )


def bad_header(name: str, value: str, why: str) -> StorageError:
    return StorageError(
        400,
        "InvalidHeaderValue",
        f"The value for one of the HTTP headers is not in the correct format: "
        f"{name}={value!r} ({why}).",
    )


def invalid_xml(why: str) -> StorageError:
    return StorageError(
        400, "InvalidXmlDocument", f"XML specified is not syntactically valid: {why}."
    )


def invalid_name(kind: str, name: str, rule: str) -> StorageError:
    return StorageError(
        400,
        "InvalidResourceName",
        f"The specified resource name contains invalid characters: {kind} name {name!r} ({rule}).",
    )
