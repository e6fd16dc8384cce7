"""The OData ``$filter`` subset the table SDK produces: parse once, evaluate per entity.

Grammar (case-insensitive keywords)::

    expr    := and ('or' and)*
    and     := unary ('and' unary)*
    unary   := 'not' unary | compare
    compare := operand (('eq'|'ne'|'gt'|'ge'|'lt'|'le') operand)?
    operand := '(' expr ')' | literal | property
    literal := 'text' ('' escapes a quote) | 12 | 12L | 1.5 | 1.5D | true | false
             | datetime'2024-01-01T00:00:00Z' | guid'…' | X'0A0B' | binary'0A0B'

Values compare within a type family (string, number, boolean, datetime, guid, binary); a
comparison with a missing property or across families is false, as in Azure (Int32, Int64 and
Double compare with each other as numbers: a documented leniency). Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cumulo.storage.azure.errors import StorageError

# An entity as stored: property name -> (Edm type, wire value).
Entity = Mapping[str, tuple[str, Any]]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<typed>(?:datetime|guid|binary|X|datetimeoffset)'(?:[^']|'')*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?[LlDdMmFf]?)
    | (?P<paren>[()])
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_COMPARE = {"eq", "ne", "gt", "ge", "lt", "le"}


class FilterError(StorageError):
    def __init__(self, text: str, why: str) -> None:
        super().__init__(400, "InvalidInput", f"The $filter {text!r} is not valid: {why}.")


@dataclass(frozen=True)
class Lit:
    family: str
    value: Any


@dataclass(frozen=True)
class Prop:
    name: str


@dataclass(frozen=True)
class Cmp:
    op: str
    left: Lit | Prop
    right: Lit | Prop


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    inner: Node


Node = Cmp | And | Or | Not | Lit | Prop


def parse_datetime(text: str) -> datetime:
    """ISO 8601 as Azure and the SDK write it (up to 7 fractional digits, 'Z' or offset)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def literal(kind: str, text: str) -> Lit:
    """A typed literal token -> Lit (raises ValueError on a bad value)."""
    if kind == "string":
        return Lit("str", text[1:-1].replace("''", "'"))
    if kind == "number":
        suffix = text[-1].lower() if text[-1].isalpha() else ""
        body = text[:-1] if suffix else text
        if suffix in ("d", "m", "f") or "." in body or "e" in body.lower():
            return Lit("num", float(body))
        return Lit("num", int(body))
    prefix, _, rest = text.partition("'")
    inner = rest[:-1].replace("''", "'")
    p = prefix.lower()
    if p in ("datetime", "datetimeoffset"):
        return Lit("datetime", parse_datetime(inner))
    if p == "guid":
        return Lit("guid", str(uuid.UUID(inner)))
    return Lit("binary", bytes.fromhex(inner))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            m = _TOKEN.match(text, pos)
            if m is None or m.end() == pos:
                raise FilterError(
                    text, f"unexpected text at position {pos}: {text[pos : pos + 20]!r}"
                )
            kind = m.lastgroup or ""
            self.tokens.append((kind, m.group(kind)))
            pos = m.end()
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise FilterError(self.text, "it ends too early")
        self.i += 1
        return token

    def keyword(self, *words: str) -> str | None:
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() in words:
            self.i += 1
            return token[1].lower()
        return None

    def parse(self) -> Node:
        if not self.tokens:
            raise FilterError(self.text, "it is empty")
        node = self.expr()
        if self.peek() is not None:
            raise FilterError(self.text, f"unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return node

    def expr(self) -> Node:
        node = self.conj()
        while self.keyword("or"):
            node = Or(node, self.conj())
        return node

    def conj(self) -> Node:
        node = self.unary()
        while self.keyword("and"):
            node = And(node, self.unary())
        return node

    def unary(self) -> Node:
        if self.keyword("not"):
            return Not(self.unary())
        return self.compare()

    def compare(self) -> Node:
        left = self.operand()
        token = self.peek()
        if token and token[0] == "word" and token[1].lower() in _COMPARE:
            self.i += 1
            right = self.operand()
            if isinstance(left, (And, Or, Not, Cmp)) or isinstance(right, (And, Or, Not, Cmp)):
                raise FilterError(
                    self.text, "a comparison needs a property or a value on each side"
                )
            return Cmp(token[1].lower(), left, right)
        return left

    def operand(self) -> Node:
        kind, text = self.take()
        if kind == "paren":
            if text != "(":
                raise FilterError(self.text, "unbalanced ')'")
            node = self.expr()
            closing = self.take()
            if closing != ("paren", ")"):
                raise FilterError(self.text, "missing ')'")
            return node
        if kind == "word":
            low = text.lower()
            if low in ("true", "false"):
                return Lit("bool", low == "true")
            if low in _COMPARE or low in ("and", "or", "not"):
                raise FilterError(self.text, f"unexpected keyword {text!r}")
            return Prop(text)
        try:
            return literal(kind, text)
        except (ValueError, binascii.Error) as exc:
            raise FilterError(self.text, f"bad literal {text!r} ({exc})") from None


def parse_filter(text: str) -> Node:
    """Parse a ``$filter`` expression (StorageError 400 InvalidInput on bad syntax)."""
    return _Parser(text).parse()


def family_value(edm: str, value: Any) -> Lit | None:
    """A stored property (Edm type, wire value) as a comparable Lit."""
    try:
        if edm == "Edm.String":
            return Lit("str", value)
        if edm in ("Edm.Int32", "Edm.Int64"):
            return Lit("num", int(value))
        if edm == "Edm.Double":
            return Lit("num", float(value))
        if edm == "Edm.Boolean":
            return Lit("bool", bool(value))
        if edm == "Edm.DateTime":
            return Lit("datetime", parse_datetime(value))
        if edm == "Edm.Guid":
            return Lit("guid", str(uuid.UUID(value)))
        if edm == "Edm.Binary":
            return Lit("binary", base64.b64decode(value))
    except (ValueError, TypeError, binascii.Error):
        return None
    return None


def _operand(node: Lit | Prop, entity: Entity) -> Lit | None:
    if isinstance(node, Lit):
        return node
    stored = entity.get(node.name)
    if stored is None:
        return None
    return family_value(*stored)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "eq":
        return bool(a == b)
    if op == "ne":
        return bool(a != b)
    if op == "gt":
        return bool(a > b)
    if op == "ge":
        return bool(a >= b)
    if op == "lt":
        return bool(a < b)
    return bool(a <= b)


def evaluate(node: Node, entity: Entity) -> bool:
    """Does the entity match the filter?"""
    if isinstance(node, And):
        return evaluate(node.left, entity) and evaluate(node.right, entity)
    if isinstance(node, Or):
        return evaluate(node.left, entity) or evaluate(node.right, entity)
    if isinstance(node, Not):
        return not evaluate(node.inner, entity)
    if isinstance(node, Lit):
        return node.family == "bool" and bool(node.value)
    if isinstance(node, Prop):
        value = _operand(node, entity)
        return value is not None and value.family == "bool" and bool(value.value)
    left = _operand(node.left, entity)
    right = _operand(node.right, entity)
    if left is None or right is None or left.family != right.family:
        return False
    if left.family in ("bool", "guid") and node.op not in ("eq", "ne"):
        return False
    lv, rv = left.value, right.value
    if left.family == "num" and (
        (isinstance(lv, float) and math.isnan(lv)) or (isinstance(rv, float) and math.isnan(rv))
    ):
        return node.op == "ne"
    return _compare(node.op, lv, rv)


def key_equalities(node: Node) -> dict[str, str]:
    """``PartitionKey eq '…'`` / ``RowKey eq '…'`` conjuncts at the top level (for indexes)."""
    found: dict[str, str] = {}
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, And):
            stack += [current.left, current.right]
        elif isinstance(current, Cmp) and current.op == "eq":
            pairs = [(current.left, current.right), (current.right, current.left)]
            for prop, lit in pairs:
                if (
                    isinstance(prop, Prop)
                    and prop.name in ("PartitionKey", "RowKey")
                    and isinstance(lit, Lit)
                    and lit.family == "str"
                ):
                    found[prop.name] = lit.value
    return found


# -- compiled evaluation: the same semantics as ``evaluate``, one closure per node -------------

Predicate = Callable[[Entity], bool]

_FAMILY = {
    "Edm.String": "str",
    "Edm.Int32": "num",
    "Edm.Int64": "num",
    "Edm.Double": "num",
    "Edm.Boolean": "bool",
    "Edm.DateTime": "datetime",
    "Edm.Guid": "guid",
    "Edm.Binary": "binary",
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: bool(a == b),
    "ne": lambda a, b: bool(a != b),
    "gt": lambda a, b: bool(a > b),
    "ge": lambda a, b: bool(a >= b),
    "lt": lambda a, b: bool(a < b),
    "le": lambda a, b: bool(a <= b),
}


def _getter(node: Lit | Prop) -> Callable[[Entity], Lit | None]:
    if isinstance(node, Lit):
        lit = node
        return lambda _entity: lit
    name = node.name

    def get(entity: Entity) -> Lit | None:
        stored = entity.get(name)
        if stored is None:
            return None
        edm, value = stored
        if edm == "Edm.String":
            return Lit("str", value)
        return family_value(edm, value)

    return get


def compile_filter(node: Node) -> Predicate:
    """A fast predicate equivalent to ``lambda e: evaluate(node, e)``."""
    if isinstance(node, And):
        left, right = compile_filter(node.left), compile_filter(node.right)
        return lambda e: left(e) and right(e)
    if isinstance(node, Or):
        left, right = compile_filter(node.left), compile_filter(node.right)
        return lambda e: left(e) or right(e)
    if isinstance(node, Not):
        inner = compile_filter(node.inner)
        return lambda e: not inner(e)
    if isinstance(node, (Lit, Prop)):
        return lambda e: evaluate(node, e)
    op_name = node.op
    compare = _OPS[op_name]
    if isinstance(node.left, Prop) and isinstance(node.right, Lit):
        # The common shape: Property op literal, with the literal's family known up front.
        name, lit = node.left.name, node.right
        family, expected = lit.family, lit.value
        if family in ("bool", "guid") and op_name not in ("eq", "ne"):
            return lambda e: False
        nan_literal = family == "num" and isinstance(expected, float) and math.isnan(expected)

        def prop_vs_literal(entity: Entity) -> bool:
            stored = entity.get(name)
            if stored is None or _FAMILY.get(stored[0]) != family:
                return False
            edm, value = stored
            if family != "str":
                converted = family_value(edm, value)
                if converted is None:
                    return False
                value = converted.value
            if family == "num" and (
                nan_literal or (isinstance(value, float) and math.isnan(value))
            ):
                return op_name == "ne"
            return compare(value, expected)

        return prop_vs_literal
    return lambda e: evaluate(node, e)
