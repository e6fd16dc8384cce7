"""Shared helpers for reading service files: attribute and element checks that accumulate problems.

Every check adds a ``Problem`` (file, line, one sentence) and returns a usable value or None, so
a reader goes through the whole file and reports everything at once.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import TypeVar

from cumulo.errors import Problem
from cumulo.model.definition import CUMULO_NAMESPACE
from cumulo.model.xmlsafe import Node

XSI_NAMESPACE = "http://www.w3.org/2001/XMLSchema-instance"

E = TypeVar("E", bound=StrEnum)


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`` did you mean 'x'?`` for the closest choice, or an empty string."""
    options = list(choices)
    for option in options:
        if option.lower() == word.lower():
            return f" did you mean '{option}'?"
    close = difflib.get_close_matches(word, options, n=1, cutoff=cutoff)
    return f" did you mean '{close[0]}'?" if close else ""


def _expected(options: Sequence[str]) -> str:
    quoted = [f"'{o}'" for o in options]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1]


class Reader:
    """Reads one file's tree, collecting problems for ``file``."""

    def __init__(self, file: str, namespace: str) -> None:
        self.file = file
        self.namespace = namespace
        self.problems: list[Problem] = []

    def problem(self, line: int | None, message: str) -> None:
        """Record one problem."""
        self.problems.append(Problem(self.file, line, message))

    # -- structure -----------------------------------------------------------------------

    def check(
        self,
        node: Node,
        what: str,
        attrs: Sequence[str] = (),
        children: Sequence[str] = (),
        ext_attrs: Sequence[str] = (),
        repeatable: Sequence[str] = (),
    ) -> dict[str, list[Node]]:
        """Report unknown attributes and elements of ``node``; return its children by tag.

        Children not listed in ``repeatable`` may appear at most once.
        """
        for key in node.attrs:
            if key.startswith("{"):
                ns, local = key[1:].split("}", 1)
                if ns == XSI_NAMESPACE:
                    continue
                if ns == CUMULO_NAMESPACE:
                    if local not in ext_attrs:
                        hint = did_you_mean(local, ext_attrs)
                        self.problem(
                            node.line,
                            f"{what} has unknown cumulo extension attribute '{local}';"
                            + (hint or " cumulo defines none here."),
                        )
                    continue
                self.problem(
                    node.line,
                    f"{what} has attribute '{local}' in unknown namespace '{ns}'; only "
                    f"Azure's and cumulo's ({CUMULO_NAMESPACE}) namespaces are read.",
                )
                continue
            if key not in attrs:
                hint = did_you_mean(key, attrs)
                self.problem(
                    node.line,
                    f"{what} has unknown attribute '{key}';"
                    + (hint or f" allowed: {_expected(attrs) if attrs else 'none'}."),
                )
        found: dict[str, list[Node]] = {}
        for child in node.children:
            if child.namespace != self.namespace:
                if child.namespace == CUMULO_NAMESPACE:
                    self.problem(
                        child.line,
                        f"{what} has unknown cumulo extension element <{child.tag}>.",
                    )
                else:
                    shown = child.namespace or "no namespace"
                    self.problem(
                        child.line,
                        f"{what} has element <{child.tag}> in {shown!s}; expected the namespace "
                        f"{self.namespace}.",
                    )
                continue
            if child.tag not in children:
                hint = did_you_mean(child.tag, children)
                if hint:
                    hint = hint.replace("'", "<", 1)
                    hint = hint[: hint.rindex("'")] + ">?"
                self.problem(
                    child.line,
                    f"{what} has unknown element <{child.tag}>;"
                    + (hint or f" allowed: {_expected(children) if children else 'none'}."),
                )
                continue
            if child.tag in found and child.tag not in repeatable:
                self.problem(
                    child.line,
                    f"{what} has a second <{child.tag}> element; it may appear only once.",
                )
                continue
            found.setdefault(child.tag, []).append(child)
        return found

    # -- typed attributes ----------------------------------------------------------------

    def required(self, node: Node, attr: str, what: str) -> str | None:
        """A required attribute's value, or None after reporting it missing or empty."""
        value = node.attrs.get(attr)
        if value is None:
            self.problem(node.line, f"{what} lacks the required attribute '{attr}'.")
            return None
        if not value.strip():
            self.problem(node.line, f"{what} has an empty '{attr}'.")
            return None
        return value

    def integer(self, node: Node, attr: str, what: str) -> int | None:
        """An optional whole-number attribute (None when absent or malformed)."""
        raw = node.attrs.get(attr)
        if raw is None:
            return None
        try:
            return int(raw.strip(), 10)
        except ValueError:
            self.problem(node.line, f"{what} has {attr} '{raw}'; expected a whole number.")
            return None

    def boolean(self, node: Node, attr: str, what: str, default: bool) -> bool:
        """An optional ``true``/``false`` attribute."""
        raw = node.attrs.get(attr)
        if raw is None:
            return default
        lowered = raw.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        self.problem(node.line, f"{what} has {attr} '{raw}'; expected 'true' or 'false'.")
        return default

    def choice(
        self, node: Node, attr: str, what: str, enum: type[E], default: E | None
    ) -> E | None:
        """An enumerated attribute (case-insensitive, as Azure's tools accept)."""
        raw = node.attrs.get(attr)
        if raw is None:
            return default
        for member in enum:
            if member.value.lower() == raw.strip().lower():
                return member
        options = [m.value for m in enum]
        self.problem(node.line, f"{what} has {attr} '{raw}'; expected {_expected(options)}.")
        return None

    def one_of(
        self, node: Node, attr: str, what: str, options: Sequence[str], default: str | None
    ) -> str | None:
        """A string attribute from a fixed list (case-insensitive); returns Azure's spelling."""
        raw = node.attrs.get(attr)
        if raw is None:
            return default
        for option in options:
            if option.lower() == raw.strip().lower():
                return option
        self.problem(node.line, f"{what} has {attr} '{raw}'; expected {_expected(options)}.")
        return None
