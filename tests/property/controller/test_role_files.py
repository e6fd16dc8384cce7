"""Per-role code digests: a role's digest follows its own files in the package and nothing
else, and a role version is served from the first (package, configuration) that produced it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cumulo.controller.desired import role_file_digests, source_for

ROLES = ("Web", "Worker", "WebApi")
names = st.text("abcdef/._", min_size=1, max_size=12)
entries = st.dictionaries(
    st.tuples(st.sampled_from((*ROLES, "Other")), names).map(lambda t: f"{t[0]}/{t[1]}"),
    st.text("0123456789abcdef", min_size=4, max_size=8),
    max_size=12,
)


@given(entries, st.sampled_from(ROLES), names, st.text("0123456789abcdef", min_size=9))
def test_changing_one_role_file_changes_only_that_roles_digest(
    files: dict[str, str], role: str, name: str, content: str
) -> None:
    before = role_file_digests(files, ROLES)
    changed = files | {f"{role}/{name}": content}
    after = role_file_digests(changed, ROLES)
    assert after[role] != before[role]
    assert {r: d for r, d in after.items() if r != role} == {
        r: d for r, d in before.items() if r != role
    }


@given(entries, names, st.text("0123456789abcdef", min_size=4))
def test_files_outside_every_role_folder_change_no_digest(
    files: dict[str, str], name: str, content: str
) -> None:
    # "WebApi/x" must not count as a file of "Web": folders end at the slash.
    outside = files | {f"Other/{name}": content, f"{name}.txt": content}
    assert role_file_digests(outside, ROLES) == role_file_digests(files, ROLES)


def test_a_version_comes_from_the_first_source_that_produced_it() -> None:
    from cumulo.controller.records import RoleVersion

    v = RoleVersion(code="c1", settings="s1")
    document = {
        "sources": [
            {"package": "p1", "configuration": "a", "versions": {"Web": "c1.s1"}},
            {"package": "p2", "configuration": "b", "versions": {"Web": "c1.s1"}},
            {"package": "p3", "configuration": "c", "versions": {"Web": "c2.s1"}},
        ]
    }
    assert source_for(document, "Web", v) == ("p1", "a")
    assert source_for(document, "Web", RoleVersion(code="c2", settings="s1")) == ("p3", "c")
    assert source_for(document, "Worker", v) is None
