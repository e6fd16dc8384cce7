"""``exec``: a command runs in the instance's context — its user, environment and approot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cumulo.errors import NotFoundError
from cumulo.state.spec import ProgramEntryPointSpec

from .conftest import run, running_agent, spec, state_is, wait_for, write_role

WORKER = {
    "w.py": """
        import time
        while True:
            time.sleep(1)
    """,
    "data.txt": "from the approot\n",
}
PROBE = (
    "import os, pathlib; print(os.getuid(), os.environ['CUMULO_ROLE_INSTANCE_ID'], "
    "pathlib.Path('data.txt').read_text().strip())"
)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a limited user")
def test_exec_runs_as_the_instance_with_its_environment_and_approot(
    tmp_path: Path, data_dir: Path, host_id: str
) -> None:
    s = spec(write_role(tmp_path / "w", WORKER), entry_point=ProgramEntryPointSpec("python w.py"))

    async def body() -> None:
        async with running_agent(data_dir, host_id) as agent:
            await agent.apply([s])
            await wait_for(lambda: state_is(agent, s.key, "ReadyRole"))
            result = await agent.exec(s.key, ["python", "-c", PROBE], 30)
            assert result["exit_code"] == 0 and not result["timed_out"], result
            uid, instance, text = result["output"].split(maxsplit=2)
            assert int(uid) != 0  # limited: not root
            assert instance == "Worker_IN_0"
            assert text.strip() == "from the approot"

            failed = await agent.exec(s.key, ["python", "-c", "import sys; sys.exit(3)"], 30)
            assert failed["exit_code"] == 3

            slow = await agent.exec(s.key, ["sleep", "30"], 0.5)
            assert slow["timed_out"] and slow["exit_code"] == -9

            with pytest.raises(NotFoundError):
                await agent.exec("dep1/Nope_IN_0", ["true"], 5)
            # the instance itself was left alone
            assert state_is(agent, s.key, "ReadyRole")

    run(body())
