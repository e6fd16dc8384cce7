"""`cumulo storage`: run the Azure-compatible storage service in the foreground.

``cumulo storage`` (or ``cumulo storage serve`` with options) listens on 127.0.0.1:10000-10002
until Ctrl-C/SIGTERM; ``cumulo storage connection-string`` prints what a role setting such as
``StorageConnectionString`` gets for an account.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from cumulo.storage.azure import DEV_ACCOUNT, StorageSettings, run
from cumulo.storage.azure.accounts import Account, account_table, parse_accounts

_DEFAULT_DATA = Path(".data/storage")


def _serve(
    data_dir: Path = _DEFAULT_DATA,
    host: str = "127.0.0.1",
    blob_port: int = 10000,
    queue_port: int = 10001,
    table_port: int = 10002,
    durability: str = "full",
    accounts: tuple[str, ...] = (),
    accounts_file: Path | None = None,
    ready_file: Path | None = None,
    loop: str = "auto",
) -> None:
    extra: list[Account] = parse_accounts(os.environ.get("CUMULO_STORAGE_ACCOUNTS", ""))
    for spec in accounts:
        extra.extend(parse_accounts(spec))
    run(
        StorageSettings(
            data_dir=data_dir,
            host=host,
            blob_port=blob_port,
            queue_port=queue_port,
            table_port=table_port,
            durability=durability,
            accounts=tuple(extra),
            accounts_file=accounts_file,
            ready_file=ready_file,
            loop=loop,
        )
    )


@click.group("storage", invoke_without_command=True)
@click.pass_context
def storage(ctx: click.Context) -> None:
    """The Azure-compatible storage service (queues, blobs, tables).

    Without a subcommand: serve with the defaults (127.0.0.1:10000-10002, data in
    .data/storage), which is what UseDevelopmentStorage=true expects.
    """
    if ctx.invoked_subcommand is None:
        _serve()


@storage.command("serve")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=_DEFAULT_DATA,
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
    "--accounts-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help='JSON {"name": "key"} of extra accounts, re-read when it changes.',
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the bound ports here as JSON once listening.",
)
@click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop (auto: uvloop when installed).",
)
def serve_cmd(
    data_dir: Path,
    host: str,
    blob_port: int,
    queue_port: int,
    table_port: int,
    durability: str,
    accounts: tuple[str, ...],
    accounts_file: Path | None,
    ready_file: Path | None,
    loop: str,
) -> None:
    """Serve blob, queue and table endpoints until interrupted (Ctrl-C or SIGTERM)."""
    for name, port in (("--blob-port", blob_port), ("--queue-port", queue_port),
                       ("--table-port", table_port)):  # fmt: skip
        if not 0 <= port <= 65535:
            raise click.BadParameter(f"{port} is not a port (0-65535).", param_hint=name)
    _serve(
        data_dir,
        host,
        blob_port,
        queue_port,
        table_port,
        durability,
        accounts,
        accounts_file,
        ready_file,
        loop,
    )


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
