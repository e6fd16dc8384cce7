"""Placeholder: the table service (being written)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cumulo.storage.azure.auth import Need
from cumulo.storage.azure.errors import StorageError
from cumulo.storage.azure.http import Request, Response


class TableService:
    name = "table"

    def __init__(self, db: Any, now: Any, props: Any, root: Path | None = None) -> None:
        self.db = db

    def route(
        self, req: Request, account: str, parts: list[str]
    ) -> tuple[Need, Callable[[], Response]]:
        raise StorageError(501, "NotImplemented", "Not implemented yet.")
