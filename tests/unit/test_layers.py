"""Imports go downward only (DESIGN.md): a layer that reaches up fails this test."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "cumulo"

# Leaves everyone may import (they import only the stdlib and third-party packages).
LEAVES = {"errors", "clock", "log"}

# layer -> the cumulo layers it may import (besides itself and the leaves).
ALLOWED: dict[str, set[str]] = {
    "cli": {
        "client",
        "model",
        "package",
        "api",
        "controller",
        "host",
        "lb",
        "storage",
        "state",
        "sdk",
        "dashboard",
    },
    "dashboard": {"client"},
    "client": set(),
    "api": {"controller", "storage", "state", "model", "package"},
    "controller": {"storage", "state", "model", "package"},
    "storage": {"state", "model"},
    "host": {"state", "model", "package", "sdk"},
    "state": {"model"},
    "package": {"model"},
    "model": set(),
    "lb": set(),
    "sdk": set(),
}
STANDALONE = {"sdk"}  # ships alone: not even the leaves


def _layer_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _cumulo_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "cumulo" and len(parts) > 1:
                found.append((node.lineno, parts[1]))
    return found


def test_every_top_level_package_has_a_rule() -> None:
    packages = {p.name for p in SRC.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert packages <= set(ALLOWED), packages - set(ALLOWED)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_go_downward(path: Path) -> None:
    layer = _layer_of(path)
    if layer in LEAVES or layer == "__init__":
        allowed = LEAVES if layer in LEAVES else set()
    else:
        allowed = ALLOWED[layer] | ({layer} if layer in STANDALONE else {layer} | LEAVES)
    bad = [(line, target) for line, target in _cumulo_imports(path) if target not in allowed]
    assert not bad, f"{path.relative_to(SRC)} imports upward: " + ", ".join(
        f"line {line} imports cumulo.{target}" for line, target in bad
    )
