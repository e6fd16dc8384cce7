"""Entry point of the ``cumulo`` command: builds the click group from one module per noun.

Each module in ``COMMAND_MODULES`` exposes ``COMMANDS``, a list of click commands or groups.
Errors from the library (``cumulo.errors.CumuloError``) become a sentence on stderr and the
error's exit code; a user never sees a traceback unless ``CUMULO_DEBUG=1``.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence

import click

from cumulo import __version__
from cumulo.errors import CumuloError

# One module per noun; each holds its own commands (see the module docstrings).
COMMAND_MODULES = (
    "cumulo.cli.model_cmds",
    "cumulo.cli.host_cmds",
    "cumulo.cli.lb_cmds",
    "cumulo.cli.storage_cmds",
    "cumulo.cli.service_cmds",
    "cumulo.cli.autoscale_cmds",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cumulo")
def cli() -> None:
    """cumulo runs Azure Cloud Services applications (.csdef/.cscfg) on your own machines."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        for command in getattr(module, "COMMANDS", []):
            cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line; exit with the error's exit code on a CumuloError."""
    try:
        # Not standalone, click returns the code of a ``ctx.exit(code)`` instead of exiting.
        code = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except CumuloError as exc:
        if os.environ.get("CUMULO_DEBUG") == "1":
            raise
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
