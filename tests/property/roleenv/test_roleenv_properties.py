"""Properties of the pure core: the digest, requirement normalisation, layout names, backoff."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from cumulo.host.roleenv.detect import (
    NodeRequirements,
    PythonRequirements,
    SourceFile,
    normalize_requirements,
)
from cumulo.host.roleenv.digest import (
    DIGEST_LENGTH,
    NodeToolchain,
    PythonToolchain,
    node_digest,
    python_digest,
)
from cumulo.host.roleenv.layout import CacheLayout, is_attempt_of
from cumulo.host.roleenv.options import NpmOptions, PipOptions
from cumulo.host.roleenv.retry import RetryPolicy, RetryState

# A requirement: a name, an optional version pin, no '#' or '\' (those are syntax).
names = st.from_regex(r"[A-Za-z][A-Za-z0-9._-]{0,15}", fullmatch=True)
pins = st.one_of(
    st.just(""), st.from_regex(r"(==|>=|<|~=)[0-9]{1,2}(\.[0-9]{1,2}){0,2}", fullmatch=True)
)
requirements = st.builds(lambda n, p: n + p, names, pins)
requirement_lists = st.lists(requirements, min_size=0, max_size=8)
comments = st.from_regex(r"#[ a-z0-9#]{0,20}", fullmatch=True)
spaces = st.sampled_from(["", " ", "  ", "\t"])

TOOLCHAIN = PythonToolchain(
    executable="/usr/bin/python3",
    realpath="/usr/bin/python3.11",
    version="3.11.2",
    implementation="cpython",
    platform="linux-x86_64",
    soabi="cpython-311-x86_64-linux-gnu",
    installer="pip 26.3 (platform, --python)",
)
NODE = NodeToolchain("/usr/bin/node", "v20.20.2", "/usr/bin/npm", "11.19.1", "linux", "x64", "115")


def python_req(lines: tuple[str, ...]) -> PythonRequirements:
    return PythonRequirements(
        source="requirements.txt",
        files=(),
        normalized=(("requirements.txt", lines),),
    )


@st.composite
def decorated(draw: st.DrawFn, reqs: list[str]) -> str:
    """The same requirements written with comments, blank lines, indentation, continuations."""
    out: list[str] = []
    for req in reqs:
        for _ in range(draw(st.integers(0, 2))):
            out.append(draw(st.sampled_from(["", draw(comments), draw(spaces)])))
        text = req
        if len(req) > 2 and draw(st.booleans()):
            cut = draw(st.integers(1, len(req) - 1))
            text = req[:cut] + "\\\n" + req[cut:]
        trailer = draw(st.one_of(st.just(""), comments.map(lambda c: "  " + c)))
        out.append(draw(spaces) + text + draw(spaces) + trailer)
    return "\n".join(out) + draw(st.sampled_from(["", "\n", "\n\n"]))


@given(st.data(), requirement_lists)
def test_comments_blanks_and_layout_do_not_change_the_normal_form(
    data: st.DataObject, reqs: list[str]
) -> None:
    text = data.draw(decorated(reqs))
    assert normalize_requirements(text) == tuple(reqs)


@given(st.data(), requirement_lists)
def test_equal_requirements_written_differently_share_a_digest(
    data: st.DataObject, reqs: list[str]
) -> None:
    a = normalize_requirements(data.draw(decorated(reqs)))
    b = normalize_requirements(data.draw(decorated(reqs)))
    assert python_digest(python_req(a), TOOLCHAIN, PipOptions()) == python_digest(
        python_req(b), TOOLCHAIN, PipOptions()
    )


@given(requirement_lists, requirement_lists)
def test_different_requirements_give_different_digests(a: list[str], b: list[str]) -> None:
    assume(a != b)
    assert python_digest(python_req(tuple(a)), TOOLCHAIN, PipOptions()) != python_digest(
        python_req(tuple(b)), TOOLCHAIN, PipOptions()
    )


@given(
    requirement_lists,
    st.sampled_from(["version", "platform", "executable", "installer", "soabi"]),
    st.text(min_size=1, max_size=10),
)
def test_the_toolchain_is_part_of_the_digest(reqs: list[str], field: str, value: str) -> None:
    other = replace(TOOLCHAIN, **{field: getattr(TOOLCHAIN, field) + value})
    req = python_req(tuple(reqs))
    assert python_digest(req, TOOLCHAIN, PipOptions()) != python_digest(req, other, PipOptions())


pip_options = st.builds(
    PipOptions,
    index_url=st.one_of(st.none(), st.sampled_from(["https://mirror.test/simple", "file:///w"])),
    extra_index_urls=st.lists(
        st.sampled_from(["https://a.test", "https://b.test"]), max_size=2
    ).map(tuple),
    find_links=st.lists(st.sampled_from(["/srv/wheels", "/opt/wh"]), max_size=2).map(tuple),
    no_index=st.booleans(),
)


@given(requirement_lists, pip_options, pip_options)
def test_install_options_are_part_of_the_digest(
    reqs: list[str], a: PipOptions, b: PipOptions
) -> None:
    req = python_req(tuple(reqs))
    same = python_digest(req, TOOLCHAIN, a) == python_digest(req, TOOLCHAIN, b)
    assert same == (a == b)
    digest = python_digest(req, TOOLCHAIN, a)
    assert len(digest) == DIGEST_LENGTH and set(digest) <= set("0123456789abcdef")


def node_req(package: bytes, lock: bytes | None) -> NodeRequirements:
    return NodeRequirements(
        package_json=SourceFile("package.json", package),
        lock=None if lock is None else SourceFile("package-lock.json", lock),
        npmrc=None,
    )


@given(st.binary(max_size=64), st.binary(max_size=64), st.binary(min_size=1, max_size=8))
def test_any_byte_of_package_json_or_the_lock_changes_the_node_digest(
    package: bytes, lock: bytes, extra: bytes
) -> None:
    base = node_digest(node_req(package, lock), NODE, NpmOptions())
    assert base == node_digest(node_req(package, lock), NODE, NpmOptions())
    assert base != node_digest(node_req(package + extra, lock), NODE, NpmOptions())
    assert base != node_digest(node_req(package, lock + extra), NODE, NpmOptions())
    assert base != node_digest(node_req(package, None), NODE, NpmOptions())


@given(st.binary(max_size=32), st.booleans(), st.sampled_from([None, "https://r.test/"]))
def test_with_a_lock_offline_and_registry_do_not_change_the_node_digest(
    package: bytes, offline: bool, registry: str | None
) -> None:
    locked = node_req(package, b"{}")
    assert node_digest(locked, NODE, NpmOptions()) == node_digest(
        locked, NODE, NpmOptions(offline=offline, registry=registry, cache_dir="/c")
    )
    unlocked = node_req(package, None)
    same = node_digest(unlocked, NODE, NpmOptions()) == node_digest(
        unlocked, NODE, NpmOptions(registry=registry)
    )
    assert same == (registry is None)


digests = st.from_regex(r"[0-9a-f]{20}", fullmatch=True)
nonces = st.from_regex(r"[0-9a-f]{8}", fullmatch=True)


@given(digests, digests, nonces, st.sampled_from(["python", "node"]))
def test_attempt_names_belong_to_exactly_their_digest(
    digest: str, other: str, nonce: str, kind: str
) -> None:
    layout = CacheLayout(Path("/cache"))
    build = layout.build_dir(kind, digest, nonce).name
    staging = layout.staging_link(kind, digest, nonce).name
    assert is_attempt_of(build, digest) and is_attempt_of(staging, digest)
    assert not is_attempt_of(layout.entry(kind, digest).name, digest)
    if other != digest:
        assert not is_attempt_of(build, other) and not is_attempt_of(staging, other)


policies = st.builds(
    lambda initial, extra, mult, attempts: RetryPolicy(initial, mult, initial + extra, attempts),
    st.floats(0, 100),
    st.floats(0, 1000),
    st.floats(1, 10),
    st.one_of(st.none(), st.integers(1, 20)),
)


@given(policies, st.integers(1, 200))
def test_backoff_grows_and_is_capped(policy: RetryPolicy, failures: int) -> None:
    delay = policy.delay(failures)
    assert policy.initial_delay <= delay <= policy.max_delay
    assert policy.delay(failures + 1) >= delay


@given(policies, st.lists(st.floats(0, 10), min_size=1, max_size=30), st.floats(0, 1e6))
def test_a_failure_sequence_schedules_or_gives_up_and_success_resets(
    policy: RetryPolicy, gaps: list[float], start: float
) -> None:
    state = RetryState()
    now = start
    for count, gap in enumerate(gaps, start=1):
        if state.gave_up:
            assert not state.due(now)
            break
        state = policy.after_failure(state, now, f"error {count}")
        assert state.failures == count and state.last_error == f"error {count}"
        if policy.max_attempts is not None and count >= policy.max_attempts:
            assert state.gave_up and state.next_attempt_at is None
        else:
            assert state.next_attempt_at == now + policy.delay(count)
            assert state.due(state.next_attempt_at)
        now += gap
    assert policy.after_success() == RetryState()
    assert policy.after_success().due(now)
