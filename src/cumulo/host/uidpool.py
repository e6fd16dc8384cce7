"""Which uid a new instance user gets (pure: no system calls; ``mypy --strict``).

Every ``limited`` instance runs as its own system user ``<prefix><n>`` whose uid and gid are both
``first + n``, taken from a reserved range (``UidRange``). The machine's account database
(/etc/passwd and /etc/group) is the ledger: a uid is free when no account and no group uses it
and the name it would get is unused, so several host agents on one machine (and agents that
restart) never hand out the same uid. An account says which agent and instance it belongs to
in its comment (GECOS) field (``comment``/``parse_comment``), so an agent finds its users again
after a crash, and tells its own strays from another agent's users.

The rule that makes reuse safe is in the caller's order of work, which this module states:
an instance's account is deleted only *after* its processes are ended and its files are wiped,
so a uid whose account still exists is never chosen, and a chosen uid owns nothing on disk.

Why the default range: systemd (https://systemd.io/UIDS-GIDS/) reserves 0-999 for system
users, 1000-60000 for people, 60001-65535 for homed, DynamicUser and nobody, and 524288-
1879048191 for containers; /etc/subuid ranges usually start at 100000. 1879048192
(0x70000000) and the next 65536 uids are marked unused, below the sign bit and far from the
foreign range systemd added at 0x7FFE0000.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass

MAX_NAME = 32
"""Longest user name ``useradd`` accepts on Linux (``LOGIN_NAME_MAX`` - 1 is larger; 32 is
what shadow's ``useradd`` and ``ps`` handle without truncation)."""
MAX_ID = 2**31 - 1
"""Highest uid we hand out: uids with the high bit set are mistaken for negative numbers."""
_PREFIX = re.compile(r"^[a-z_][a-z0-9_-]*$")
_COMMENT_WORD = re.compile(r"^[A-Za-z0-9._-]+$")
COMMENT_MARK = "cumulo"


@dataclass(frozen=True)
class UidRange:
    """``count`` uids from ``first``; the user of uid ``first + n`` is named ``prefix + n``."""

    first: int = 1_879_048_192
    count: int = 65_536
    prefix: str = "cumulo-i"

    def problems(self) -> list[str]:
        """Every reason this range cannot be used, each a sentence (empty: usable)."""
        out: list[str] = []
        if self.first < 1000:
            out.append(
                f"The instance uid range starts at {self.first}; uids below 1000 belong to "
                "the system's own users."
            )
        if self.count < 1:
            out.append(f"The instance uid range holds {self.count} uids; it needs at least 1.")
        elif self.first + self.count - 1 > MAX_ID:
            out.append(
                f"The instance uid range ends at {self.first + self.count - 1}; "
                f"uids above {MAX_ID} are not used."
            )
        if not _PREFIX.match(self.prefix):
            out.append(
                f"The instance user prefix '{self.prefix}' is not a valid start of a user name "
                "(lower-case letters, digits, '_' and '-', not starting with a digit or '-')."
            )
        elif self.count >= 1 and len(self.name(self.first + self.count - 1)) > MAX_NAME:
            out.append(
                f"The instance user prefix '{self.prefix}' makes names longer than {MAX_NAME} "
                f"characters ({self.name(self.first + self.count - 1)})."
            )
        return out

    def __contains__(self, uid: object) -> bool:
        return isinstance(uid, int) and self.first <= uid < self.first + self.count

    def name(self, uid: int) -> str:
        """The user (and group) name of ``uid``."""
        return f"{self.prefix}{uid - self.first}"

    def uid_of(self, name: str) -> int | None:
        """The uid ``name`` stands for in this range, None if it is not one of its names."""
        if not name.startswith(self.prefix):
            return None
        digits = name[len(self.prefix) :]
        if not digits.isdigit() or (digits != "0" and digits.startswith("0")):
            return None
        uid = self.first + int(digits)
        return uid if uid in self else None


@dataclass(frozen=True)
class Slot:
    """An instance user: name, uid and (equal) gid."""

    name: str
    uid: int

    @property
    def gid(self) -> int:
        return self.uid


def choose(
    uids: UidRange, taken_ids: Set[int], taken_names: Set[str], *, skip: Set[int] = frozenset()
) -> Slot | None:
    """The lowest uid of ``uids`` that no account or group uses as uid, gid or name (and not in
    ``skip``: uids a caller just lost a race for); None when every one is taken."""
    for uid in range(uids.first, uids.first + uids.count):
        if uid in taken_ids or uid in skip:
            continue
        name = uids.name(uid)
        if name in taken_names:
            continue
        return Slot(name, uid)
    return None


def comment(agent: str, instance: str) -> str:
    """The comment (GECOS) field of the account of ``instance`` (its directory name) made by
    the agent ``agent`` (host id + digest of its data directory)."""
    for word in (agent, instance):
        if not _COMMENT_WORD.match(word):
            raise ValueError(f"'{word}' cannot be written in an account's comment field")
    return f"{COMMENT_MARK} {agent} {instance}"


def parse_comment(text: str) -> tuple[str, str] | None:
    """(agent, instance) of a comment made by ``comment``; None for any other account."""
    parts = text.split(" ")
    if len(parts) != 3 or parts[0] != COMMENT_MARK:
        return None
    if not all(_COMMENT_WORD.match(p) for p in parts[1:]):
        return None
    return parts[1], parts[2]


def owned_by(agent: str, accounts: Iterable[tuple[str, int, str]]) -> dict[str, Slot]:
    """instance -> user, of the accounts ``(name, uid, comment)`` that ``agent`` made."""
    out: dict[str, Slot] = {}
    for name, uid, text in accounts:
        parsed = parse_comment(text)
        if parsed is not None and parsed[0] == agent:
            out[parsed[1]] = Slot(name, uid)
    return out


def strays(owned: Mapping[str, Slot], instances: Set[str]) -> dict[str, Slot]:
    """The users of instances that no longer exist (their account outlived a crash between
    wiping the instance and deleting the account): release them again."""
    return {key: slot for key, slot in owned.items() if key not in instances}
