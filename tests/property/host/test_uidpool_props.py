"""Hypothesis: instance uids — in range, never two live instances on one uid, a uid handed out
again only after the instance that had it was wiped and its account deleted.

The machine below is the account database (/etc/passwd) shared by two host agents, with the
order of work ``cumulo.host.users`` follows: choose + create; on removal the instance's files
stay until wiped, then the account is deleted; an agent that crashes between the two finds its
strays at start and releases them. Foreign accounts appear in the range at any time.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from cumulo.host.uidpool import Slot, UidRange, choose, comment, owned_by, strays

RANGE = UidRange(first=70_000, count=6, prefix="ci")
AGENTS = ("h0.aaaa", "h1.bbbb")

taken_ids = st.sets(st.integers(RANGE.first - 2, RANGE.first + RANGE.count + 2), max_size=8)
names = st.sets(st.sampled_from([RANGE.name(RANGE.first + i) for i in range(8)]), max_size=4)


@given(taken_ids, names, st.sets(st.integers(RANGE.first, RANGE.first + RANGE.count), max_size=3))
def test_choose_is_the_lowest_free_uid_of_the_range(
    ids: set[int], taken_names: set[str], skip: set[int]
) -> None:
    slot = choose(RANGE, ids, taken_names, skip=skip)

    def free(uid: int) -> bool:
        return uid not in ids and uid not in skip and RANGE.name(uid) not in taken_names

    every = range(RANGE.first, RANGE.first + RANGE.count)
    if slot is None:
        assert not any(free(u) for u in every)
        return
    assert slot.uid in RANGE and free(slot.uid)
    assert slot.name == RANGE.name(slot.uid) and RANGE.uid_of(slot.name) == slot.uid
    assert not any(free(u) for u in range(RANGE.first, slot.uid))


class Machine(RuleBasedStateMachine):
    instances = Bundle("instances")

    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[int, tuple[str, str]] = {}  # uid -> (name, comment): /etc/passwd
        self.live: dict[tuple[str, str], int] = {}  # (agent, instance) -> uid
        self.files: dict[int, set[str]] = {}  # uid -> what it owns on disk (non-empty only)
        self.dirs: set[tuple[str, str]] = set()  # instance directories that exist
        self.removing: dict[tuple[str, str], int] = {}  # removed, not yet released
        self.handed: list[tuple[int, tuple[str, str]]] = []
        self.serial = 0

    def _taken(self) -> tuple[set[int], set[str]]:
        return set(self.accounts), {name for name, _ in self.accounts.values()}

    @rule(target=instances, agent=st.sampled_from(AGENTS))
    def create(self, agent: str) -> tuple[str, str]:
        self.serial += 1
        owner = (agent, f"dep.W_IN_{self.serial}")
        ids, taken_names = self._taken()
        slot = choose(RANGE, ids, taken_names)
        if slot is None:  # refused only when the whole range is taken
            assert all(
                u in ids or RANGE.name(u) in taken_names
                for u in range(RANGE.first, RANGE.first + RANGE.count)
            )
            return owner
        assert slot.uid in RANGE
        assert slot.uid not in self.files, "a uid that still owns files was handed out"
        for uid, before in self.handed:  # reuse only after release
            if uid == slot.uid:
                assert before not in self.live and before not in self.removing
        self.accounts[slot.uid] = (slot.name, comment(*owner))
        self.live[owner] = slot.uid
        self.dirs.add(owner)
        self.files[slot.uid] = {f"{owner[1]}/approot", f"/tmp/{owner[1]}"}
        self.handed.append((slot.uid, owner))
        return owner

    @rule(owner=consumes(instances))
    def remove(self, owner: tuple[str, str]) -> None:
        uid = self.live.pop(owner, None)
        if uid is not None:
            self.removing[owner] = uid
            self.files[uid].discard(f"{owner[1]}/approot")  # the instance directory is deleted
            self.dirs.discard(owner)

    @precondition(lambda self: self.removing)
    @rule(data=st.data(), crash=st.booleans())
    def release(self, data: st.DataObject, crash: bool) -> None:
        owner = data.draw(st.sampled_from(sorted(self.removing)))
        uid = self.removing[owner]
        self.files.pop(uid, None)  # processes killed, /tmp swept ...
        if crash:
            return  # ... and the agent died before deleting the account: a stray
        del self.removing[owner]
        del self.accounts[uid]  # ... then the account is deleted

    @rule(agent=st.sampled_from(AGENTS))
    def restart(self, agent: str) -> None:
        """An agent starts: it releases its users whose instance directory is gone."""
        accounts = [(name, uid, text) for uid, (name, text) in self.accounts.items()]
        mine = owned_by(agent, accounts)
        gone = strays(mine, {key for a, key in self.dirs if a == agent})
        for key, slot in gone.items():
            assert (agent, key) not in self.live
            self.files.pop(slot.uid, None)
            del self.accounts[slot.uid]
            self.removing.pop((agent, key), None)

    @rule(offset=st.integers(0, RANGE.count - 1))
    def foreign_account(self, offset: int) -> None:
        uid = RANGE.first + offset
        if uid not in self.accounts:
            self.accounts[uid] = (f"someone{uid}", "Someone Else")

    @invariant()
    def no_two_live_instances_share_a_uid(self) -> None:
        uids = list(self.live.values())
        assert len(uids) == len(set(uids))
        assert all(u in RANGE for u in uids)

    @invariant()
    def a_uid_that_owns_files_keeps_its_account(self) -> None:
        for uid, owned in self.files.items():
            if owned:
                assert uid in self.accounts

    @invariant()
    def every_live_instance_is_found_by_its_agent(self) -> None:
        accounts = [(name, uid, text) for uid, (name, text) in self.accounts.items()]
        for agent in AGENTS:
            mine = owned_by(agent, accounts)
            for (a, key), uid in self.live.items():
                if a == agent:
                    assert mine[key] == Slot(RANGE.name(uid), uid)


Machine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestInstanceUids = Machine.TestCase
