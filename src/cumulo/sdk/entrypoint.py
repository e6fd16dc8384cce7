"""``RoleEntryPoint``: subclass it, and run it as a ProgramEntryPoint with ``cumulo.sdk.run``.

Lifecycle (as on Azure): the instance is Busy while ``on_start`` runs; if it returns True the
instance becomes Ready and ``run`` is called; ``on_start`` returning False or raising ends the
process at once (no OnStop) and the instance is recycled. When ``run`` returns, ``on_stop`` is
called and the instance is recycled. When the agent stops the instance, ``stopping`` handlers and
then ``on_stop`` run (in the SDK's thread) before the process is terminated.
"""

from __future__ import annotations

import threading


class RoleEntryPoint:
    def __init__(self) -> None:
        self.stop_requested = threading.Event()
        """Set when the agent asks the instance to stop; ``run`` loops may wait on it."""

    def on_start(self) -> bool:
        return True

    def run(self) -> None:
        """The role's work. The default waits until the instance is asked to stop."""
        self.stop_requested.wait()

    def on_stop(self) -> None:
        return None
