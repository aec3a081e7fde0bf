"""The grammar of requirement expressions (dispatcher/domain/expressions.py): parsing, the
canonical print and its round trip, and the errors with their column. The strategies here
generate trees for test_requirements.py too."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.domain.errors import InvalidValue
from dispatcher.domain.expressions import (
    ABSENT,
    KEYWORDS,
    All,
    AnyOf,
    Lit,
    Not,
    Ref,
    parse,
    show,
)
from dispatcher.domain.expressions import (
    Test as Atom,
)

# ------------------------------------------------------------------ grammar


def test_the_issue_example_parses_and_prints_canonically():
    text = 'support >= 5 AND (language HAS task.language) AND NOT (tier == "trainee")'
    assert show(parse(text)) == ('support >= 5 AND language HAS task.language AND '
                                 'NOT (tier = "trainee")')


def test_keywords_in_any_case_and_symbol_aliases():
    assert parse("a and not b or c") == parse("a AND NOT b OR c") == parse("a & !b | c")
    assert parse("support>5") == Atom(Ref("agent", "support"), ">", Lit(5))
    assert parse("support=5|french=3") == AnyOf((Atom(Ref("agent", "support"), "=", Lit(5)),
                                                Atom(Ref("agent", "french"), "=", Lit(3))))


def test_and_binds_tighter_than_or_and_parentheses_group():
    a, b, c = (Atom(Ref("agent", n)) for n in "abc")
    assert parse("a OR b AND c") == AnyOf((a, All((b, c))))
    assert parse("(a OR b) AND c") == All((AnyOf((a, b)), c))


def test_values_lists_texts_and_scopes():
    node = parse("""languages HAS ["fr", 'en'] AND agent.tier IN ["a", "b"] AND task.form.product
                    = "x \\"y\\"" AND n >= -1.5e3 AND vip = true AND x != null""")
    assert isinstance(node, All)
    assert node.items[0].right == Lit(("fr", "en"))
    assert node.items[1].left == Ref("agent", "tier")
    assert node.items[2] == Atom(Ref("task", "form.product"), "=", Lit('x "y"'))
    assert node.items[3].right == Lit(-1500.0)
    assert node.items[5].right == Lit(ABSENT)


@pytest.mark.parametrize("text, column, words", [
    ("support >=", 11, "expected a name, a number"),
    ("a = = 1", 5, "expected a name"),
    ("(a", 3, "expected ')'"),
    ("", 1, "empty"),
    ("a AND", 6, "expected a name"),
    ('"abc', 1, "unexpected"),
    ("a = 1 b", 7, "expected AND, OR or the end"),
    ("x.y = 1", 1, "a name is"),
    ("agent.a.b", 1, "a name is"),
    ("a IN [b]", 7, "a list holds"),
    ("a = 1e999", 5, "too large"),
    ("a # b", 3, "unexpected '#'"),
])
def test_a_mistake_names_its_column(text, column, words):
    with pytest.raises(InvalidValue) as err:
        parse(text)
    assert f"column {column}:" in str(err.value)
    assert words in str(err.value)


def test_limits():
    with pytest.raises(InvalidValue, match="at most 2000"):
        parse("a OR " * 500 + "a")
    with pytest.raises(InvalidValue, match="nested"):
        parse("NOT " * 50 + "a")
    with pytest.raises(InvalidValue, match="a text"):
        parse(5)  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties

NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True).filter(
    lambda n: n not in KEYWORDS)
SCALARS = st.one_of(st.integers(-20, 20), st.booleans(), st.sampled_from(["fr", "en", "x"]),
                    st.floats(-10, 10, allow_nan=False).map(lambda f: round(f, 2)))
TEXTS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=8)
LITERALS = st.one_of(SCALARS, TEXTS, st.just(ABSENT),
                     st.lists(SCALARS, max_size=3).map(tuple)).map(Lit)
AGENT_NAMES = st.sampled_from(["support", "billing", "languages", "tier", "vip", "site"])
TASK_NAMES = st.sampled_from(["language", "vip", "level", "form.product"])
OPERANDS = st.one_of(LITERALS, AGENT_NAMES.map(lambda n: Ref("agent", n)),
                     TASK_NAMES.map(lambda n: Ref("task", n)))
OPS = st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "HAS", "IN"])
TESTS = st.one_of(st.builds(Atom, OPERANDS), st.builds(Atom, OPERANDS, OPS, OPERANDS))
TREES = st.recursive(TESTS, lambda inner: st.one_of(
    inner.map(Not),
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: All(tuple(xs))),
    st.lists(inner, min_size=2, max_size=3).map(lambda xs: AnyOf(tuple(xs)))), max_leaves=8)
VALUES = st.one_of(SCALARS, st.none(), st.lists(SCALARS, max_size=3))
AGENTS = st.tuples(st.dictionaries(st.sampled_from(["support", "billing"]), st.integers(0, 10)),
                   st.dictionaries(st.sampled_from(["languages", "tier", "vip", "site",
                                                    "support"]), VALUES))
TASKS = st.fixed_dictionaries({}, optional={
    "language": VALUES, "vip": VALUES, "level": VALUES,
    "form": st.one_of(VALUES, st.fixed_dictionaries({}, optional={"product": VALUES}))})


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_print_then_parse_gives_the_same_tree(tree):
    assert parse(show(tree)) == tree
    assert show(parse(show(tree))) == show(tree)


