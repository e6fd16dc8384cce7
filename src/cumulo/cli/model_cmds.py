"""`cumulo validate` and `cumulo package`: check a service and build its package.

``validate`` prints every problem (``file:line: sentence``) and exits 2 if there is any; when
the service is valid it prints a short summary. Azure's per-deployment limits (25 roles, 25 input
endpoints, 50 instances...) are enforced unless ``--skip-limits`` is given or the environment
has ``CUMULO_SKIP_LIMIT_VALIDATION=1`` (or the emulator's ``_CSRUN_SKIP_LIMIT_VALIDATION=1``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from cumulo.errors import ModelError
from cumulo.model import AZURE_LIMITS, NO_LIMITS, Limits, Service, deploy_blockers, load_service
from cumulo.model.definition import EndpointProtocol, ProgramEntryPoint
from cumulo.package import build_package, load_package_service, open_package

LIMIT_ENV_VARS = ("CUMULO_SKIP_LIMIT_VALIDATION", "_CSRUN_SKIP_LIMIT_VALIDATION")


def _limits(skip: bool) -> Limits:
    if skip or any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in LIMIT_ENV_VARS):
        return NO_LIMITS
    return AZURE_LIMITS


def _load(target: Path, config: Path | None, limits: Limits) -> Service:
    if target.is_file() and target.suffix.lower() == ".cspkg":
        return load_package_service(open_package(target), config, limits=limits)
    return load_service(target, config, limits=limits)


def summary(service: Service) -> list[str]:
    """A few lines describing a valid service: roles, instances, endpoints, site apps."""
    sd, sc = service.definition, service.configuration
    total = sc.total_instances
    lines = [
        f"{sd.name}: valid ({service.definition_file} + {service.configuration_file}); "
        f"{len(sd.roles)} role(s), {total} instance(s), {sd.upgrade_domain_count} update domains"
    ]
    for role in sd.roles:
        rc = sc.role(role.name)
        count = rc.instances if rc else 0
        eps = [f"{e.name} {e.protocol.value}:{e.port}" for e in role.input_endpoints]
        eps += [f"{e.name} internal {e.protocol.value}" for e in role.internal_endpoints]
        eps += [
            f"{e.name} instance-input {e.protocol.value}:{e.public_ports.min}-{e.public_ports.max}"
            for e in role.instance_input_endpoints
        ]
        lines.append(
            f"  {role.kind.value} {role.name}: {count} x {role.vmsize}; endpoints: "
            + (", ".join(eps) or "none")
        )
        for app in service.apps_of(role.name):
            lines.append(
                f"    site {app.site}{'' if app.path == '/' else app.path}: "
                f"{app.interface.value} app {app.handler} (from {app.source})"
            )
        entry = role.runtime.entry_point if role.runtime else None
        if isinstance(entry, ProgramEntryPoint):
            lines.append(f"    program: {entry.command_line}")
    https = [
        e.name for r in sd.roles for e in r.input_endpoints if e.protocol is EndpointProtocol.HTTPS
    ]
    if https:
        lines.append(f"  https endpoints: {', '.join(https)}")
    return lines


@click.command("validate")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--config",
    "-c",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The .cscfg to validate with (default: the one next to the definition).",
)
@click.option("--skip-limits", is_flag=True, help="Do not enforce Azure's per-deployment limits.")
def validate_cmd(target: Path, config: Path | None, skip_limits: bool) -> None:
    """Check a service directory, .csdef or .cspkg and print every problem."""
    try:
        service = _load(target, config, _limits(skip_limits))
    except ModelError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        n = len(exc.problems)
        click.echo(f"{n} problem{'s' if n != 1 else ''} found.", err=True)
        sys.exit(exc.exit_code)
    for line in summary(service):
        click.echo(line)
    for warning in deploy_blockers(service.definition, service.definition_file):
        click.echo(f"warning: {warning} (cumulo will refuse to deploy this)", err=True)


@click.command("package")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the .cspkg.",
)
@click.option(
    "--config",
    "-c",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The .cscfg to validate with (default: the one in the directory).",
)
@click.option("--skip-limits", is_flag=True, help="Do not enforce Azure's per-deployment limits.")
def package_cmd(directory: Path, output: Path, config: Path | None, skip_limits: bool) -> None:
    """Validate a service directory and build a reproducible .cspkg from it."""
    try:
        built = build_package(directory, output, config=config, limits=_limits(skip_limits))
    except ModelError as exc:
        for problem in exc.problems:
            click.echo(str(problem))
        n = len(exc.problems)
        click.echo(f"{n} problem{'s' if n != 1 else ''} found; no package written.", err=True)
        sys.exit(exc.exit_code)
    click.echo(
        f"wrote {built.path} ({built.files} files, {built.size} bytes, sha256 {built.sha256})"
    )


COMMANDS: list[click.Command] = [validate_cmd, package_cmd]
