"""Size-capped copy-truncate rotation and tails of process logs."""

from __future__ import annotations

import os
from pathlib import Path

from cumulo.host.logs import rotate_if_needed, tail


def test_rotation_keeps_n_files_and_the_writer_keeps_appending(tmp_path: Path) -> None:
    log = tmp_path / "entry.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # as a role process holds it
    try:
        for generation in range(5):
            os.write(fd, f"gen{generation}\n".encode() * 100)
            assert rotate_if_needed(log, max_bytes=100, keep=3)
        os.write(fd, b"after\n")
    finally:
        os.close(fd)
    assert log.read_text() == "after\n"  # appended at the new end, not at the old offset
    assert (tmp_path / "entry.log.1").read_text().startswith("gen4")
    assert (tmp_path / "entry.log.3").read_text().startswith("gen2")
    assert not (tmp_path / "entry.log.4").exists()
    assert not rotate_if_needed(log, max_bytes=100, keep=3)


def test_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == ["line 97", "line 98", "line 99"]
    assert tail(tmp_path / "missing.log") == []
    assert tail(log, 0) == []
