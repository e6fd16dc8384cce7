"""From the service model to ``InstanceSpec`` (``cumulo.state.spec``): what a host agent runs.

One spec per instance; the host agent compares specs and decides itself: equal = nothing to do,
only ``settings`` differ = in place (``changing``/``changed``), anything else = recycle. So the
controller keeps code and settings apart exactly as ``desired.role_versions`` does.

Files: a package is extracted once per digest under ``<data dir>/approots/<hex>/``; an
instance's ``approot_source`` is its role's folder there (``<hex>/<Role>``), copied per instance
by the host. A Site's ``physical_directory`` must lie inside the role folder (else the deployment
is refused with a sentence naming the directory).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from cumulo.errors import UnsupportedError
from cumulo.model.configuration import RoleConfiguration
from cumulo.model.definition import (
    NetFxEntryPoint,
    ProgramEntryPoint,
    Role,
    RoleKind,
)
from cumulo.model.service import Service
from cumulo.model.vmsizes import vm_size
from cumulo.state.spec import (
    CertificateSpec,
    EndpointSpec,
    EnvVarSpec,
    InstanceSpec,
    LimitsSpec,
    LocalResourceSpec,
    ProbeSpec,
    ProgramEntryPointSpec,
    SiteSpec,
    StartupTaskSpec,
)


def extract_package(data_dir: Path, digest: str, data: bytes) -> Path:
    """The extracted package of ``digest`` (extracted once, atomically, then reused)."""
    from cumulo.package.read import open_package

    hexpart = digest.removeprefix("sha256:")
    root = data_dir / "approots" / hexpart
    if root.is_dir():
        return root
    tmp = data_dir / "approots" / f".{hexpart}.{uuid.uuid4().hex}"
    open_package(data, name=digest).extract(tmp)
    os.chmod(tmp, 0o755)
    for dirpath, dirnames, filenames in os.walk(tmp):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            p = os.path.join(dirpath, f)
            os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
    try:
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another extraction won the race
    return root


def _endpoints(role: Role) -> tuple[EndpointSpec, ...]:
    out: list[EndpointSpec] = []
    for e in role.input_endpoints:
        out.append(
            EndpointSpec(
                name=e.name,
                kind="input",
                protocol=str(e.protocol),
                port=e.port,
                local_port="*" if e.local_port is None else e.local_port,
                probe=e.load_balancer_probe,
                ignore_role_instance_status=e.ignore_role_instance_status,
                certificate=e.certificate,
            )
        )
    for i in role.internal_endpoints:
        port = i.fixed_port if i.fixed_port is not None else i.port
        if i.fixed_port_range is not None:
            port = i.fixed_port_range.min
        out.append(
            EndpointSpec(
                name=i.name,
                kind="internal",
                protocol=str(i.protocol),
                port=port,
                local_port=port if port is not None else "*",
            )
        )
    for ii in role.instance_input_endpoints:
        out.append(
            EndpointSpec(
                name=ii.name,
                kind="instance_input",
                protocol=str(ii.protocol),
                port=ii.public_ports.min,
                local_port=ii.local_port,
            )
        )
    return tuple(out)


def _site(service: Service, role: Role) -> SiteSpec | None:
    apps = [a for a in service.apps_of(role.name) if a.path == "/"]
    if not apps:
        return None
    app = apps[0]
    directory = PurePosixPath(app.directory.replace("\\", "/"))
    role_dir = PurePosixPath(role.name)
    if directory != role_dir and role_dir not in directory.parents:
        raise UnsupportedError(
            f"Site '{app.site}' of role '{role.name}' serves from '{app.directory}', outside "
            f"the role folder '{role.name}/'; cumulo runs a role from its folder, so move the "
            "site's files inside it."
        )
    site = next((s for s in role.sites if s.name == app.site), None)
    return SiteSpec(
        name=app.site,
        kind="asgi" if str(app.interface).lower() == "asgi" else "wsgi",
        app=str(app.handler),
        physical_directory="" if directory == role_dir else str(directory.relative_to(role_dir)),
        bindings=tuple(b.endpoint_name for b in site.bindings) if site else (),
    )


def instance_spec(
    service: Service,
    *,
    deployment_id: str,
    service_name: str,
    slot: str,
    role_name: str,
    instance_id: str,
    update_domain: int,
    fault_domain: int,
    approot_root: Path,
    emulated: bool = False,
    certificates: Mapping[str, str] | None = None,
) -> InstanceSpec:
    """The spec of one instance. ``certificates`` maps the service's stored thumbprints to their
    PEM (certificate and private key); every certificate the role declares must be in it."""
    sd, sc = service.definition, service.configuration
    role = sd.role(role_name)
    if role is None:
        raise UnsupportedError(f"Role {role_name!r} is not in the service definition.")
    rc = sc.role(role_name)
    size = vm_size(role.vmsize)
    runtime = role.runtime
    entry = runtime.entry_point if runtime is not None else None
    if isinstance(entry, NetFxEntryPoint):
        raise UnsupportedError(
            f"Role '{role.name}' has a NetFxEntryPoint ({entry.assembly_name}); cumulo runs "
            "ProgramEntryPoint commands and Python sites only."
        )
    probes = []
    for name in sorted(
        {e.load_balancer_probe for e in role.input_endpoints if e.load_balancer_probe}
    ):
        p = sd.probe(name)
        if p is not None:
            probes.append(
                ProbeSpec(
                    name=p.name,
                    protocol="http" if str(p.protocol).lower() == "http" else "tcp",
                    port=p.port,
                    path=p.path,
                    interval_s=float(p.interval_seconds),
                    timeout_s=float(p.timeout_seconds),
                )
            )
    return InstanceSpec(
        deployment_id=deployment_id,
        service=service_name,
        slot=slot,
        role=role.name,
        role_kind="web" if role.kind is RoleKind.WEB else "worker",
        instance_id=instance_id,
        approot_source=str(approot_root / role.name),
        update_domain=update_domain,
        fault_domain=fault_domain,
        limits=LimitsSpec(
            vmsize=role.vmsize,
            cores=float(size.cores) if size else 1.0,
            memory_mb=size.memory_mb if size else 1792,
        ),
        endpoints=_endpoints(role),
        local_resources=tuple(
            LocalResourceSpec(ls.name, ls.size_mb, ls.clean_on_role_recycle)
            for ls in role.local_storage
        ),
        environment=tuple(
            EnvVarSpec(v.name, v.value, v.xpath)
            for v in (runtime.environment if runtime is not None else ())
        ),
        startup_tasks=tuple(
            StartupTaskSpec(
                t.command_line,
                str(t.execution_context),  # type: ignore[arg-type]
                str(t.task_type),  # type: ignore[arg-type]
                tuple(EnvVarSpec(v.name, v.value, v.xpath) for v in t.environment),
            )
            for t in role.startup_tasks
        ),
        entry_point=ProgramEntryPointSpec(entry.command_line, entry.set_ready_on_process_start)
        if isinstance(entry, ProgramEntryPoint)
        else None,
        site=_site(service, role),
        execution_context=str(runtime.execution_context) if runtime else "limited",  # type: ignore[arg-type]
        settings=tuple(sorted(rc.setting_values.items())) if rc else (),
        probes=tuple(probes),
        emulated=emulated,
        certificates=_certificates(role, rc, certificates or {}),
    )


def _certificates(
    role: Role, rc: RoleConfiguration | None, stored: Mapping[str, str]
) -> tuple[CertificateSpec, ...]:
    thumbprints = {c.name: c.thumbprint.upper() for c in rc.certificates} if rc else {}
    out: list[CertificateSpec] = []
    for declared in role.certificates:
        thumbprint = thumbprints.get(declared.name)
        if thumbprint is None:
            continue  # validation reports a declared certificate without a thumbprint
        pem = stored.get(thumbprint)
        if pem is None:
            raise UnsupportedError(
                f"Certificate '{declared.name}' of role '{role.name}' has thumbprint {thumbprint}"
                ", which is no longer in the service's certificate store; add it again with "
                "'cumulo cert add'."
            )
        out.append(
            CertificateSpec(
                name=declared.name,
                thumbprint=thumbprint,
                pem=pem,
                store_location=declared.store_location,
                store_name=declared.store_name,
                permission_level=declared.permission_level,
            )
        )
    return tuple(out)
