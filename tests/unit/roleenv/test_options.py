"""Install options: the pip/npm arguments they stand for, and parsing them from settings."""

from __future__ import annotations

import pytest

from cumulo.host import roleenv
from cumulo.host.roleenv.options import SETTINGS, NpmOptions, PipOptions


def test_pip_arguments() -> None:
    assert PipOptions().arguments() == []
    assert PipOptions(
        index_url="https://m.test/simple",
        extra_index_urls=("https://x.test/simple",),
        find_links=("/srv/wheels",),
        no_index=True,
    ).arguments() == [
        "--no-index",
        "--index-url",
        "https://m.test/simple",
        "--extra-index-url",
        "https://x.test/simple",
        "--find-links",
        "/srv/wheels",
    ]


def test_npm_arguments() -> None:
    assert NpmOptions().arguments() == ["--no-audit", "--no-fund", "--loglevel=warn", "--omit=dev"]
    assert NpmOptions(
        registry="https://r.test/",
        offline=True,
        cache_dir="/c",
        include_dev=True,
        ignore_scripts=True,
    ).arguments() == [
        "--no-audit",
        "--no-fund",
        "--loglevel=warn",
        "--ignore-scripts",
        "--registry",
        "https://r.test/",
        "--offline",
        "--cache",
        "/c",
    ]


def test_options_from_settings() -> None:
    opts = roleenv.options_from_settings(
        {
            "pip.find_links": "/srv/wheels, /opt/more",
            "pip.no_index": "true",
            "npm.offline": "yes",
            "npm.cache_dir": "/var/cache/npm",
            "python": "/opt/python3.12/bin/python3",
            "timeout_seconds": "120",
        },
        roleenv.BuildOptions(role="Web"),
    )
    assert opts.pip == PipOptions(find_links=("/srv/wheels", "/opt/more"), no_index=True)
    assert opts.npm == NpmOptions(offline=True, cache_dir="/var/cache/npm")
    assert (opts.python, opts.timeout_seconds, opts.role) == (
        "/opt/python3.12/bin/python3",
        120.0,
        "Web",
    )


def test_options_from_environ_reads_the_documented_variables() -> None:
    opts = roleenv.options_from_environ(
        {
            "CUMULO_PIP_INDEX_URL": "https://m.test/simple",
            "CUMULO_NPM_REGISTRY": "https://r/",
            "HOME": "/root",
        }
    )
    assert opts.pip.index_url == "https://m.test/simple" and opts.npm.registry == "https://r/"
    assert set(SETTINGS.values()) >= {"CUMULO_PIP_INDEX_URL", "CUMULO_ROLE_PYTHON"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"pip.mirror": "x"}, "deployment: unknown setting 'pip.mirror' (known: "),
        ({"npm.offline": "maybe"}, "deployment: setting 'npm.offline' is 'maybe'; use true"),
        ({"timeout_seconds": "soon"}, "setting 'timeout_seconds' is 'soon'; use a number"),
        ({"timeout_seconds": "0"}, "above 0"),
    ],
)
def test_bad_settings_are_clear_sentences(values: dict[str, str], message: str) -> None:
    with pytest.raises(roleenv.RoleDependenciesError) as caught:
        roleenv.options_from_settings(values, where="deployment")
    assert message in caught.value.message
