"""From the service model to ``InstanceSpec`` (``cumulo.state.spec``): what a host agent runs.

One spec per instance; the host agent compares specs and decides itself: equal = nothing to do,
only ``settings`` differ = in place (``changing``/``changed``), anything else = recycle. So the
controller keeps code and settings apart exactly as ``desired.role_versions`` does.

Files: a package is extracted once per digest under ``<data dir>/approots/<hex>/``; an
instance's ``approot_source`` is its role's folder there (``<hex>/<Role>``), copied per instance
by the host. A Site, VirtualApplication or VirtualDirectory whose ``physicalDirectory`` lies
inside the role folder is served from there. One outside it (``Api/`` next to ``WebRole/``, as
Azure's ``physicalDirectory="..\\Api"``) is copied, as Azure copies it into the instance's
``sitesroot``: the role's source is then ``<hex>/.sites/<Role>/``, built once per package, which
holds the role folder plus each such directory under ``sitesroot/<directory>/``.
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
from cumulo.model.validate import url_path
from cumulo.model.vmsizes import vm_size
from cumulo.model.webapp import SiteApp
from cumulo.state.spec import (
    CertificateSpec,
    EndpointSpec,
    EnvVarSpec,
    InstanceSpec,
    LimitsSpec,
    LocalResourceSpec,
    ProbeSpec,
    ProgramEntryPointSpec,
    SiteAppSpec,
    SiteKind,
    SiteSpec,
    StartupTaskSpec,
    VirtualDirectorySpec,
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


def prune_packages(data_dir: Path, keep: set[str]) -> list[str]:
    """Remove the extracted packages under ``<data dir>/approots/`` whose digest is not in
    ``keep`` (the packages some deployment still takes a role version from); the removed hex
    names. Instances run from their own copies, so an extraction nobody will copy from again is
    only disk. Extractions in progress (``.<hex>.<uuid>``) are left alone."""
    root = data_dir / "approots"
    wanted = {d.removeprefix("sha256:") for d in keep}
    removed = []
    for entry in sorted(root.iterdir()) if root.is_dir() else ():
        if entry.name.startswith(".") or entry.name in wanted or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry.name)
    return removed


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


SITES_FOLDER = "sitesroot"
"""Where, inside an instance's approot, the directories a site serves from outside the role
folder are copied (Azure's name for the folder of copied site contents)."""


def _kind(app: SiteApp) -> SiteKind:
    return "asgi" if str(app.interface).lower() == "asgi" else "wsgi"


def _site(service: Service, role: Role) -> tuple[SiteSpec | None, tuple[PurePosixPath, ...]]:
    """The role's hosted site, and the directories of the package outside the role folder it
    serves from (to be copied under ``sitesroot/``)."""
    apps = service.apps_of(role.name)
    root = next((a for a in apps if a.path == "/"), None)
    if root is None:
        return None, ()
    role_dir = PurePosixPath(role.name)
    outside: list[PurePosixPath] = []

    def place(directory: str) -> str:
        """``directory`` (relative to the service directory) as the instance sees it, relative
        to its approot."""
        d = PurePosixPath(directory.replace("\\", "/").strip("/") or ".")
        if d == role_dir:
            return ""
        if role_dir in d.parents:
            return str(d.relative_to(role_dir))
        outside.append(d)
        return f"{SITES_FOLDER}/{d}"

    site = next((s for s in role.sites if s.name == root.site), None)
    directories: list[VirtualDirectorySpec] = []
    if site is not None:
        directories += [
            VirtualDirectorySpec(url_path(d.name), place(d.physical_directory))
            for d in site.virtual_directories
        ]
        directories += [
            VirtualDirectorySpec(url_path(v.name) + url_path(d.name), place(d.physical_directory))
            for v in site.virtual_applications
            for d in v.virtual_directories
        ]
    spec = SiteSpec(
        name=root.site,
        kind=_kind(root),
        app=str(root.handler),
        physical_directory=place(root.directory),
        bindings=tuple(b.endpoint_name for b in site.bindings) if site else (),
        apps=tuple(
            SiteAppSpec(a.path, _kind(a), str(a.handler), place(a.directory))
            for a in apps
            if a.site == root.site and a.path != "/"
        ),
        directories=tuple(directories),
    )
    # a directory inside another copied one comes with it
    copies = sorted(set(outside))
    return spec, tuple(d for d in copies if not any(c in d.parents for c in copies))


def role_source(approot_root: Path, role: str, copies: tuple[PurePosixPath, ...]) -> Path:
    """The folder an instance of ``role`` copies its approot from: the role's folder of the
    extracted package, or, when its site serves directories of the package outside that folder
    (``copies``), ``<approot_root>/.sites/<role>/``: the role folder with each of them under
    ``sitesroot/`` (built once, atomically; files are hard links where the disk allows)."""
    source = approot_root / role
    if not copies:
        return source
    merged = approot_root / ".sites" / role
    if merged.is_dir() or not source.is_dir():
        return merged  # built already, or nothing to build from (the host will say so)
    if (source / SITES_FOLDER).exists():
        raise UnsupportedError(
            f"Role '{role}' has its own '{SITES_FOLDER}' folder, where cumulo copies the "
            f"directories its site serves from outside the role folder ("
            + ", ".join(f"'{c}'" for c in copies)
            + f"); rename the role's '{SITES_FOLDER}' folder."
        )
    merged.parent.mkdir(mode=0o755, exist_ok=True)
    tmp = merged.parent / f".{role}.{uuid.uuid4().hex}"
    try:
        shutil.copytree(source, tmp, symlinks=True, copy_function=_link_or_copy)
        for rel in copies:
            shutil.copytree(
                approot_root / rel,
                tmp / SITES_FOLDER / rel,
                symlinks=True,
                copy_function=_link_or_copy,
            )
        for dirpath, _dirs, _files in os.walk(tmp / SITES_FOLDER):
            os.chmod(dirpath, 0o755)
        os.rename(tmp, merged)
    except OSError:
        if not merged.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone after the rename; else a lost race
    return merged


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


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
    site, copies = _site(service, role)
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
        approot_source=str(role_source(approot_root, role.name, copies)),
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
        site=site,
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
