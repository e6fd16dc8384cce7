"""Storage accounts: names and keys the service accepts.

``devstoreaccount1`` with the well-known key is always present, so ``UseDevelopmentStorage=true``
works. More accounts come from ``--account NAME:KEY`` or ``CUMULO_STORAGE_ACCOUNTS`` in Azurite's
``AZURITE_ACCOUNTS`` format (``name1:key1;name2:key2``); keys are base64 as Azure shows them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cumulo.errors import InputError

DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")


@dataclass(frozen=True)
class Account:
    name: str
    key_b64: str
    key: bytes

    def connection_string(self, host: str, blob_port: int, queue_port: int, table_port: int) -> str:
        """The explicit connection string a role setting such as StorageConnectionString gets."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.name};AccountKey={self.key_b64};"
            f"BlobEndpoint=http://{host}:{blob_port}/{self.name};"
            f"QueueEndpoint=http://{host}:{queue_port}/{self.name};"
            f"TableEndpoint=http://{host}:{table_port}/{self.name};"
        )


def make_account(name: str, key_b64: str) -> Account:
    if not _ACCOUNT_NAME.match(name):
        raise InputError(
            f"Storage account name {name!r} is invalid; use 3-24 lower-case letters and digits."
        )
    try:
        key = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"The key of storage account {name!r} is not valid base64.") from exc
    if not key:
        raise InputError(f"The key of storage account {name!r} is empty.")
    return Account(name, key_b64, key)


def parse_accounts(spec: str) -> list[Account]:
    """Parse ``name:key;name:key`` (Azurite's AZURITE_ACCOUNTS format)."""
    accounts = []
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        name, sep, key = part.partition(":")
        if not sep:
            raise InputError(f"Storage account {part!r} must be written NAME:BASE64KEY.")
        accounts.append(make_account(name.strip(), key.strip()))
    return accounts


def account_table(extra: Iterable[Account] = ()) -> dict[str, Account]:
    """devstoreaccount1 plus the extra accounts (an extra one may replace its key)."""
    table = {DEV_ACCOUNT: make_account(DEV_ACCOUNT, DEV_KEY)}
    for account in extra:
        table[account.name] = account
    return table
