"""Run a ``RoleEntryPoint`` as a role's program: ``python -m cumulo.sdk.run module:Class``.

The module is imported from the current directory (the approot) or ``sys.path``. Exit status:
0 when ``run`` returned (the instance is recycled), 1 when ``on_start`` returned False or anything
raised, 2 for a bad ``module:Class`` argument.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
import traceback

from cumulo.sdk.entrypoint import RoleEntryPoint
from cumulo.sdk.environment import RoleEnvironment


def load(target: str) -> type[RoleEntryPoint]:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f'Entry point "{target}" must be in format "<module>:<class>".')
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, RoleEntryPoint)):
        raise ValueError(f'Entry point "{target}" is not a subclass of RoleEntryPoint.')
    return obj


def _flush_and_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cumulo.sdk.run module:Class", file=sys.stderr)
        return 2
    try:
        cls = load(args[0])
    except (ValueError, ImportError, AttributeError) as exc:
        print(f"cumulo.sdk.run: {exc}", file=sys.stderr)
        return 2
    role = cls()
    stop_lock = threading.Lock()
    stopped: list[bool] = []

    def on_stop_once() -> None:
        # Held while on_stop runs: the main thread, whose run() returns when stop_requested is
        # set, waits here instead of ending the process in the middle of on_stop.
        with stop_lock:
            if stopped:
                return
            stopped.append(True)
            role.stop_requested.set()
            role.on_stop()

    connected = RoleEnvironment._connect(entry_point=True)
    if connected:
        RoleEnvironment._on_stop = on_stop_once
        RoleEnvironment._after_stop = lambda: _flush_and_exit(0)
    else:
        print(f"cumulo.sdk.run: {RoleEnvironment._failed}", file=sys.stderr)
    try:
        if not role.on_start():
            print("cumulo.sdk.run: on_start returned False; the instance is recycled.", flush=True)
            return 1
    except Exception:
        traceback.print_exc()
        return 1
    if connected:
        RoleEnvironment._send({"op": "started"})
    try:
        role.run()
    except Exception:
        traceback.print_exc()
        return 1
    on_stop_once()
    return 0


if __name__ == "__main__":
    _flush_and_exit(main())
