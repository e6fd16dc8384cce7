"""What role code imports: ``RoleEnvironment``, ``RoleEntryPoint`` (standard library only).

    from cumulo.sdk import RoleEnvironment, RoleEntryPoint

    class Worker(RoleEntryPoint):
        def on_start(self) -> bool:
            RoleEnvironment.changing += self.on_changing
            return True

        def run(self) -> None:
            while not self.stop_requested.wait(5):
                print(RoleEnvironment.get_configuration_setting_value("Greeting"))

Run it as a ProgramEntryPoint: ``python -m cumulo.sdk.run worker:Worker``. The transport to the
agent is described in ``cumulo.sdk._transport``; ``docs/roles.md`` has the whole story.
"""

from cumulo.sdk.entrypoint import RoleEntryPoint
from cumulo.sdk.environment import (
    ChangedEventArgs,
    ChangingEventArgs,
    ConfigurationSettingChange,
    LocalResource,
    Role,
    RoleEnvironment,
    RoleEnvironmentError,
    RoleInstance,
    RoleInstanceEndpoint,
    StatusCheckEventArgs,
    StoppingEventArgs,
    TopologyChange,
)

__all__ = [
    "ChangedEventArgs",
    "ChangingEventArgs",
    "ConfigurationSettingChange",
    "LocalResource",
    "Role",
    "RoleEntryPoint",
    "RoleEnvironment",
    "RoleEnvironmentError",
    "RoleInstance",
    "RoleInstanceEndpoint",
    "StatusCheckEventArgs",
    "StoppingEventArgs",
    "TopologyChange",
]
