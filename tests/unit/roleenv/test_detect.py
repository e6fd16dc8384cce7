"""Detection: what a role folder declares, and clear sentences when it is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cumulo.host.roleenv import RoleDependenciesError, detect
from cumulo.host.roleenv.detect import logical_lines, normalize_requirements


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_a_folder_without_declarations_needs_nothing(tmp_path: Path) -> None:
    req = detect(write(tmp_path, {"app.py": "print(1)\n"}))
    assert req.python is None and req.node is None and req.declared == ()


def test_requirements_with_includes_comments_and_continuations(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.txt": "# top\n-r reqs/base.txt\n--constraint=reqs/pins.txt\n"
            "flask>=3 \\\n  ; python_version >= '3.8'  # web\n\n",
            "reqs/base.txt": "requests==2.31.0\n-r ../requirements.txt\n",
            "reqs/pins.txt": "urllib3<3\n",
        },
    )
    req = detect(tmp_path)
    assert req.python is not None and req.python.source == "requirements.txt"
    assert dict(req.python.normalized) == {
        "requirements.txt": (
            "-r reqs/base.txt",
            "--constraint=reqs/pins.txt",
            "flask>=3 ; python_version >= '3.8'",
        ),
        "reqs/base.txt": ("requests==2.31.0", "-r ../requirements.txt"),
        "reqs/pins.txt": ("urllib3<3",),
    }
    assert [f.path for f in req.python.files] == [
        "requirements.txt",
        "reqs/base.txt",
        "reqs/pins.txt",
    ]


def test_a_missing_include_names_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "six\n\n-r dev.txt\n"})
    with pytest.raises(RoleDependenciesError) as caught:
        detect(tmp_path)
    assert caught.value.message == (
        f"{tmp_path / 'requirements.txt'}:3 includes 'dev.txt', which does not exist."
    )


@pytest.mark.parametrize("target", ["../outside.txt", "/etc/passwd", "https://x.test/r.txt"])
def test_includes_must_stay_inside_the_role_folder(tmp_path: Path, target: str) -> None:
    role = write(tmp_path / "role", {"requirements.txt": f"-r {target}\n"})
    write(tmp_path, {"outside.txt": "six\n"})
    with pytest.raises(RoleDependenciesError, match=r"requirements.txt:1: include") as caught:
        detect(role)
    assert target in caught.value.message


@pytest.mark.parametrize(
    "line",
    [
        "-e .",
        "--editable=git+https://x.test/r.git",
        "./libs/mine",
        "/opt/wheels/x.whl",
        "file:///opt/x.whl",
        "mine @ file:///opt/mine",
    ],
)
def test_local_path_requirements_are_refused_with_the_reason(tmp_path: Path, line: str) -> None:
    write(tmp_path, {"requirements.txt": f"six\n{line}\n"})
    with pytest.raises(RoleDependenciesError) as caught:
        detect(tmp_path)
    message = caught.value.message
    assert message.startswith(f"{tmp_path / 'requirements.txt'}:2: requirement '{line}'")
    assert "wheelhouse" in message


def test_a_requirements_file_that_is_not_text(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_bytes(b"six\n\xff\xfe\n")
    with pytest.raises(RoleDependenciesError, match="not UTF-8 text"):
        detect(tmp_path)


def test_pyproject_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "web"\nversion = "1"\n'
            'dependencies = [\n  "flask>=3",\n  "requests  ==2.31.0",\n]\n'
        },
    )
    req = detect(tmp_path)
    assert req.python is not None and req.python.source == "pyproject.toml"
    assert req.python.dependencies == ("flask>=3", "requests ==2.31.0")


def test_a_pyproject_of_tool_settings_only_declares_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"pyproject.toml": "[tool.ruff]\nline-length = 100\n"})
    assert detect(tmp_path).python is None


def test_requirements_txt_wins_over_pyproject_and_says_so(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "requirements.txt": "six\n",
            "pyproject.toml": '[project]\nname = "x"\ndependencies = ["flask"]\n',
        },
    )
    req = detect(tmp_path)
    assert req.python is not None and req.python.source == "requirements.txt"
    assert any("requirements.txt takes precedence" in n for n in req.notes)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[project\nname = 1\n", "not valid TOML"),
        ('[project]\nname = "x"\ndynamic = ["dependencies"]\n', "dynamic"),
        ('[project]\nname = "x"\n\ndependencies = "flask"\n', "pyproject.toml:4: [project] dep"),
        ('[project]\nname = "x"\ndependencies = ["./here"]\n', "is a local path"),
    ],
)
def test_pyproject_problems(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, {"pyproject.toml": text})
    with pytest.raises(RoleDependenciesError) as caught:
        detect(tmp_path)
    assert expected in caught.value.message


def test_package_json_with_a_lock_and_npmrc(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "package.json": '{"name": "w", "dependencies": {"a": "1"}}',
            "package-lock.json": '{"lockfileVersion": 3}',
            "npm-shrinkwrap.json": '{"lockfileVersion": 3, "shrink": true}',
            ".npmrc": "@corp:registry=https://npm.corp.test/\n",
        },
    )
    req = detect(tmp_path)
    assert req.node is not None
    assert req.node.lock is not None and req.node.lock.path == "npm-shrinkwrap.json"
    assert [f.path for f in req.node.files] == ["package.json", "npm-shrinkwrap.json", ".npmrc"]
    assert req.notes == ()


def test_package_json_without_a_lock_is_noted(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": json.dumps({"name": "w"})})
    req = detect(tmp_path)
    assert req.node is not None and req.node.lock is None
    assert any("commit the lock file" in n for n in req.notes)


def test_bad_package_json_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": '{\n  "name": "w",\n  "dependencies": {,}\n}\n'})
    with pytest.raises(RoleDependenciesError) as caught:
        detect(tmp_path)
    assert caught.value.message.startswith(f"{tmp_path / 'package.json'}:3: not valid JSON")


def test_package_json_must_be_an_object(tmp_path: Path) -> None:
    write(tmp_path, {"package.json": "[1, 2]"})
    with pytest.raises(RoleDependenciesError, match="must hold a JSON object, not list"):
        detect(tmp_path)


def test_a_role_may_declare_python_and_node(tmp_path: Path) -> None:
    write(tmp_path, {"requirements.txt": "six\n", "package.json": "{}"})
    req = detect(tmp_path)
    assert [r.kind for r in req.declared] == ["python", "node"]


def test_a_missing_role_folder(tmp_path: Path) -> None:
    with pytest.raises(RoleDependenciesError, match="the role folder does not exist"):
        detect(tmp_path / "nope")


def test_logical_lines_keep_the_first_line_number() -> None:
    lines = logical_lines("# c\n\nflask \\\n  >=3\nsix # trailing\nurl#frag\n")
    assert [(line.line, line.text) for line in lines] == [
        (3, "flask >=3"),
        (5, "six"),
        (6, "url#frag"),
    ]
    assert normalize_requirements("a\\") == ("a",)
