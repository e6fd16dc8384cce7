"""cumulo.package: build reproducible ``.cspkg`` files and read them safely.

- ``build_package(dir, output, config=None) -> BuiltPackage`` (validates first).
- ``open_package(path_or_bytes) -> Package`` (verifies names, sizes, links, bombs, digests).
- ``load_package_service(package, config=None) -> Service``.
"""

from cumulo.package.build import MANIFEST_NAME, BuiltPackage, build_bytes, build_package
from cumulo.package.read import (
    Package,
    PackageEntry,
    PackageLimits,
    load_package_service,
    open_package,
)

__all__ = [
    "MANIFEST_NAME",
    "BuiltPackage",
    "Package",
    "PackageEntry",
    "PackageLimits",
    "build_bytes",
    "build_package",
    "load_package_service",
    "open_package",
]
