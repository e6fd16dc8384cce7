"""The instance uid range, the choice of a uid and the accounts' comments (pure)."""

from __future__ import annotations

import pytest

from cumulo.host.uidpool import (
    MAX_ID,
    Slot,
    UidRange,
    choose,
    comment,
    owned_by,
    parse_comment,
    strays,
)


def test_the_default_range_is_usable_and_names_fit() -> None:
    r = UidRange()
    assert r.problems() == []
    assert r.name(r.first) == "cumulo-i0"
    assert r.name(r.first + r.count - 1) == "cumulo-i65535"
    assert r.first > 1_879_048_191 and r.first + r.count - 1 < 2**31 - 1


def test_every_problem_of_a_range_is_a_sentence() -> None:
    problems = UidRange(first=500, count=0, prefix="9bad").problems()
    assert len(problems) == 3
    assert "starts at 500" in problems[0] and problems[0].endswith(".")
    assert "holds 0 uids" in problems[1]
    assert "'9bad' is not a valid start of a user name" in problems[2]
    assert "ends at" in UidRange(first=MAX_ID, count=2).problems()[0]
    assert UidRange(prefix="a" * 30, count=100).problems() == []  # a30 + "99": 32
    long = UidRange(prefix="a" * 31, count=100).problems()
    assert long == [
        f"The instance user prefix '{'a' * 31}' makes names longer than 32 characters "
        f"({'a' * 31}99)."
    ]


def test_names_and_uids_map_both_ways_inside_the_range_only() -> None:
    r = UidRange(first=5000, count=10, prefix="ci")
    assert r.uid_of("ci3") == 5003
    assert r.uid_of(r.name(5009)) == 5009
    for name in ("ci10", "ci03", "ci", "cix", "other3", "ci-1"):
        assert r.uid_of(name) is None, name
    assert 5000 in r and 5009 in r and 5010 not in r and 4999 not in r and "5000" not in r


def test_choose_takes_the_lowest_uid_free_as_uid_gid_and_name() -> None:
    r = UidRange(first=5000, count=4, prefix="ci")
    assert choose(r, set(), set()) == Slot("ci0", 5000)
    assert choose(r, {5000}, set()) == Slot("ci1", 5001)
    assert choose(r, set(), {"ci0", "ci1"}) == Slot("ci2", 5002)  # a name someone else has
    assert choose(r, {5000}, set(), skip={5001}) == Slot("ci2", 5002)
    assert choose(r, {5000, 5001, 5002}, {"ci3"}) is None
    assert Slot("ci2", 5002).gid == 5002


def test_comments_name_the_agent_and_the_instance() -> None:
    text = comment("host-0.ab12cd34", "dep1.Web_IN_0")
    assert text == "cumulo host-0.ab12cd34 dep1.Web_IN_0"
    assert parse_comment(text) == ("host-0.ab12cd34", "dep1.Web_IN_0")
    for other in ("", "cumulo", "cumulo a", "cumulo a b c", "nobody a b", "cumulo a b:c"):
        assert parse_comment(other) is None, other
    with pytest.raises(ValueError, match="comment field"):
        comment("host 0", "x")
    with pytest.raises(ValueError):
        comment("h", "dep:1")


def test_owned_and_strays() -> None:
    accounts = [
        ("cumulo-i0", 10, comment("a.1", "dep.W_IN_0")),
        ("cumulo-i1", 11, comment("b.2", "dep.W_IN_0")),  # another agent's
        ("cumulo-i2", 12, comment("a.1", "dep.W_IN_1")),
        ("alice", 1000, "Alice"),
    ]
    mine = owned_by("a.1", accounts)
    assert mine == {"dep.W_IN_0": Slot("cumulo-i0", 10), "dep.W_IN_1": Slot("cumulo-i2", 12)}
    assert strays(mine, {"dep.W_IN_0"}) == {"dep.W_IN_1": Slot("cumulo-i2", 12)}
    assert strays(mine, {"dep.W_IN_0", "dep.W_IN_1"}) == {}
