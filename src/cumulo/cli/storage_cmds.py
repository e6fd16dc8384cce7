"""`cumulo storage`: run the Azure-compatible storage service in the foreground."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import click

from cumulo.storage.azure import DEV_ACCOUNT, StorageSettings, run_forever
from cumulo.storage.azure.accounts import Account, account_table, parse_accounts


@click.group("storage")
def storage() -> None:
    """The Azure-compatible storage service (queues, blobs, tables)."""


@storage.command("serve")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(".data/storage"),
    show_default=True,
    help="Directory for the database and blob contents.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--blob-port", type=int, default=10000, show_default=True, help="0 picks a port.")
@click.option("--queue-port", type=int, default=10001, show_default=True, help="0 picks a port.")
@click.option("--table-port", type=int, default=10002, show_default=True, help="0 picks a port.")
@click.option(
    "--durability",
    type=click.Choice(["full", "normal", "off"]),
    default="full",
    show_default=True,
    help="full: fsync every acknowledged write; normal: survive a killed process, not power "
    "loss; off: benchmarks only.",
)
@click.option(
    "--account",
    "accounts",
    multiple=True,
    metavar="NAME:KEY",
    help="An extra account (repeatable). Also read from CUMULO_STORAGE_ACCOUNTS='n1:k1;n2:k2'.",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the bound ports here as JSON once listening.",
)
def serve_cmd(
    data_dir: Path,
    host: str,
    blob_port: int,
    queue_port: int,
    table_port: int,
    durability: str,
    accounts: tuple[str, ...],
    ready_file: Path | None,
) -> None:
    """Serve blob, queue and table endpoints until interrupted (Ctrl-C or SIGTERM)."""
    extra: list[Account] = parse_accounts(os.environ.get("CUMULO_STORAGE_ACCOUNTS", ""))
    for spec in accounts:
        extra.extend(parse_accounts(spec))
    settings = StorageSettings(
        data_dir=data_dir,
        host=host,
        blob_port=blob_port,
        queue_port=queue_port,
        table_port=table_port,
        durability=durability,
        accounts=tuple(extra),
        ready_file=ready_file,
    )
    asyncio.run(run_forever(settings))


@storage.command("connection-string")
@click.option("--account", "account_name", default=DEV_ACCOUNT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--blob-port", type=int, default=10000, show_default=True)
@click.option("--queue-port", type=int, default=10001, show_default=True)
@click.option("--table-port", type=int, default=10002, show_default=True)
def connection_string(
    account_name: str, host: str, blob_port: int, queue_port: int, table_port: int
) -> None:
    """Print the connection string a role setting (e.g. StorageConnectionString) gets."""
    table = account_table(parse_accounts(os.environ.get("CUMULO_STORAGE_ACCOUNTS", "")))
    account = table.get(account_name)
    if account is None:
        raise click.BadParameter(
            f"no storage account {account_name!r}; known: {', '.join(sorted(table))}",
            param_hint="--account",
        )
    click.echo(account.connection_string(host, blob_port, queue_port, table_port))


COMMANDS: list[click.Command] = [storage]
