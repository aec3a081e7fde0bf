"""What requirement expressions mean (dispatcher/domain/requirements.py): each test by
example, binding to a task and interning, agents' attributes, and the compiled, bound
conditions the router uses against a reference evaluator written here from the documented
meaning (not from the module's own `evaluate`)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.expressions import ABSENT, All, AnyOf, Lit, Not, show
from dispatcher.domain.queues import Queue
from dispatcher.domain.requirements import Requirement, check_attributes, evaluate
from tests.dispatcher.domain.test_expressions import AGENTS, TASKS, TREES


def meets(text: str, skills=None, attributes=None, task=None) -> bool:
    cond = Requirement(text).bind(task or {})
    return True if cond is None else cond.meets(skills or {}, attributes or {})


# ------------------------------------------------------------------ meaning, by example


def test_absent_values_fail_every_test_but_not_equal():
    assert not meets("tier = \"trainee\"")
    assert meets("tier != \"trainee\"")
    assert meets("NOT (tier = \"trainee\")")
    assert not meets("level > 3") and not meets("level <= 3")
    assert not meets("languages HAS task.language", attributes={"languages": ["fr"]})
    assert not meets("task.vip")


def test_skills_come_before_attributes_and_kinds_never_mix():
    assert meets("support >= 5", skills={"support": 5})
    assert not meets("support >= 5", skills={"support": 4}, attributes={"support": 9})
    assert not meets("vip = 1", attributes={"vip": True})
    assert meets("vip = true", attributes={"vip": True})
    assert not meets('level > "3"', attributes={"level": 4})
    assert meets('site < "m"', attributes={"site": "lyon"})
    assert meets("n = 2", attributes={"n": 2.0})


def test_has_and_in_on_lists_and_single_values():
    agent = {"languages": ["fr", "en"], "site": "lyon"}
    assert meets("languages HAS task.language", attributes=agent, task={"language": "fr"})
    assert not meets("languages HAS task.language", attributes=agent, task={"language": "de"})
    assert meets('languages HAS ["en", "fr"]', attributes=agent)
    assert not meets('languages HAS ["en", "de"]', attributes=agent)
    assert meets('task.language IN languages', attributes=agent, task={"language": "en"})
    assert meets('site IN ["lyon", "paris"]', attributes=agent)
    assert meets('site HAS "lyon"', attributes=agent)  # one value is a list of one


def test_lone_values_test_presence_and_truth():
    assert meets("vip", attributes={"vip": True})
    assert not meets("vip", attributes={"vip": False})
    assert not meets("languages", attributes={"languages": []})
    assert meets("NOT task.language OR languages HAS task.language", attributes={})
    assert meets("task.form.callback", task={"form": {"callback": "yes"}})


# ------------------------------------------------------------------ binding and cost


def test_binding_folds_what_no_longer_reads_the_agent_and_interns_conditions():
    r = Requirement('task.vip = true AND tier = "senior" OR NOT task.vip')
    assert r.bind({"vip": False}) is None  # always true: nothing to test
    senior = r.bind({"vip": True})
    assert senior is r.bind({"vip": True, "other": 1})  # one condition per distinct binding
    assert senior.text == 'tier = "senior"'
    assert senior.names == {"tier"}
    assert Requirement("task.vip AND false").bind({"vip": True}).text == "false"


def test_true_and_one_are_different_bindings():
    r = Requirement("x = task.v")
    one, yes = r.bind({"v": 1}), r.bind({"v": True})
    assert one != yes
    assert one.meets({}, {"x": 1}) and not yes.meets({}, {"x": 1})


def test_a_requirement_without_task_names_never_reads_the_task():
    class Unread:  # what condition_at reads of a task: its step, and its attributes if need be
        step = 0

        @property
        def attributes(self):
            raise AssertionError("read")

    cond = Queue("q", expression="support > 2").condition_at(Unread())  # type: ignore[arg-type]
    assert cond.meets({"support": 3}, {})
    assert Queue("q", expression="task.vip").requirements[0].fixed is None


def test_agent_attributes_are_checked():
    assert check_attributes({"languages": ("fr",), "tier": "a", "n": 2, "remote": True}) == {
        "languages": ["fr"], "tier": "a", "n": 2, "remote": True}
    for bad in ({"and": 1}, {"1x": 1}, {"a": None}, {"a": {"b": 1}}, {"a": [[1]]},
                {"a": math.inf}, {"a": list(range(101))}):
        with pytest.raises(InvalidValue):
            check_attributes(bad)


def _kind(v):
    if v is None or v is ABSENT or isinstance(v, dict):
        return None
    if isinstance(v, bool):
        return bool
    if isinstance(v, int | float):
        return float
    if isinstance(v, str):
        return str
    return list


def _equal(a, b) -> bool:
    if _kind(a) is None or _kind(a) is not _kind(b):
        return False
    if _kind(a) is list:
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _holds(whole, part) -> bool:
    if _kind(whole) is None or _kind(part) is None:
        return False
    whole = list(whole) if _kind(whole) is list else [whole]
    part = list(part) if _kind(part) is list else [part]
    return all(any(_equal(w, p) for w in whole) for p in part)


def reference(node, skills, attributes, task) -> bool:  # noqa: C901 - one case per form
    """The documented meaning, written independently of the module."""
    def value(x):
        if isinstance(x, Lit):
            return x.value
        if x.scope == "task":
            v = task
            for part in x.name.split("."):
                v = v.get(part) if isinstance(v, dict) else None
            return v
        return skills[x.name] if x.name in skills else attributes.get(x.name)

    if isinstance(node, Not):
        return not reference(node.item, skills, attributes, task)
    if isinstance(node, All):
        return all(reference(x, skills, attributes, task) for x in node.items)
    if isinstance(node, AnyOf):
        return any(reference(x, skills, attributes, task) for x in node.items)
    a = value(node.left)
    if node.op is None:
        return _kind(a) is not None and bool(a)
    b = value(node.right)
    if node.op == "=":
        return _equal(a, b)
    if node.op == "!=":
        return not _equal(a, b)
    if node.op in ("HAS", "IN"):
        return _holds(a, b) if node.op == "HAS" else _holds(b, a)
    if _kind(a) not in (float, str) or _kind(a) is not _kind(b):
        return False
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[node.op]


@settings(max_examples=500, deadline=None)
@given(TREES, AGENTS, TASKS)
def test_bound_compiled_conditions_agree_with_the_reference(tree, agent, task):
    skills, attributes = agent
    expected = reference(tree, skills, attributes, task)
    cond = Requirement(show(tree)).bind(task)
    got = True if cond is None else cond.meets(skills, attributes)
    assert got == expected
    assert evaluate(tree, skills, attributes, task) == expected
