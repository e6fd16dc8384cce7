"""``prune_packages``: extracted packages no deployment takes a version from are removed;
kept ones, extractions in progress and stray files are left alone."""

from __future__ import annotations

from pathlib import Path

from cumulo.controller.specs import prune_packages


def test_only_unreferenced_extractions_go(tmp_path: Path) -> None:
    root = tmp_path / "approots"
    for name in ("aaa", "bbb", ".ccc.1234", "ddd"):
        (root / name / "Web").mkdir(parents=True)
        (root / name / "Web" / "app.py").write_text("x")
    (root / "note.txt").write_text("not a package")
    assert prune_packages(tmp_path, {"sha256:aaa", "sha256:ddd"}) == ["bbb"]
    assert sorted(p.name for p in root.iterdir()) == [".ccc.1234", "aaa", "ddd", "note.txt"]
    assert prune_packages(tmp_path / "nowhere", set()) == []
