"""The autoscaler: samples each autoscaled role's metrics, asks ``autoscale.decide`` and acts.

One task in the controller process (``api.platform`` starts it next to the reconcile loop). Each
tick it reads the autoscale settings from the store and, for each role that has one:

1. **Samples** the metrics its rules name:

   - ``cpu``: every host agent's observed instances (``GET /v1/instances``, the controller's
     ``HostAgentPort``) carry ``usage.cpu_seconds``, the instance's CPU time (cgroup
     ``cpuacct.usage`` or ``cpu.stat``; without cgroups the host agent sums its processes' times
     from ``/proc``, ``host.usage``). The difference between two readings over the wall time
     between them, as a percentage of the cores of the role's VM size, is the instance's CPU
     percentage; a sample holds one value per instance.
   - ``queue``: ``Get Queue Metadata`` (``x-ms-approximate-messages-count``) from the platform's
     storage service, signed with SharedKey by ``storage.azure.auth``'s own rules.

2. **Decides** with the series kept in memory (as long as the longest window needs) and the last
   action autoscale took for the role (kept in the store's controller state, so a cooldown
   survives a controller restart).
3. **Acts** through ``Management.scale`` — the very operation ``cumulo scale`` uses, with its
   operation and events — and appends ``autoscale.scaled`` naming the rule and the value that
   fired. While the deployment has an operation or an update in progress (or is suspended) the
   action is **deferred** (``autoscale.deferred``, once per reason) and tried again on the next
   tick, as Azure acts only when the deployment is steady.

The tick interval follows the shortest time window (a quarter of it, 0.5-15 s), so a rule's
window holds a few samples. Settings are per service, slot and role: after a swap the
production setting applies to the deployment now in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx

from cumulo.clock import Clock, SystemClock
from cumulo.controller import desired as desired_mod
from cumulo.controller.autoscale import (
    AutoscaleSetting,
    AutoscaleSettingError,
    Decision,
    LastAction,
    Metric,
    Sample,
    cpu_percent,
    decide,
    parse_setting,
    to_document,
    trim,
)
from cumulo.controller.errors import OperationInProgress
from cumulo.controller.management import RUNNING, Management
from cumulo.controller.ports import HostAgentPort
from cumulo.controller.records import Slot
from cumulo.errors import ConflictError, CumuloError, NotFoundError, TemporaryError
from cumulo.log import get_logger
from cumulo.model.parse import parse_definition
from cumulo.model.vmsizes import vm_size
from cumulo.storage.azure.accounts import Account, account_table, parse_accounts
from cumulo.storage.azure.auth import shared_key_string, sign
from cumulo.storage.azure.http import Request
from cumulo.storage.store.records import AutoscaleRecord, DeploymentRecord

STATE_PREFIX = "autoscale/"
QUEUE_API_VERSION = "2021-12-02"

Key = tuple[str, str, str]
"""(service, slot, role)"""


@dataclass(frozen=True)
class AutoscalerSettings:
    """Timing of the autoscaler (seconds)."""

    min_interval: float = 0.5
    """The shortest tick (for windows of a few seconds, as tests use)."""
    max_interval: float = 15.0
    """The longest tick (Azure's engine runs every 30-60 s; we sample more often)."""
    idle_interval: float = 2.0
    """How often to look for settings when there are none."""


# -- the storage service's queue length ------------------------------------------------------


QueueEndpoint = Callable[[], "tuple[str, int] | None"]
"""() -> (host, queue port) of the storage service now, or None when it does not run."""


class QueueLength:
    """Approximate message counts from the platform's storage service (Get Queue Metadata)."""

    def __init__(
        self,
        endpoint: QueueEndpoint,
        accounts: Mapping[str, Account] | None = None,
        *,
        timeout: float = 5.0,
    ) -> None:
        self.endpoint = endpoint
        self.accounts = dict(accounts or storage_accounts())
        self._http = httpx.AsyncClient(timeout=timeout)

    async def count(self, account: str, queue: str) -> int:
        where = self.endpoint()
        if where is None:
            raise TemporaryError("The storage service is not running; queue lengths are unknown.")
        acct = self.accounts.get(account)
        if acct is None:
            raise NotFoundError(
                f"Storage account {account!r} is not served by this platform; its accounts are "
                f"{', '.join(sorted(self.accounts))}."
            )
        host, port = where
        path = f"/{account}/{queue}"
        headers = {
            "x-ms-date": format_datetime(datetime.now(UTC), usegmt=True),
            "x-ms-version": QUEUE_API_VERSION,
        }
        request = Request(
            method="GET",
            target=f"{path}?comp=metadata",
            raw_path=path,
            raw_query=[("comp", "metadata")],
            headers=dict(headers),
        )
        signature = sign(acct.key, shared_key_string(request, account))
        headers["Authorization"] = f"SharedKey {account}:{signature}"
        try:
            response = await self._http.get(
                f"http://{host}:{port}{path}", params={"comp": "metadata"}, headers=headers
            )
        except httpx.HTTPError as exc:
            raise TemporaryError(
                f"The storage service at {host}:{port} did not answer ({type(exc).__name__})."
            ) from None
        if response.status_code == 404:
            raise NotFoundError(f"Queue {queue!r} does not exist in storage account {account}.")
        if response.status_code != 200:
            raise TemporaryError(
                f"The storage service answered {response.status_code} for queue {queue!r} of "
                f"account {account}: {response.text[:200]}"
            )
        try:
            return int(response.headers["x-ms-approximate-messages-count"])
        except (KeyError, ValueError):
            raise TemporaryError(
                f"The storage service gave no message count for queue {queue!r}."
            ) from None

    async def close(self) -> None:
        await self._http.aclose()


def storage_accounts() -> dict[str, Account]:
    """The accounts the platform's storage service serves (devstoreaccount1 and
    ``CUMULO_STORAGE_ACCOUNTS``, as ``cumulo storage serve`` reads them)."""
    return account_table(parse_accounts(os.environ.get("CUMULO_STORAGE_ACCOUNTS", "")))


# -- the loop ----------------------------------------------------------------------------------


class Autoscaler:
    """Samples, decides and scales (see the module docstring); one per controller process."""

    def __init__(
        self,
        management: Management,
        hosts: Sequence[HostAgentPort],
        *,
        queues: QueueLength | None = None,
        clock: Clock | None = None,
        settings: AutoscalerSettings | None = None,
    ) -> None:
        self.m = management
        self.store = management.store
        self.hosts = list(hosts)
        self.queues = queues
        self.clock = clock or SystemClock()
        self.settings = settings or AutoscalerSettings()
        self.series: dict[Key, dict[str, list[Sample]]] = {}
        self.cpu_seen: dict[str, tuple[float, float]] = {}
        """instance key -> (when, CPU seconds) of its last reading."""
        self.statuses: dict[Key, dict[str, Any]] = {}
        self.deferred: dict[Key, str] = {}
        """key -> the reason the pending action waits (an event is written when it changes)."""
        self.problems: dict[Key, str] = {}
        """key -> the last problem put into the event history (once per problem)."""
        self._cores_of: dict[tuple[str, str], float] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.log = get_logger(component="autoscale")

    # -- public --------------------------------------------------------------------------------

    def status(self, service: str, slot: str, role: str) -> dict[str, Any] | None:
        """The last evaluation of a role's setting (for ``cumulo autoscale show``): a copy, as the
        API reads it from other threads while the loop replaces it."""
        status = self.statuses.get((service, slot, role))
        return dict(status) if status is not None else None

    def wake(self) -> None:
        """Look at the settings again now (callable from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self, stop: asyncio.Event) -> None:
        self._loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                delay = await self.tick()
            except Exception as exc:  # the autoscaler must not die with the platform running
                self.log.error("autoscale.tick_failed", error=str(exc))
                delay = self.settings.max_interval
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for task in waiters:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def tick(self) -> float:
        """One pass over every setting; returns the seconds to wait before the next."""
        records = await asyncio.to_thread(self.store.list_autoscale)
        settings: dict[Key, AutoscaleSetting] = {}
        for record in records:
            key = (record.service, record.slot, record.role)
            try:
                settings[key] = parse_setting(record.document)
            except AutoscaleSettingError as exc:
                self._problem(key, None, f"The stored autoscale setting is not valid: {exc}")
        for gone in set(self.series) - set(settings):
            self.series.pop(gone, None)
            self.statuses.pop(gone, None)
            self.deferred.pop(gone, None)
            self.problems.pop(gone, None)
        if not settings:
            return self.settings.idle_interval
        now = self.clock.wall()
        need_cpu = any(r.metric is Metric.CPU for s in settings.values() for r in s.rules)
        observed = await self._observe() if need_cpu else []
        seen = {_instance_key(i) for i in observed}
        self.cpu_seen = {k: v for k, v in self.cpu_seen.items() if k in seen}
        lengths = await self._queue_lengths(settings.values())
        deployments = {
            (d.service, d.slot): d for d in await asyncio.to_thread(self.store.list_deployments)
        }
        state = await asyncio.to_thread(self.store.get_controller_state, STATE_PREFIX)
        for key, setting in sorted(settings.items()):
            await self._evaluate(key, setting, deployments, observed, lengths, state, now)
        windows = [r.time_window for s in settings.values() for r in s.rules]
        if not windows:
            return self.settings.max_interval
        return max(self.settings.min_interval, min(self.settings.max_interval, min(windows) / 4))

    # -- sampling ------------------------------------------------------------------------------

    async def _observe(self) -> list[dict[str, Any]]:
        async def one(host: HostAgentPort) -> list[dict[str, Any]]:
            try:
                return await host.observe()
            except CumuloError as exc:
                self.log.warning("autoscale.host_unreachable", host=host.name, error=exc.message)
                return []

        found = await asyncio.gather(*(one(h) for h in self.hosts))
        return [i for batch in found for i in batch]

    async def _queue_lengths(self, settings: Iterable[AutoscaleSetting]) -> dict[str, float | str]:
        """source -> message count, or the sentence why it could not be read."""
        wanted = {
            r.source: (r.account, r.queue or "")
            for s in settings
            for r in s.rules
            if r.metric is Metric.QUEUE
        }
        out: dict[str, float | str] = {}
        if not wanted:
            return out
        queues = self.queues
        if queues is None:
            return dict.fromkeys(wanted, "This platform runs no storage service.")

        async def one(source: str, account: str, queue: str) -> None:
            try:
                out[source] = float(await queues.count(account, queue))
            except CumuloError as exc:
                out[source] = exc.message

        await asyncio.gather(*(one(s, a, q) for s, (a, q) in wanted.items()))
        return out

    def _cores(self, record: DeploymentRecord, role: str) -> float:
        key = (record.package_digest, role)
        if key not in self._cores_of:
            cores = 1.0
            with contextlib.suppress(CumuloError):
                data = self.store.get_package(record.package_digest)
                definition = parse_definition(desired_mod.read_package_definition(data))
                found = definition.role(role)
                size = vm_size(found.vmsize) if found is not None else None
                cores = float(size.cores) if size is not None else 1.0
            self._cores_of[key] = cores
        return self._cores_of[key]

    def _cpu_sample(
        self,
        record: DeploymentRecord,
        role: str,
        observed: list[dict[str, Any]],
        now: float,
        cores: float,
    ) -> Sample:
        mine = [
            i
            for i in observed
            if i.get("deployment_id") == record.id
            and i.get("role") == role
            and not i.get("removing")
        ]
        counters: dict[str, float] = {}
        for inst in mine:
            used = (inst.get("usage") or {}).get("cpu_seconds")
            if isinstance(used, int | float):
                counters[_instance_key(inst)] = float(used)
        values: list[float] = []
        for key, used in counters.items():
            before = self.cpu_seen.get(key)
            self.cpu_seen[key] = (now, used)
            if before is None:
                continue
            percent = cpu_percent(used - before[1], now - before[0], cores)
            if percent is not None:
                values.append(percent)
        return Sample(now, tuple(values))

    # -- deciding and acting -------------------------------------------------------------------

    async def _evaluate(
        self,
        key: Key,
        setting: AutoscaleSetting,
        deployments: Mapping[tuple[str, str], DeploymentRecord],
        observed: list[dict[str, Any]],
        lengths: Mapping[str, float | str],
        state: Mapping[str, str],
        now: float,
    ) -> None:
        service, slot, role_name = key
        record = deployments.get((service, slot))
        if record is None:
            self._problem(key, None, f"The {slot} slot of {service} has no deployment to scale.")
            return
        dep = self.m.desired_of(record)
        role = dep.role(role_name)
        if role is None:
            self._problem(
                key,
                record,
                f"Role {role_name!r} is not in the {slot} deployment of {service}; its autoscale "
                "setting waits.",
            )
            return
        series = self.series.setdefault(key, {})
        notes: list[str] = []
        for source in sorted(setting.sources):
            if source == "cpu":
                cores = await asyncio.to_thread(self._cores, record, role_name)
                sample = self._cpu_sample(record, role_name, observed, now, cores)
            else:
                got = lengths.get(source)
                if isinstance(got, str):
                    notes.append(got)
                    sample = Sample(now, ())
                else:
                    sample = Sample(now, () if got is None else (got,))
            series[source] = trim([*series.get(source, []), sample], now, setting.longest_window)
        last = _last_action(state.get(_state_key(key)))
        decision = decide(setting, series, role.count, now, last)
        self.statuses[key] = {
            "evaluated_at": now,
            "current": role.count,
            "target": decision.target,
            "decision": decision.reason,
            "values": list(decision.values),
            "last_action": json.loads(state[_state_key(key)]) if _state_key(key) in state else None,
            "deferred": None,
            "notes": notes,
        }
        if notes:
            self._problem(key, record, " ".join(notes))
        else:
            self.problems.pop(key, None)
        if not decision.changed:
            self.deferred.pop(key, None)
            return
        why = self._busy(record, dep.walk is not None)
        if why is None:
            why = await self._scale(key, record, setting, decision, now)
        if why is not None:
            self.statuses[key]["deferred"] = why
            if self.deferred.get(key) != why:
                self.deferred[key] = why
                await asyncio.to_thread(
                    self.store.append_event,
                    service,
                    "autoscale.deferred",
                    slot=slot,
                    deployment_id=record.id,
                    fields={
                        "role": role_name,
                        "from": decision.current,
                        "to": decision.target,
                        "reason": decision.reason,
                        "waiting": why,
                    },
                )
                self.log.info(
                    "autoscale.deferred", service=service, slot=slot, role=role_name, why=why
                )

    def _busy(self, record: DeploymentRecord, walking: bool) -> str | None:
        """Why the deployment cannot be scaled now (None: it can)."""
        running = self.m.running_operation(record.id)
        if running is not None:
            return (
                f"Operation {running.id} ({running.kind}) is in progress; autoscale waits for it."
            )
        if walking:
            return "An update is in progress; autoscale waits for it."
        if record.status != RUNNING:
            return f"The deployment is {record.status}; autoscale acts on running deployments."
        return None

    async def _scale(
        self,
        key: Key,
        record: DeploymentRecord,
        setting: AutoscaleSetting,
        decision: Decision,
        now: float,
    ) -> str | None:
        """Scale through the management operation; None when done, else why it must wait."""
        service, slot, role = key
        try:
            op = await asyncio.to_thread(
                self.m.scale, service, slot, role, decision.target, if_match=record.etag
            )
        except (OperationInProgress, ConflictError, TemporaryError) as exc:
            return exc.message
        except CumuloError as exc:
            self._problem(key, record, f"Autoscale could not scale {role}: {exc.message}")
            return exc.message
        rule = setting.rules[decision.rule] if decision.rule is not None else None
        last = {
            "at": now,
            "cooldown": decision.cooldown,
            "from": decision.current,
            "to": decision.target,
            "reason": decision.reason,
            "operation": op.id,
        }
        fields: dict[str, Any] = {
            "role": role,
            "from": decision.current,
            "to": decision.target,
            "outcome": decision.outcome.value,
            "reason": decision.reason,
            "operation": op.id,
        }
        if rule is not None and decision.rule is not None:
            fields |= {
                "rule": decision.rule,
                "metric": rule.source,
                "value": decision.value,
            }
        await asyncio.to_thread(
            self.store.set_controller_state, {_state_key(key): json.dumps(last)}
        )
        await asyncio.to_thread(
            self.store.append_event,
            service,
            "autoscale.scaled",
            slot=slot,
            deployment_id=record.id,
            fields=fields,
        )
        self.deferred.pop(key, None)
        self.statuses[key]["last_action"] = last
        self.log.info(
            "autoscale.scaled", service=service, slot=slot, role=role, reason=decision.reason
        )
        return None

    def _problem(self, key: Key, record: DeploymentRecord | None, text: str) -> None:
        """Show a problem in the status, and once in the service's events."""
        service, slot, role = key
        self.statuses[key] = {**self.statuses.get(key, {}), "problem": text}
        if self.problems.get(key) == text:
            return
        self.problems[key] = text
        with contextlib.suppress(CumuloError):
            self.store.append_event(
                service,
                "autoscale.problem",
                slot=slot,
                deployment_id=record.id if record is not None else None,
                fields={"role": role, "problem": text},
            )
        self.log.warning("autoscale.problem", service=service, slot=slot, role=role, problem=text)


def _instance_key(inst: Mapping[str, Any]) -> str:
    return str(inst.get("key") or f"{inst.get('deployment_id')}/{inst.get('instance_id')}")


def _state_key(key: Key) -> str:
    return STATE_PREFIX + "/".join(key)


def _last_action(text: str | None) -> LastAction | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        return LastAction(float(data["at"]), float(data["cooldown"]))
    except (ValueError, KeyError, TypeError):
        return None


# -- the settings, as the API shows and changes them ------------------------------------------


def setting_view(record: AutoscaleRecord, status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "service": record.service,
        "slot": record.slot,
        "role": record.role,
        "setting": dict(record.document),
        "updated_at": record.updated_at,
        "status": status,
    }


StatusReader = Callable[[str, str, str], "dict[str, Any] | None"]


def _no_status(service: str, slot: str, role: str) -> dict[str, Any] | None:
    return None


def put_setting(
    m: Management,
    service: str,
    slot: str,
    role: str,
    document: object,
    status: StatusReader = _no_status,
) -> dict[str, Any]:
    """Validate and store a role's autoscale setting (replacing the one it had)."""
    slot_ = Slot.parse(slot).value
    setting = parse_setting(document)
    record = m.store.get_deployment(service, slot_)
    if m.desired_of(record).role(role) is None:
        names = ", ".join(r.name for r in m.desired_of(record).roles)
        raise NotFoundError(
            f"Role {role!r} is not in the {slot_} deployment of {service}; its roles are {names}."
        )
    stored = m.store.put_autoscale(AutoscaleRecord(service, slot_, role, to_document(setting)))
    m.store.append_event(
        service,
        "autoscale.set",
        slot=slot_,
        deployment_id=record.id,
        fields={
            "role": role,
            "minimum": setting.capacity.minimum,
            "maximum": setting.capacity.maximum,
            "default": setting.capacity.default,
            "rules": len(setting.rules),
        },
    )
    return setting_view(stored, status(service, slot_, role))


def get_setting(
    m: Management, service: str, slot: str, role: str, status: StatusReader = _no_status
) -> dict[str, Any]:
    slot_ = Slot.parse(slot).value
    return setting_view(m.store.get_autoscale(service, slot_, role), status(service, slot_, role))


def list_settings(
    m: Management, service: str, status: StatusReader = _no_status
) -> list[dict[str, Any]]:
    return [
        setting_view(r, status(r.service, r.slot, r.role)) for r in m.store.list_autoscale(service)
    ]


def delete_setting(m: Management, service: str, slot: str, role: str) -> None:
    """Autoscale off for a role: its setting and its last action go; the count stays."""
    slot_ = Slot.parse(slot).value
    m.store.delete_autoscale(service, slot_, role)
    m.store.set_controller_state({_state_key((service, slot_, role)): None})
    m.store.append_event(service, "autoscale.off", slot=slot_, fields={"role": role})
