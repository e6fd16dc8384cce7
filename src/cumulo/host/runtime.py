"""The runtime directory: what every role process finds on its PYTHONPATH.

``<data>/runtime/python`` (world-readable) holds a copy of ``cumulo.sdk`` (under a stub
``cumulo`` package), ``cumulo_sitehost`` (the hosted-site launcher) and the site servers'
packages (gunicorn, uvicorn, h11, click, httptools, uvloop, a2wsgi) copied from the agent's
environment. They are copied because the agent's own interpreter and virtualenv may be
unreadable by the unprivileged role user (e.g. a pyenv under /root). The compiled packages fit
a role interpreter of the same Python minor version (3.11 here); with another version, a hosted
site needs the servers in the role's dependency environment.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

SERVER_PACKAGES = (
    "uvicorn",
    "h11",
    "click",
    "httptools",
    "uvloop",
    "a2wsgi",
    "gunicorn",
    "packaging",
    "typing_extensions",
)

_STUB = '"""cumulo runtime for role processes: only ``cumulo.sdk`` is here."""\n'


def role_interpreter() -> str:
    """``$CUMULO_ROLE_PYTHON``, else Debian's /usr/bin/python3, else this interpreter."""
    chosen = os.environ.get("CUMULO_ROLE_PYTHON")
    if chosen:
        return chosen
    if os.access("/usr/bin/python3", os.X_OK):
        return "/usr/bin/python3"
    return sys.executable


def _source(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def build(data_dir: Path) -> Path:
    """(Re)create ``<data>/runtime/python`` and return it."""
    runtime = data_dir / "runtime"
    target = runtime / "python"
    staging = runtime / f"python.new.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "cumulo").mkdir(parents=True)
    (staging / "cumulo" / "__init__.py").write_text(_STUB)
    sdk = Path(__file__).resolve().parent.parent / "sdk"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(sdk, staging / "cumulo" / "sdk", ignore=ignore)
    shutil.copy2(Path(__file__).with_name("sitehost.py"), staging / "cumulo_sitehost.py")
    for name in SERVER_PACKAGES:
        src = _source(name)
        if src is None:
            continue
        if src.is_dir():
            shutil.copytree(src, staging / src.name, ignore=ignore)
        else:
            shutil.copy2(src, staging / src.name)
    for root, _dirs, files in os.walk(staging):
        os.chmod(root, 0o755)
        for f in files:
            os.chmod(os.path.join(root, f), 0o644 if not f.endswith(".so") else 0o755)
    runtime.chmod(0o755)
    old = runtime / f"python.old.{os.getpid()}"
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
