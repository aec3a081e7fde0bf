"""What a requirement expression means, and how the router uses it.

Pure domain (no I/O). The grammar and the tree are expressions.py; this module gives them their
meaning (`evaluate`, the reference), binds them to tasks and compiles them for the router
(`Requirement`, `Condition`), and checks agents' attributes (`check_attributes`).

Meaning. A test is true or false, never unknown:
  - something absent (the agent has neither that skill nor that attribute, the task lacks the
    attribute, `null`) makes every test on it false, except `!=`, which is then true: so
    `NOT (tier = "trainee")` and `tier != "trainee"` hold for an agent without a tier;
  - `=` and `!=` compare values of one kind (numbers, texts, true/false, lists item by item);
    values of different kinds are unequal (`1 = true` is false);
  - `<`, `<=`, `>`, `>=` compare two numbers or two texts, and are false otherwise;
  - `A HAS B`: every item of B (one value or a list) is an item of A (a list, or one value as a
    list of one); `B IN A` is the same test.

The cost. `Requirement` compiles an expression once, when its queue is configured; a mistake
is an InvalidValue naming the column. The router binds it to each task as the task arrives
(or changes step or queue): every `task.x` becomes the task's value and what no longer depends
on the agent folds away, giving a `Condition` that reads only the agent, or None when nothing
is left to test. Conditions are interned per distinct binding and are part of a bucket's key
beside the skill levels, so a decision still looks at the head of one bucket: O(1) in the
number of agents and in the queue's depth, as without expressions. A condition is evaluated
when its bucket is made (once per member of the queue) and when an agent's configuration
changes (once per bucket of the queue they serve). What grows is the number of buckets: one
per distinct binding, so an expression should name task attributes that take few values
(language, tier, product), never one that is different for every task (a subject, an id).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import InvalidValue
from .expressions import (
    ABSENT,
    FALSE,
    KEYWORDS,
    MAX_LIST,
    NAME,
    TRUE,
    All,
    Lit,
    Node,
    Not,
    Ref,
    Test,
    parse,
    show,
    tag,
)

# A requirement keeps at most this many bound conditions (distinct task values); beyond, it
# starts again (each is still correct; only the sharing is lost).
MAX_BOUND = 4096


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "b"
    if isinstance(v, int | float):
        return "n"
    if isinstance(v, str):
        return "s"
    if isinstance(v, list | tuple):
        return "l"
    return "-"  # ABSENT, None, an object


def _eq(a: Any, b: Any) -> bool:
    ka = _kind(a)
    if ka == "-" or ka != _kind(b):
        return False
    if ka == "l":
        return len(a) == len(b) and all(_eq(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        ka = _kind(a)
        return ka in ("n", "s") and ka == _kind(b) and test(a, b)
    return compare


def _has(a: Any, b: Any) -> bool:
    if _kind(a) == "-" or _kind(b) == "-":
        return False
    outer = a if isinstance(a, list | tuple) else (a,)
    inner = b if isinstance(b, list | tuple) else (b,)
    return all(any(_eq(x, y) for x in outer) for y in inner)


def truth(v: Any) -> bool:
    """A lone value's test: present and not empty, zero or false."""
    k = _kind(v)
    return k != "-" and bool(v)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": _eq,
    "!=": lambda a, b: not _eq(a, b),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
    "HAS": _has,
    "IN": lambda a, b: _has(b, a),
}


def agent_value(name: str, skills: Mapping[str, int], attributes: Mapping[str, Any]) -> Any:
    """What a bare name is for an agent: their skill level, else their attribute, else ABSENT."""
    if name in skills:
        return skills[name]
    value = attributes.get(name, ABSENT)
    return ABSENT if value is None else value


def evaluate(node: Node, skills: Mapping[str, int], attributes: Mapping[str, Any],
             task: Mapping[str, Any]) -> bool:
    """The tree read directly (the reference; the router uses bound, compiled conditions)."""
    if isinstance(node, Test):
        def get(x: Lit | Ref) -> Any:
            if isinstance(x, Lit):
                return x.value
            if x.scope == "task":
                return task_value(lookup(task, x.name))
            return agent_value(x.name, skills, attributes)
        if node.op is None:
            return truth(get(node.left))
        return OPS[node.op](get(node.left), get(node.right))  # type: ignore[arg-type]
    if isinstance(node, Not):
        return not evaluate(node.item, skills, attributes, task)
    if isinstance(node, All):
        return all(evaluate(x, skills, attributes, task) for x in node.items)
    return any(evaluate(x, skills, attributes, task) for x in node.items)


# ------------------------------------------------------------------------- binding

def lookup(attributes: Mapping[str, Any], path: str) -> Any:
    """A task attribute by name, or by dotted path into an object (`form.product`)."""
    value: Any = attributes
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return ABSENT
        value = value.get(part, ABSENT)
    return value


def task_value(value: Any) -> Any:
    """A task attribute as a literal: lists become tuples; null and objects are ABSENT."""
    if value is None or value is ABSENT or isinstance(value, dict):
        return ABSENT
    if isinstance(value, float) and not math.isfinite(value):
        return ABSENT
    if isinstance(value, list | tuple):
        return tuple(task_value(v) for v in value)
    return value


def _names(node: Node, scope: str) -> set[str]:
    if isinstance(node, Test):
        return {x.name for x in (node.left, node.right)
                if isinstance(x, Ref) and x.scope == scope}
    if isinstance(node, Not):
        return _names(node.item, scope)
    return set().union(*(_names(x, scope) for x in node.items))


def _bind(node: Node, values: Mapping[str, Any]) -> Node:
    """Replace `task.x` by its literal, then fold what no longer reads the agent."""
    if isinstance(node, Test):
        left, right = (Lit(values[x.name]) if isinstance(x, Ref) and x.scope == "task" else x
                       for x in (node.left, node.right or Lit(ABSENT)))
        if isinstance(left, Ref) or isinstance(right, Ref):
            return Test(left, node.op, right if node.op else None)
        if node.op is None:
            return TRUE if truth(left.value) else FALSE
        return TRUE if OPS[node.op](left.value, right.value) else FALSE
    if isinstance(node, Not):
        inner = _bind(node.item, values)
        return FALSE if inner == TRUE else TRUE if inner == FALSE else Not(inner)
    ok, stop = (TRUE, FALSE) if isinstance(node, All) else (FALSE, TRUE)
    items: list[Node] = []
    for x in node.items:
        b = _bind(x, values)
        if b == stop:
            return stop
        if b != ok:
            items.append(b)
    if not items:
        return ok
    return items[0] if len(items) == 1 else type(node)(tuple(items))


def _compile(node: Node) -> Callable[[Mapping[str, int], Mapping[str, Any]], bool]:
    """A function of (skills, attributes) equal to `evaluate` on a tree without task refs."""
    if isinstance(node, Test):
        left, op, right = node.left, node.op, node.right
        if isinstance(left, Lit) and (right is None or isinstance(right, Lit)):
            constant = evaluate(node, {}, {}, {})
            return lambda s, a: constant
        if op is None:
            name = left.name  # type: ignore[union-attr]
            return lambda s, a: truth(agent_value(name, s, a))
        fn = OPS[op]
        if isinstance(left, Ref) and isinstance(right, Lit):
            lname, rv = left.name, right.value
            return lambda s, a: fn(agent_value(lname, s, a), rv)
        if isinstance(left, Lit) and isinstance(right, Ref):
            lv, rname = left.value, right.name
            return lambda s, a: fn(lv, agent_value(rname, s, a))
        ln, rn = left.name, right.name  # type: ignore[union-attr]
        return lambda s, a: fn(agent_value(ln, s, a), agent_value(rn, s, a))
    if isinstance(node, Not):
        inner = _compile(node.item)
        return lambda s, a: not inner(s, a)
    parts = tuple(_compile(x) for x in node.items)
    if isinstance(node, All):
        return lambda s, a: all(p(s, a) for p in parts)
    return lambda s, a: any(p(s, a) for p in parts)


class Condition:
    """A requirement bound to one task: it reads only the agent. Equal trees are equal
    conditions (part of a bucket's key: the hash is computed once); `meets(skills,
    attributes)` is the test; `names`, the agent's names it reads (for the "highest skill"
    order: the levels of those)."""

    __slots__ = ("node", "meets", "names", "_hash", "_text")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.meets: Callable[[Mapping[str, int], Mapping[str, Any]], bool] = _compile(node)
        self.names = frozenset(_names(node, "agent"))
        self._hash = hash(node)
        self._text: str | None = None

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return self is other or (isinstance(other, Condition) and self._hash == other._hash
                                 and self.node == other.node)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    @property
    def text(self) -> str:
        """The canonical text (made once: explanations name it at every decision)."""
        if self._text is None:
            self._text = show(self.node)
        return self._text


def condition(node: Node) -> Condition | None:
    """A task-free tree as a condition; None when it is always true (nothing to test)."""
    return None if node == TRUE else Condition(node)


def _key(value: Any) -> Any:
    """A binding's part of the interning key: a plain value with its type (so that `true`,
    `1` and `1.0` are told apart), a list by its tagged items."""
    return (type(value), value) if isinstance(value, str | int | float) else tag(value)


class Requirement:
    """One expression, compiled: `bind(attributes)` gives each task its Condition."""

    __slots__ = ("text", "node", "task_names", "_paths", "_fixed", "_bound")

    def __init__(self, text: str) -> None:
        self.node = parse(text)
        self.text = show(self.node)
        self.task_names = tuple(sorted(_names(self.node, "task")))
        self._paths = tuple((n, "." in n) for n in self.task_names)
        self._bound: dict[tuple, Condition | None] = {}
        self._fixed = None if self.task_names else condition(_bind(self.node, {}))

    def __repr__(self) -> str:
        return f"Requirement({self.text!r})"

    @property
    def fixed(self) -> Condition | None:
        """The condition of every task, when the expression names no task attribute."""
        return self._fixed

    def bind(self, attributes: Mapping[str, Any]) -> Condition | None:
        """The condition for a task with these attributes (interned per distinct values)."""
        if not self.task_names:
            return self._fixed
        paths = self._paths
        if len(paths) == 1 and not paths[0][1]:  # the usual case: one plain name
            raw = attributes.get(paths[0][0])
            if type(raw) is str:  # a text is its own key (no other key is a text)
                found = self._bound.get(raw, self)
                if found is not self:
                    return found  # type: ignore[return-value]
        values = tuple(task_value(lookup(attributes, n) if dotted else attributes.get(n))
                       for n, dotted in paths)
        key: Any = tuple(_key(v) for v in values)
        if len(values) == 1 and type(values[0]) is str:
            key = values[0]
        found = self._bound.get(key, self)
        if found is self:
            if len(self._bound) >= MAX_BOUND:
                self._bound.clear()
            found = condition(_bind(self.node, dict(zip(self.task_names, values, strict=True))))
            self._bound[key] = found
        return found  # type: ignore[return-value]


def check_attributes(attributes: Mapping[str, Any], where: str = "attributes") -> dict[str, Any]:
    """An agent's attributes: names as in expressions; values numbers, texts, true/false or
    lists of those (at most MAX_LIST). Returns a plain copy (lists as lists)."""
    if not isinstance(attributes, Mapping):
        raise InvalidValue(f"{where}: expected {{\"name\": value}}")
    out: dict[str, Any] = {}
    for name, value in attributes.items():
        if not isinstance(name, str) or not NAME.match(name) or name.lower() in KEYWORDS:
            raise InvalidValue(f"{where}: {name!r} is not a name (a letter or '_' first, then "
                               f"letters, digits, '_' or '-'; not a keyword)")
        items = value if isinstance(value, list | tuple) else [value]
        if len(items) > MAX_LIST or not all(_plain(v) for v in items):
            raise InvalidValue(f"{where}.{name}: a number, a text, true or false, or a list of "
                               f"at most {MAX_LIST} of those")
        out[name] = list(value) if isinstance(value, list | tuple) else value
    return out


def _plain(v: Any) -> bool:
    return isinstance(v, str | bool) or (isinstance(v, int | float) and math.isfinite(v))
