"""Categorisation rules (dispatcher.domain.categories): fields, regex and keywords, order,
bounds, and what a category drives."""

from __future__ import annotations

import pytest

from dispatcher.domain.categories import (
    MAX_MATCH_CHARS,
    Categorised,
    Category,
    CategoryRule,
    RuleSet,
    Sample,
    by_rules,
    check_name,
    check_rule,
)
from dispatcher.domain.errors import InvalidValue

MAIL = Sample(sender="bob@shop.example", recipients=("billing@us.example",),
              subject="Invoice 12 is wrong", body="You charged me twice.",
              form={"product": "Router X2", "request_type": "complaint"})


@pytest.mark.parametrize("rule, category", [
    (CategoryRule("vip", "sender", r"@shop\.example$"), "vip"),
    (CategoryRule("billing", "recipient", "billing@"), "billing"),
    (CategoryRule("billing", "subject", "invoice, bill", match="keywords"), "billing"),
    (CategoryRule("billing", "body", "CHARGED", match="keywords"), "billing"),
    (CategoryRule("hw", "form:product", "^router"), "hw"),
    (CategoryRule("any", "any", "twice"), "any"),
])
def test_each_field_can_match(rule: CategoryRule, category: str) -> None:
    assert by_rules(RuleSet([check_rule(rule)]), MAIL) == Categorised(category, "rules", 1.0)


def test_keywords_match_whole_words_only() -> None:
    rules = RuleSet([CategoryRule("billing", "body", "charge", match="keywords")])
    assert rules.first_match(MAIL) is None  # "charged" is not "charge"
    assert RuleSet([CategoryRule("b", "body", "charge", match="regex")]).first_match(MAIL)


def test_rules_run_in_position_order_and_disabled_ones_are_skipped() -> None:
    rules = RuleSet([
        CategoryRule("late", "subject", "invoice", position=20, id=1),
        CategoryRule("early", "subject", "invoice", position=10, id=2),
        CategoryRule("off", "subject", "invoice", position=0, id=3, enabled=False),
    ])
    assert rules.first_match(MAIL).category == "early"
    assert len(rules) == 2


def test_no_rule_no_category() -> None:
    assert by_rules(RuleSet([CategoryRule("x", "subject", "refund")]), MAIL) is None
    assert RuleSet([CategoryRule("x", "form:missing", ".")]).first_match(MAIL) is None


@pytest.mark.parametrize("rule", [
    CategoryRule("x", "headers", "a"),
    CategoryRule("x", "form:", "a"),
    CategoryRule("x", "subject", "(unclosed"),
    CategoryRule("x", "subject", ""),
    CategoryRule("x", "subject", "a" * 1001),
    CategoryRule("x", "subject", " , ", match="keywords"),
    CategoryRule("x", "subject", "a", match="glob"),
    CategoryRule("bad name", "subject", "a"),
])
def test_rules_that_cannot_work_are_refused(rule: CategoryRule) -> None:
    with pytest.raises(InvalidValue):
        check_rule(rule)


def test_matching_reads_a_bounded_part_of_a_huge_body() -> None:
    body = "x" * MAX_MATCH_CHARS + " needle"
    rules = RuleSet([CategoryRule("n", "body", "needle")])
    assert rules.first_match(Sample(body=body)) is None
    assert rules.first_match(Sample(body="needle " + body)) is not None


def test_a_category_drives_queue_priority_and_skills() -> None:
    c = Category("billing", queue="accounts", priority=40, skills={"billing": 4})
    assert c.apply("support", 10, {"support": 5, "billing": 6}) == (
        "accounts", 40, {"support": 5, "billing": 6})
    assert Category("plain").apply("support", 10, {"a": 1}) == ("support", 10, {"a": 1})
    with pytest.raises(InvalidValue):
        Category("x", priority=1000)
    with pytest.raises(InvalidValue):
        Category("x", skills={"a": 11})


def test_names_and_sources_are_checked() -> None:
    assert check_name(" billing.v2 ") == "billing.v2"
    with pytest.raises(InvalidValue):
        check_name("")
    with pytest.raises(InvalidValue):
        Categorised("x", "guess")
    assert Categorised("x", "agent", 0.123456, previous="y").data() == {
        "category": "x", "source": "agent", "confidence": 0.1235, "rule": None,
        "previous": "y"}
