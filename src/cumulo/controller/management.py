"""The management operations: what the API asks of the controller, checked and recorded.

Each mutating method validates the request, changes the desired state in the store (one
transaction, guarded by the deployment's revision), records an **operation** (``InProgress``)
and an event, and returns the operation. The reconcile loop then does the work and finishes the
operation (``controller.operations.outcome``) — also after a controller restart, because
everything it needs is in the store.

Concurrency (docs/api.md, "Concurrent operations"): cumulo **refuses** a mutating request on a
deployment while another operation on it is in progress, with HTTP 409 and the code
``OperationInProgress`` naming the running operation. Azure lets a second update supersede the
first; we chose the refusal because it is predictable for scripts and cannot leave two walks
fighting. The exceptions are the two requests made *for* an update in progress: ``walk`` (Manual
mode) and ``rollback`` (which ends the running update's operation as ``Failed`` with the code
``Superseded``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from cumulo.clock import Clock, SystemClock
from cumulo.controller import desired as desired_mod
from cumulo.controller import walk as walks
from cumulo.controller.certificates import ParsedCertificate, parse_certificate, tls_problems
from cumulo.controller.errors import OperationInProgress
from cumulo.controller.records import (
    DesiredDeployment,
    Observed,
    ReconcileSettings,
    Slot,
    UpgradeMode,
    WalkKind,
    parse_instance_id,
)
from cumulo.controller.swap import check_swap
from cumulo.errors import InputError, ModelError, NotFoundError, Problem
from cumulo.log import get_logger
from cumulo.model.diff import Impact
from cumulo.model.diff import diff as model_diff
from cumulo.model.parse import parse_configuration, parse_definition
from cumulo.model.service import Service, service_from_bytes
from cumulo.model.validate import deploy_blockers
from cumulo.model.xmlwrite import configuration_to_xml
from cumulo.package.read import open_package
from cumulo.storage.store.protocol import Store
from cumulo.storage.store.records import (
    CertificateRecord,
    DeploymentRecord,
    OperationRecord,
    OperationStatus,
    PackageInfo,
    PreconditionFailed,
    ServiceRecord,
)

#: Azure's rule for cloud service names (DNS labels): letters, digits and hyphens, 1-63.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

RUNNING = "Running"
SUSPENDED = "Suspended"


class Kind:
    """Operation kinds (Azure's operation names)."""

    CREATE_DEPLOYMENT = "CreateDeployment"
    DELETE_DEPLOYMENT = "DeleteDeployment"
    UPDATE_STATUS = "UpdateDeploymentStatus"
    SWAP = "SwapDeployment"
    CHANGE_CONFIGURATION = "ChangeDeploymentConfiguration"
    UPGRADE = "UpgradeDeployment"
    WALK = "WalkUpgradeDomain"
    ROLLBACK = "RollbackUpdateOrUpgrade"
    REBOOT = "RebootRoleInstance"
    REIMAGE = "ReimageRoleInstance"
    REBUILD = "RebuildRoleInstance"
    DELETE_INSTANCES = "DeleteRoleInstances"


def _no_observation() -> Observed | None:
    return None


class Management:
    """The controller's management surface (one instance per controller process)."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        observe: Callable[[], Observed | None] = _no_observation,
        settings: ReconcileSettings | None = None,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.clock = clock or SystemClock()
        self.observe = observe
        self.settings = settings or ReconcileSettings()
        self.wake = wake
        """Called after each change so the reconcile loop looks at once."""
        self.log = get_logger(component="controller")

    # -- services ------------------------------------------------------------------------------

    def create_service(self, name: str, *, label: str = "", description: str = "") -> ServiceRecord:
        if not _SERVICE_NAME.match(name):
            raise InputError(
                f"Service name {name!r} is not valid; use 1-63 letters, digits and hyphens, "
                "starting and ending with a letter or digit."
            )
        if len(description) > 1024:
            raise InputError("A service description has at most 1024 characters.")
        record = self.store.create_service(ServiceRecord(name, label or name, description))
        self.store.append_event(name, "service.created")
        return record

    def delete_service(self, name: str) -> None:
        self.store.delete_service(name)
        self.log.info("service.deleted", service=name)

    # -- certificates --------------------------------------------------------------------------

    def add_certificate(
        self, service: str, data: bytes, *, password: str | None = None, filename: str = "file"
    ) -> dict[str, Any]:
        parsed = parse_certificate(data, password=password, filename=filename)
        self.store.put_certificate(
            CertificateRecord(service, parsed.thumbprint, "sha1", parsed.pem)
        )
        self.store.append_event(
            service, "certificate.added", fields={"thumbprint": parsed.thumbprint}
        )
        return certificate_json(parsed)

    def list_certificates(self, service: str) -> list[dict[str, Any]]:
        return [
            certificate_json(parse_certificate(c.pem.encode()))
            for c in self.store.list_certificates(service)
        ]

    def delete_certificate(self, service: str, thumbprint: str) -> None:
        self.store.delete_certificate(service, thumbprint)
        self.store.append_event(
            service, "certificate.deleted", fields={"thumbprint": thumbprint.upper()}
        )

    # -- packages ------------------------------------------------------------------------------

    def upload_package(self, data: bytes) -> PackageInfo:
        # Verify every entry and digest, and parse the definition, so a broken or hostile
        # package is refused at upload with a sentence.
        package = open_package(data, name="the uploaded package")
        parse_definition(package.read(desired_mod.DEFINITION_ENTRY))
        return self.store.put_package(data)

    # -- helpers -------------------------------------------------------------------------------

    def _record(self, service: str, slot: str) -> DeploymentRecord:
        return self.store.get_deployment(service, Slot.parse(slot).value)

    @staticmethod
    def desired_of(record: DeploymentRecord) -> DesiredDeployment:
        return desired_mod.from_document(
            dict(record.document),
            deployment_id=record.id,
            service=record.service,
            slot=record.slot,
            revision=record.revision,
        )

    def running_operation(self, deployment_id: str) -> OperationRecord | None:
        for op in self.store.list_operations(status=OperationStatus.IN_PROGRESS):
            if op.deployment_id == deployment_id:
                return op
        return None

    def _guard(self, record: DeploymentRecord, if_match: str | None) -> None:
        if if_match is not None and if_match != "*" and if_match != record.etag:
            raise PreconditionFailed(
                f"The {record.slot} deployment of {record.service} has ETag {record.etag}, not "
                f"{if_match}; it changed since it was read."
            )
        running = self.running_operation(record.id)
        if running is not None:
            raise OperationInProgress(
                f"Operation {running.id} ({running.kind}) is still in progress on the "
                f"{record.slot} deployment of {record.service}; wait for it "
                f"(cumulo operation wait {running.id}) and try again.",
                running.id,
            )

    def _operation(
        self,
        kind: str,
        record: DeploymentRecord | None,
        *,
        service: str,
        slot: str | None,
        request: dict[str, Any] | None = None,
    ) -> OperationRecord:
        op = self.store.create_operation(
            OperationRecord(
                id=uuid.uuid4().hex,
                kind=kind,
                service=service,
                slot=slot,
                deployment_id=record.id if record is not None else None,
                request=request or {},
            )
        )
        self.store.append_event(
            service,
            "operation.started",
            slot=slot,
            deployment_id=op.deployment_id,
            fields={"operation": op.id, "kind": kind},
        )
        self.log.info("operation.started", service=service, slot=slot, operation=op.id, kind=kind)
        self.wake()
        return op

    def write(self, record: DeploymentRecord, dep: DesiredDeployment) -> None:
        """Write a desired deployment the loop changed (a walk step), keeping its sources."""
        self._write(record, dep)

    def _write(
        self,
        record: DeploymentRecord,
        dep: DesiredDeployment,
        *,
        source: tuple[str, str] | None = None,
        **extra: Any,
    ) -> None:
        """Write ``dep`` (and, for an update, the package and configuration it came from)."""
        document = desired_mod.with_source(
            desired_mod.to_document(dep),
            record.document.get("sources"),
            dep,
            package=source[0] if source else None,
            configuration=source[1] if source else None,
        )
        document["spec_slot"] = record.document.get("spec_slot", record.slot)
        self.store.update_deployment(
            record.id, expect_revision=record.revision, document=document, **extra
        )

    def _role_files(self, package_digest: str, model: Service) -> dict[str, str]:
        """Each role of ``model`` -> the digest of its files in the package ``package_digest``."""
        package = open_package(self.store.get_package(package_digest), name=package_digest)
        entries = {name: entry.sha256 for name, entry in package.entries.items()}
        return desired_mod.role_file_digests(entries, (r.name for r in model.definition.roles))

    def _load_service(self, package_digest: str, configuration: str) -> Service:
        return load_model(self.store.get_package(package_digest), configuration)

    def _check_certificates(self, service: str, model: Service) -> None:
        stored = {c.thumbprint: c.pem for c in self.store.list_certificates(service)}
        have = set(stored)
        problems = []
        for rc in model.configuration.roles:
            for cert in rc.certificates:
                if cert.thumbprint.upper() not in have:
                    problems.append(
                        Problem(
                            model.configuration_file,
                            cert.line,
                            f"Certificate '{cert.name}' of role '{rc.name}' has thumbprint "
                            f"{cert.thumbprint.upper()}, which is not in the certificate store of "
                            f"service '{service}'; add it with 'cumulo cert add {service} FILE'.",
                        )
                    )
        problems += tls_problems(service, model, stored)
        if problems:
            raise ModelError(problems)

    # -- deployments ---------------------------------------------------------------------------

    def create_deployment(
        self,
        service: str,
        slot: str,
        *,
        package_digest: str,
        configuration: str,
        name: str = "",
        label: str = "",
        start: bool = True,
    ) -> OperationRecord:
        slot_ = Slot.parse(slot)
        self.store.get_service(service)
        self.store.package_info(package_digest)
        model = self._load_service(package_digest, configuration)
        self._check_certificates(service, model)
        dep_id = uuid.uuid4().hex
        dep = desired_mod.from_model(
            deployment_id=dep_id,
            service=service,
            slot=slot_,
            running=start,
            definition=model.definition,
            configuration=model.configuration,
            role_files=self._role_files(package_digest, model),
        )
        record = self.store.create_deployment(
            DeploymentRecord(
                id=dep_id,
                service=service,
                slot=slot_.value,
                name=name or dep_id,
                label=label,
                status=RUNNING if start else SUSPENDED,
                package_digest=package_digest,
                configuration=configuration,
                document=desired_mod.with_source(
                    desired_mod.to_document(dep),
                    [],
                    dep,
                    package=package_digest,
                    configuration=configuration,
                )
                | {"spec_slot": slot_.value},
            )
        )
        return self._operation(Kind.CREATE_DEPLOYMENT, record, service=service, slot=slot_.value)

    def delete_deployment(
        self, service: str, slot: str, *, if_match: str | None = None
    ) -> OperationRecord:
        record = self._record(service, slot)
        self._guard(record, if_match)
        self.store.delete_deployment(record.id, expect_revision=record.revision)
        op = self._operation(Kind.DELETE_DEPLOYMENT, record, service=service, slot=record.slot)
        return op

    def update_status(
        self, service: str, slot: str, status: str, *, if_match: str | None = None
    ) -> OperationRecord:
        wanted = {"running": RUNNING, "suspended": SUSPENDED}.get(status.lower())
        if wanted is None:
            raise InputError(f"Status {status!r} is not valid; use Running or Suspended.")
        record = self._record(service, slot)
        self._guard(record, if_match)
        dep = self.desired_of(record)
        if dep.walk is not None:
            raise OperationInProgress(
                f"The {record.slot} deployment of {service} has an update in progress; "
                "finish or roll it back before changing its status."
            )
        new = replace(dep, running=wanted == RUNNING, revision=dep.revision + 1)
        self._write(record, new, status=wanted)
        return self._operation(
            Kind.UPDATE_STATUS,
            record,
            service=service,
            slot=record.slot,
            request={"status": wanted},
        )

    def swap(self, service: str) -> OperationRecord:
        self.store.get_service(service)
        records = {d.slot: d for d in self.store.list_deployments(service)}
        for record in records.values():
            self._guard(record, None)
        prod = records.get(Slot.PRODUCTION.value)
        stag = records.get(Slot.STAGING.value)
        observed = self.observe() or Observed((), since=self.clock.wall())
        check_swap(
            self.desired_of(prod) if prod else None,
            self.desired_of(stag) if stag else None,
            observed,
            now=self.clock.wall(),
            settings=self.settings,
        )
        swapped = self.store.swap_slots(service)
        moved = next(d for d in swapped if d.slot == Slot.PRODUCTION.value)
        op = self._operation(
            Kind.SWAP,
            moved,
            service=service,
            slot=None,
            request={"production": moved.id, "staging": prod.id if prod else None},
        )
        self.store.append_event(service, "swap.done", fields={"production": moved.id})
        return op

    def change_configuration(
        self,
        service: str,
        slot: str,
        configuration: str,
        *,
        mode: str = "auto",
        if_match: str | None = None,
        instance_timeout: float = 1800.0,
    ) -> OperationRecord:
        record = self._record(service, slot)
        self._guard(record, if_match)
        mode_ = UpgradeMode.parse(mode)
        model = self._load_service(record.package_digest, configuration)
        self._check_certificates(service, model)
        dep = self.desired_of(record)
        versions = desired_mod.role_versions(
            model.definition, model.configuration, self._role_files(record.package_digest, model)
        )
        new = walks.begin(
            dep,
            kind=WalkKind.CONFIG,
            versions=versions,
            counts=desired_mod.counts_of(model.configuration),
            mode=mode_,
            now=self.clock.wall(),
            instance_timeout=instance_timeout,
        )
        new = desired_mod.with_endpoints_of(new, model.definition, model.configuration)
        self._write(
            record,
            new,
            source=(record.package_digest, configuration),
            configuration=configuration,
        )
        return self._operation(
            Kind.CHANGE_CONFIGURATION,
            record,
            service=service,
            slot=record.slot,
            request={"mode": mode_.value, "revision": new.revision},
        )

    def scale(
        self,
        service: str,
        slot: str,
        role: str,
        count: int,
        *,
        if_match: str | None = None,
    ) -> OperationRecord:
        """Change one role's instance count (Azure: a configuration change of ``Instances``)."""
        if count < 0 or count > 1000:
            raise InputError(f"Instance count {count} is out of range (0-1000).")
        record = self._record(service, slot)
        config = parse_configuration(record.configuration.encode())
        if config.role(role) is None:
            raise NotFoundError(
                f"Role {role!r} is not in the {record.slot} deployment of {service}; its roles "
                f"are {', '.join(r.name for r in config.roles)}."
            )
        roles = tuple(replace(r, instances=count) if r.name == role else r for r in config.roles)
        text = configuration_to_xml(replace(config, roles=roles)).decode()
        return self.change_configuration(service, slot, text, if_match=if_match)

    def upgrade(
        self,
        service: str,
        slot: str,
        *,
        package_digest: str,
        configuration: str | None = None,
        mode: str = "auto",
        role: str | None = None,
        force: bool = False,
        if_match: str | None = None,
        instance_timeout: float = 1800.0,
    ) -> OperationRecord:
        record = self._record(service, slot)
        self._guard(record, if_match)
        mode_ = UpgradeMode.parse(mode)
        self.store.package_info(package_digest)
        config_text = configuration if configuration is not None else record.configuration
        model = self._load_service(package_digest, config_text)
        self._check_certificates(service, model)
        dep = self.desired_of(record)
        if model.definition.upgrade_domain_count != dep.update_domain_count:
            raise InputError(
                f"The new package has upgradeDomainCount {model.definition.upgrade_domain_count}"
                f", the deployment {dep.update_domain_count}; that change needs a new deployment."
            )
        self._check_in_place(record, model, force=force)
        versions = desired_mod.role_versions(
            model.definition, model.configuration, self._role_files(package_digest, model)
        )
        if role is not None:
            if role not in versions:
                raise NotFoundError(
                    f"Role {role!r} is not in the new package; its roles are "
                    f"{', '.join(sorted(versions))}."
                )
            versions = {role: versions[role]}
        known = {r.name for r in dep.roles}
        if set(versions) - known:
            raise InputError(
                f"The new package adds roles ({', '.join(sorted(set(versions) - known))}); "
                "adding roles needs a new deployment in cumulo."
            )
        new = walks.begin(
            dep,
            kind=WalkKind.UPGRADE,
            versions=versions,
            counts=None if role else desired_mod.counts_of(model.configuration),
            mode=mode_,
            now=self.clock.wall(),
            instance_timeout=instance_timeout,
            force=force,
        )
        new = desired_mod.with_endpoints_of(new, model.definition, model.configuration)
        self._write(
            record,
            new,
            source=(package_digest, config_text),
            configuration=config_text,
            package_digest=package_digest,
        )
        return self._operation(
            Kind.UPGRADE,
            record,
            service=service,
            slot=record.slot,
            request={"mode": mode_.value, "role": role, "revision": new.revision},
        )

    def _check_in_place(self, record: DeploymentRecord, model: Service, *, force: bool) -> None:
        """Refuse an upgrade that Azure cannot apply in place (a new deployment and a swap are
        the way), and one that needs ``force`` when it was not given."""
        old = self._load_service(record.package_digest, record.configuration)
        changes = model_diff(old, model).changes
        blocking = [c.description for c in changes if c.impact is Impact.NEW_DEPLOYMENT]
        if blocking:
            raise InputError(
                f"This upgrade cannot be applied in place ({'; '.join(blocking)}); deploy the new "
                "package to the other slot and swap instead."
            )
        unforced = [c.description for c in changes if c.needs_force and not force]
        if unforced:
            raise InputError(
                f"This upgrade needs --force ({'; '.join(unforced)}); run it again with --force "
                "to accept that."
            )

    def upgrade_plan(
        self,
        service: str,
        slot: str,
        *,
        package_digest: str,
        configuration: str | None = None,
        role: str | None = None,
    ) -> dict[str, Any]:
        """What ``upgrade`` would do, changing nothing: the model's changes, and per update
        domain which instances recycle and which take the change in place."""
        record = self._record(service, slot)
        self.store.package_info(package_digest)
        config_text = configuration if configuration is not None else record.configuration
        old_model = self._load_service(record.package_digest, record.configuration)
        new_model = self._load_service(package_digest, config_text)
        old_files = self._role_files(record.package_digest, new_model)
        new_files = self._role_files(package_digest, new_model)
        code_changed = [r for r, files in new_files.items() if files != old_files[r]]
        changes = model_diff(old_model, new_model, code_changed=code_changed)
        versions = desired_mod.role_versions(
            new_model.definition, new_model.configuration, new_files
        )
        if role is not None:
            versions = {k: v for k, v in versions.items() if k == role}
        dep = self.desired_of(record)
        observed = self.observe()
        instances = [i for h in observed.hosts for i in h.instances] if observed else []
        return {
            "changes": changes.explain(),
            "allows_in_place": changes.allows_in_place,
            "allows_vip_swap": changes.allows_vip_swap,
            "domains": walks.preview(dep, versions, instances),
        }

    def walk(self, service: str, slot: str, domain: int) -> OperationRecord:
        record = self._record(service, slot)
        dep = self.desired_of(record)
        new = walks.walk_domain(dep, domain, now=self.clock.wall())
        self._write(record, new)
        return self._operation(
            Kind.WALK, record, service=service, slot=record.slot, request={"domain": domain}
        )

    def rollback(
        self, service: str, slot: str, *, mode: str = "auto", force: bool = False
    ) -> OperationRecord:
        record = self._record(service, slot)
        dep = self.desired_of(record)
        new = walks.rollback(dep, mode=UpgradeMode.parse(mode), now=self.clock.wall(), force=force)
        self._write(record, new)
        running = self.running_operation(record.id)
        op = self._operation(
            Kind.ROLLBACK,
            record,
            service=service,
            slot=record.slot,
            request={"mode": UpgradeMode.parse(mode).value, "revision": new.revision},
        )
        if running is not None:
            self.store.finish_operation(
                running.id,
                OperationStatus.FAILED,
                http_status=409,
                error_code="Superseded",
                error_message=f"Rolled back by operation {op.id}.",
            )
        return op

    def delete_instances(
        self, service: str, slot: str, instance_ids: list[str], *, if_match: str | None = None
    ) -> OperationRecord:
        record = self._record(service, slot)
        self._guard(record, if_match)
        dep = self.desired_of(record)
        if dep.walk is not None:
            raise OperationInProgress(
                f"The {record.slot} deployment of {service} has an update in progress."
            )
        drop: dict[str, set[int]] = {}
        for iid in instance_ids:
            role_name, index = parse_instance_id(iid)
            role = dep.role(role_name)
            if role is None or index not in role.indices:
                raise NotFoundError(
                    f"Instance {iid} does not exist in the {record.slot} deployment of {service}."
                )
            drop.setdefault(role_name, set()).add(index)
        roles = tuple(
            replace(r, indices=tuple(i for i in r.indices if i not in drop.get(r.name, set())))
            for r in dep.roles
        )
        self._write(record, replace(dep, roles=roles, revision=dep.revision + 1))
        return self._operation(
            Kind.DELETE_INSTANCES,
            record,
            service=service,
            slot=record.slot,
            request={"instances": sorted(instance_ids)},
        )

    def instance_action(
        self, service: str, slot: str, instance: str, action: str
    ) -> OperationRecord:
        """Reboot, reimage or rebuild one instance (carried out by its host agent)."""
        kinds = {"reboot": Kind.REBOOT, "reimage": Kind.REIMAGE, "rebuild": Kind.REBUILD}
        if action not in kinds:
            raise InputError(f"Instance action {action!r} is not one of reboot, reimage, rebuild.")
        record = self._record(service, slot)
        self._guard(record, None)
        role_name, index = parse_instance_id(instance)
        role = self.desired_of(record).role(role_name)
        if role is None or index not in role.indices:
            raise NotFoundError(
                f"Instance {instance} does not exist in the {record.slot} deployment of {service}."
            )
        return self._operation(
            kinds[action],
            record,
            service=service,
            slot=record.slot,
            request={"instance": instance, "action": action},
        )


def load_model(package: bytes, configuration: str) -> Service:
    """The validated service of a stored package with a configuration (site apps decided from
    the package's files)."""
    pkg = open_package(package, name="the package")
    service = service_from_bytes(
        pkg.read(desired_mod.DEFINITION_ENTRY),
        configuration.encode(),
        files=dict(pkg.contents),
    )
    blockers = deploy_blockers(service.definition, service.definition_file)
    if blockers:
        raise ModelError(blockers)
    return service


def certificate_json(cert: ParsedCertificate) -> dict[str, Any]:
    """What the API shows of a certificate (never its private key)."""
    return {
        "thumbprint": cert.thumbprint,
        "thumbprint_algorithm": "sha1",
        "subject": cert.subject,
        "not_after": cert.not_after,
        "has_private_key": cert.has_private_key,
    }
