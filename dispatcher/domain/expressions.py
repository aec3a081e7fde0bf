"""Requirement expressions: who may take a task, written as data.

Pure domain (no I/O). A queue, and each of its escalation steps, may carry an expression over
the agent's skills and attributes and the task's attributes, beside its skill levels:

    support >= 5 AND (languages HAS task.language) AND NOT (tier = "trainee")

Grammar (keywords in any case; `&`, `|` and `!` may stand for AND, OR and NOT):

    expression := term (OR term)*
    term       := factor (AND factor)*
    factor     := NOT factor | "(" expression ")" | test
    test       := value [operator value]     a lone value: present and not empty, 0 or false
    operator   := = | == | != | < | <= | > | >= | HAS | IN
    value      := name | agent.name | task.name | "text" | 'text' | number | true | false
                | null | [literal, ...]

A bare name (or `agent.name`) is the agent's: their level when they hold that skill, else
their attribute (`languages`, `tier`, `site`...). `task.name` is one of the task's attributes
(what intake, the e-mail's category, the CTI's `call.arrived` or the API gave it), and
`task.form.name` a field of the web form it came from.

The tree is frozen dataclasses (`Test`, `Not`, `All`, `AnyOf` over `Lit` and `Ref`); `parse`
gives it, with an InvalidValue naming the column of the first mistake, and `show` prints it
back (`parse(show(t)) == t`). What an expression means, and how the router binds and tests it,
is requirements.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from .errors import InvalidValue

MAX_TEXT = 2000  # characters in one expression
MAX_DEPTH = 40  # nested NOT and parentheses
MAX_LIST = 100  # items in a list literal
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
KEYWORDS = frozenset({"and", "or", "not", "has", "in", "true", "false", "null"})


class _Absent:
    """What a missing skill, attribute or `null` is (one object, printed `null`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "null"


ABSENT: Any = _Absent()


def tag(value: Any) -> tuple:
    """A value's identity with its kind, so that `true` and `1` never compare equal."""
    if value is ABSENT:
        return ("-",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    return ("l", tuple(tag(v) for v in value))


# ------------------------------------------------------------------------- the tree


@dataclass(frozen=True, slots=True)
class Lit:
    """A literal: a number, a text, true/false, a list of those (a tuple), or ABSENT."""

    value: Any = field(compare=False)
    key: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", tag(self.value))


@dataclass(frozen=True, slots=True)
class Ref:
    scope: str  # "agent" | "task"
    name: str


@dataclass(frozen=True, slots=True)
class Test:
    """`left op right`, or a lone value's truth (op and right None)."""

    left: Lit | Ref
    op: str | None = None
    right: Lit | Ref | None = None


@dataclass(frozen=True, slots=True)
class Not:
    item: Node


@dataclass(frozen=True, slots=True)
class All:
    items: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Node, ...]


Node: TypeAlias = Test | Not | All | AnyOf
TRUE, FALSE = Test(Lit(True)), Test(Lit(False))


# ------------------------------------------------------------------------- parsing

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?![A-Za-z_])
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|==|!=|=|<|>)
  | (?P<punct>[()\[\],&|!])
  | (?P<name>[A-Za-z_][A-Za-z0-9_-]*(?:\.[A-Za-z_][A-Za-z0-9_-]*)*)
  )""", re.VERBOSE)
_ESCAPE = re.compile(r"\\(.)")


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, column) for each token, then ("end", "", column)."""
    out, pos = [], 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            rest = text[pos:]
            if not rest.strip():
                out.append(("end", "", len(text) + 1))
                return out
            col = pos + len(rest) - len(rest.lstrip()) + 1
            raise _error(text, col, f"unexpected {rest.lstrip()[0]!r}")
        kind = m.lastgroup or ""
        word = m.group(kind)
        col = m.start(kind) + 1
        if kind == "name" and word.lower() in KEYWORDS:
            kind = "keyword"
            word = word.upper()
        elif kind == "punct" and word in "&|!":
            kind, word = "keyword", {"&": "AND", "|": "OR", "!": "NOT"}[word]
        out.append((kind, word, col))
        pos = m.end()


def _error(text: str, column: int, message: str) -> InvalidValue:
    near = text[column - 1:column + 19]
    where = f" (near {near!r})" if near.strip() else " (at the end)"
    return InvalidValue(f"requirement expression, column {column}: {message}{where}: {text!r}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.toks[self.i]

    def take(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, message: str) -> InvalidValue:
        return _error(self.text, self.peek()[2], message)

    def expect(self, word: str) -> None:
        if self.peek()[1] != word:
            raise self.fail(f"expected {word!r}")
        self.take()

    def expression(self) -> Node:
        items = [self.term()]
        while self.peek()[:2] == ("keyword", "OR"):
            self.take()
            items.append(self.term())
        return items[0] if len(items) == 1 else AnyOf(tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self.peek()[:2] == ("keyword", "AND"):
            self.take()
            items.append(self.factor())
        return items[0] if len(items) == 1 else All(tuple(items))

    def factor(self) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"nested more than {MAX_DEPTH} deep")
        try:
            kind, word, _ = self.peek()
            if (kind, word) == ("keyword", "NOT"):
                self.take()
                return Not(self.factor())
            if word == "(":
                self.take()
                inner = self.expression()
                self.expect(")")
                return inner
            return self.test()
        finally:
            self.depth -= 1

    def test(self) -> Test:
        left = self.value()
        kind, word, _ = self.peek()
        if kind == "op" or (kind == "keyword" and word in ("HAS", "IN")):
            self.take()
            return Test(left, "=" if word == "==" else word, self.value())
        return Test(left)

    def value(self) -> Lit | Ref:
        kind, word, _ = self.peek()
        if kind == "punct" and word == "[":
            return self.list()
        literal = self.literal()
        if literal is not None:
            return literal
        if kind != "name":
            raise self.fail("expected a name, a number, a text or a list")
        self.take()
        scope, dot, name = word.partition(".")
        if not dot:
            return Ref("agent", word)
        if scope == "task":
            return Ref("task", name)
        if scope == "agent" and "." not in name:
            return Ref("agent", name)
        raise _error(self.text, self.toks[self.i - 1][2],
                     "a name is `name`, `agent.name` or `task.name` (`task.form.field` for a "
                     "field of the task's web form)")

    def literal(self) -> Lit | None:
        kind, word, _ = self.peek()
        if kind == "num":
            self.take()
            number = float(word) if any(c in word for c in ".eE") else int(word)
            if not math.isfinite(number):
                raise _error(self.text, self.toks[self.i - 1][2], "number too large")
            return Lit(number)
        if kind == "str":
            self.take()
            return Lit(_ESCAPE.sub(r"\1", word[1:-1]))
        if kind == "keyword" and word in ("TRUE", "FALSE", "NULL"):
            self.take()
            return Lit({"TRUE": True, "FALSE": False, "NULL": ABSENT}[word])
        return None

    def list(self) -> Lit:
        self.take()
        items: list[Any] = []
        while self.peek()[1] != "]":
            if items:
                self.expect(",")
            literal = self.literal()
            if literal is None:
                raise self.fail("a list holds numbers, texts, true or false")
            items.append(literal.value)
            if len(items) > MAX_LIST:
                raise self.fail(f"a list holds at most {MAX_LIST} items")
        self.take()
        return Lit(tuple(items))


def parse(text: str) -> Node:
    """The tree of an expression; InvalidValue naming the column of the first mistake."""
    if not isinstance(text, str):
        raise InvalidValue(f"a requirement expression is a text, got {text!r}")
    if len(text) > MAX_TEXT:
        raise InvalidValue(f"a requirement expression has at most {MAX_TEXT} characters")
    p = _Parser(text)
    if p.peek()[0] == "end":
        raise p.fail("the expression is empty")
    node = p.expression()
    if p.peek()[0] != "end":
        raise p.fail("expected AND, OR or the end")
    return node


# ------------------------------------------------------------------------- printing


def _show_value(v: Any) -> str:
    if v is ABSENT:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "[" + ", ".join(_show_value(x) for x in v) + "]"


def _show_operand(x: Lit | Ref) -> str:
    if isinstance(x, Lit):
        return _show_value(x.value)
    bare = x.scope == "agent" and x.name.lower() not in KEYWORDS
    return x.name if bare else f"{x.scope}.{x.name}"


def show(node: Node) -> str:
    """The canonical text of a tree: `parse(show(t)) == t`."""
    if isinstance(node, Test):
        if node.op is None:
            return _show_operand(node.left)
        return f"{_show_operand(node.left)} {node.op} {_show_operand(node.right)}"  # type: ignore[arg-type]
    if isinstance(node, Not):
        return f"NOT ({show(node.item)})"
    word = " AND " if isinstance(node, All) else " OR "
    return word.join(show(x) if isinstance(x, Test | Not) or (
        isinstance(node, AnyOf) and isinstance(x, All)) else f"({show(x)})" for x in node.items)
