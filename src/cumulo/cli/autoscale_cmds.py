"""`cumulo autoscale` commands: a role's autoscale setting, through the management API.

    cumulo autoscale set SERVICE --role R --file rules.json [--slot S]
    cumulo autoscale show SERVICE [--role R] [--slot S]
    cumulo autoscale off SERVICE --role R [--slot S]

The rule format (capacity, CPU and queue rules) is in docs/autoscale.md. ``show`` prints each
setting with its last evaluation: the rules' metric values, the decision and why, the last
scale action. Every command takes ``--json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from cumulo.cli.service_cmds import SLOT, _client, _emit, json_option
from cumulo.controller.autoscale import AutoscaleSettingError, parse_setting
from cumulo.errors import InputError


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(f"{path} cannot be read: {exc.strerror or exc}.") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{path} is not JSON ({exc}).") from None


def _num(x: float | None) -> str:
    if x is None:
        return "no data"
    return f"{x:.0f}" if x == round(x) else f"{x:.2f}".rstrip("0")


def _describe(view: dict[str, Any]) -> list[str]:
    setting = view["setting"]
    cap = setting["capacity"]
    lines = [
        f"{view['slot']} {view['role']}: {cap['minimum']}-{cap['maximum']} instances "
        f"(default {cap['default']}), {len(setting['rules'])} rule(s)"
    ]
    try:
        rules = parse_setting(setting).rules
    except AutoscaleSettingError:
        rules = ()
    for i, rule in enumerate(rules):
        a = rule.action
        how = f"to {a.value}" if a.type.value == "ExactCount" else f"by {a.value}"
        if a.type.value == "PercentChangeCount":
            how += " %"
        cooldown = setting["rules"][i]["scaleAction"]["cooldown"]
        lines.append(
            f"  rules[{i}]: {rule.describe()} -> {a.direction.value} {how}, cooldown {cooldown}"
        )
    status = view.get("status")
    if not status:
        lines.append("  not evaluated yet")
        return lines
    if status.get("problem"):
        lines.append(f"  problem: {status['problem']}")
    if "current" in status:
        values = ", ".join(f"rules[{i}] = {_num(v)}" for i, v in enumerate(status["values"]))
        ago = max(0.0, time.time() - float(status["evaluated_at"]))
        lines.append(
            f"  now: {status['current']} instance(s); {values or 'no rules'} "
            f"(evaluated {ago:.0f} s ago)"
        )
        lines.append(f"  decision: {status['decision']}")
        if status.get("deferred"):
            lines.append(f"  waiting: {status['deferred']}")
    last = status.get("last_action")
    if last:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(last["at"])))
        lines.append(
            f"  last action: {last['from']} -> {last['to']} at {when} "
            f"(operation {last['operation']}): {last['reason']}"
        )
    return lines


@click.group("autoscale")
def autoscale() -> None:
    """Scale a role on CPU and queue length (docs/autoscale.md)."""


@autoscale.command("set")
@click.argument("service_name", metavar="SERVICE")
@click.option("--role", required=True, help="The role to autoscale.")
@click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(path_type=Path),
    help="The setting: JSON with capacity and rules.",
)
@click.option("--slot", type=SLOT, default="production", show_default=True)
@json_option
def set_(service_name: str, role: str, file: Path, slot: str, as_json: bool) -> None:
    """Set (or replace) the autoscale setting of a role."""
    document = _read(file)
    with _client() as c:
        view = c.set_autoscale(service_name, slot, role, document)
    _emit(view, as_json, lambda: click.echo("\n".join(_describe(view))))


@autoscale.command("show")
@click.argument("service_name", metavar="SERVICE")
@click.option("--role", default=None, help="Only this role.")
@click.option("--slot", type=SLOT, default=None, help="Only this slot.")
@json_option
def show(service_name: str, role: str | None, slot: str | None, as_json: bool) -> None:
    """Show autoscale settings with their last evaluation."""
    with _client() as c:
        if role is not None:
            views = [c.get_autoscale(service_name, slot or "production", role)]
        else:
            views = [
                v
                for v in c.list_autoscale(service_name)
                if slot is None or v["slot"] == slot.lower()
            ]

    def text() -> None:
        if not views:
            click.echo(f"{service_name} has no autoscale settings.")
        for view in views:
            click.echo("\n".join(_describe(view)))

    _emit(views if role is None else views[0], as_json, text)


@autoscale.command("off")
@click.argument("service_name", metavar="SERVICE")
@click.option("--role", required=True, help="The role.")
@click.option("--slot", type=SLOT, default="production", show_default=True)
def off(service_name: str, role: str, slot: str) -> None:
    """Turn autoscale off for a role (its instance count stays as it is)."""
    with _client() as c:
        c.delete_autoscale(service_name, slot, role)
    click.echo(f"Autoscale is off for {role} in {slot}.")


COMMANDS = [autoscale]
