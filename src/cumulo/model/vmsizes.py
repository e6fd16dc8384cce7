"""Azure Cloud Services VM sizes (reference §8, the 2016 size table).

cumulo uses ``cores`` and ``memory_mb`` as the instance's CPU and memory limits and ``disk_mb``
as the ceiling for the sum of a role's local storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class VmSize:
    """One size: ``cores`` CPU cores, ``memory_mb`` of RAM, ``disk_mb`` of local (temp) disk."""

    name: str
    cores: int
    memory_mb: int
    disk_mb: int


def _gb(x: float) -> int:
    return round(x * 1024)


_SIZES = [
    VmSize("ExtraSmall", 1, _gb(0.75), _gb(19)),
    VmSize("Small", 1, _gb(1.75), _gb(224)),
    VmSize("Medium", 2, _gb(3.5), _gb(489)),
    VmSize("Large", 4, _gb(7), _gb(999)),
    VmSize("ExtraLarge", 8, _gb(14), _gb(2039)),
    VmSize("A5", 2, _gb(14), _gb(489)),
    VmSize("A6", 4, _gb(28), _gb(999)),
    VmSize("A7", 8, _gb(56), _gb(2039)),
    VmSize("A8", 8, _gb(56), _gb(382)),
    VmSize("A9", 16, _gb(112), _gb(382)),
    VmSize("A10", 8, _gb(56), _gb(382)),
    VmSize("A11", 16, _gb(112), _gb(382)),
    VmSize("Standard_D1", 1, _gb(3.5), _gb(50)),
    VmSize("Standard_D2", 2, _gb(7), _gb(100)),
    VmSize("Standard_D3", 4, _gb(14), _gb(200)),
    VmSize("Standard_D4", 8, _gb(28), _gb(400)),
    VmSize("Standard_D11", 2, _gb(14), _gb(100)),
    VmSize("Standard_D12", 4, _gb(28), _gb(200)),
    VmSize("Standard_D13", 8, _gb(56), _gb(400)),
    VmSize("Standard_D14", 16, _gb(112), _gb(800)),
    VmSize("Standard_D1_v2", 1, _gb(3.5), _gb(50)),
    VmSize("Standard_D2_v2", 2, _gb(7), _gb(100)),
    VmSize("Standard_D3_v2", 4, _gb(14), _gb(200)),
    VmSize("Standard_D4_v2", 8, _gb(28), _gb(400)),
    VmSize("Standard_D5_v2", 16, _gb(56), _gb(800)),
    VmSize("Standard_D11_v2", 2, _gb(14), _gb(100)),
    VmSize("Standard_D12_v2", 4, _gb(28), _gb(200)),
    VmSize("Standard_D13_v2", 8, _gb(56), _gb(400)),
    VmSize("Standard_D14_v2", 16, _gb(112), _gb(800)),
]

# Azure also accepts the A-series names for the five classic sizes.
_ALIASES = {"A0": "ExtraSmall", "A1": "Small", "A2": "Medium", "A3": "Large", "A4": "ExtraLarge"}

VM_SIZES: MappingProxyType[str, VmSize] = MappingProxyType({s.name: s for s in _SIZES})
"""Size name -> size, in Azure's spelling."""

DEFAULT_VM_SIZE = "Small"


def vm_size(name: str) -> VmSize | None:
    """The size called ``name`` (case-insensitive; A0-A4 aliases accepted), or None."""
    name = _ALIASES.get(name, name)
    if name in VM_SIZES:
        return VM_SIZES[name]
    lowered = name.lower()
    return next((s for s in _SIZES if s.name.lower() == lowered), None)
