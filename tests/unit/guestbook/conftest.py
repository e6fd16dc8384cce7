"""Unit tests of the guestbook example's pure parts. The role folders go on ``sys.path`` so
their modules import as they do in an instance's approot."""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "guestbook"
for role in ("WorkerRole", "WebRole"):
    if str(EXAMPLE / role) not in sys.path:
        sys.path.insert(0, str(EXAMPLE / role))
