"""The pure rules of the answer library (dispatcher.domain.answers): placeholder filling with
hostile values, answer checks, rule precedence, automatic-mode gating, sampling, scoring."""

from __future__ import annotations

from email.message import EmailMessage
from html.parser import HTMLParser

import pytest

from dispatcher.domain import answers as a
from dispatcher.domain.answers import (
    Plan,
    ResponseMode,
    ResponseRule,
    Target,
    automatic_plan,
    fill,
    make_answer,
    make_rule,
    rule_for,
)
from dispatcher.domain.errors import InvalidValue

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "Ann\r\nBcc: victim@example.org",
    "Ann\nSubject: pwned",
    "Ann\x00\x1b[31m",
    "{{agent_name}}",
    "&lt;b&gt;",
    "Ann\u2028Bcc: x@y",
]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)


def test_plain_text_fills_values_verbatim() -> None:
    out = fill("Hello {{customer_name}}, ref {{ request }}.",
               {"customer_name": "Zoë <z@x>", "request": "SB-000001"})
    assert out == a.Filled("Hello Zoë <z@x>, ref SB-000001.")


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_can_never_add_markup_to_html(value: str) -> None:
    out = fill("<p>Hello <b>{{customer_name}}</b></p><a href=\"/x?n={{customer_name}}\">x</a>",
               {"customer_name": value}, Target.HTML)
    parser = _Tags()
    parser.feed(out.text)
    assert parser.tags == ["p", "b", "a"]  # exactly the template's tags
    assert [k for k, _ in parser.attrs] == ["href"]
    assert "<script" not in out.text and "<img" not in out.text and '"><' not in out.text


@pytest.mark.parametrize("value", HOSTILE)
def test_a_value_can_never_add_a_header(value: str) -> None:
    out = fill("Re: your order for {{customer_name}}", {"customer_name": value}, Target.HEADER)
    assert "\r" not in out.text and "\n" not in out.text and "\x00" not in out.text
    assert "\u2028" not in out.text
    msg = EmailMessage()
    msg["Subject"] = out.text  # the email package refuses CR/LF: this would raise
    msg.set_content("x")
    raw = msg.as_bytes()
    assert raw.count(b"Bcc:") == (1 if "Bcc" in value else 0) and b"\nBcc:" not in raw
    assert b"\nSubject: pwned" not in raw


def test_filling_is_one_pass_so_a_value_is_never_expanded() -> None:
    out = fill("{{customer_name}} / {{agent_name}}",
               {"customer_name": "{{agent_name}}", "agent_name": "Bob"})
    assert out.text == "{{agent_name}} / Bob"


def test_missing_values_stay_visible_and_are_reported() -> None:
    out = fill("Hi {{customer_name}}, see {{attr.order}} and {{attr.order}}", {})
    assert out.text == "Hi {{customer_name}}, see {{attr.order}} and {{attr.order}}"
    assert out.missing == ("customer_name", "attr.order")
    assert fill("x {{deadline}}", {"deadline": None}).missing == ("deadline",)


def test_a_very_long_value_is_cut() -> None:
    out = fill("{{customer_name}}", {"customer_name": "x" * 10_000})
    assert len(out.text) == a.MAX_VALUE_CHARS + 1


def test_values_for_a_task_offer_scalar_attributes() -> None:
    values = a.values_for(customer_name="Ann", request="SB-1", agent_name=None, deadline=None,
                          attributes={"product": "router", "n": 3, "nested": {"x": 1},
                                      "flag": True})
    assert values["attr.product"] == "router" and values["attr.n"] == 3
    assert "attr.nested" not in values and "attr.flag" not in values
    assert values["agent_name"] is None


def test_make_answer_checks_fields_and_placeholders() -> None:
    ok = make_answer({"id": "a-1", "title": "T", "text": "Hi {{customer_name}} {{attr.x}}",
                      "queues": ["support", "support"], "categories": ["billing"]},
                     owner="sup", now=5.0)
    assert ok.queues == ("support",) and ok.owner == "sup" and ok.updated_at == 5.0
    with pytest.raises(InvalidValue, match="unknown placeholders"):
        make_answer({"id": "a", "title": "T", "text": "{{password}}"}, owner="s", now=0)
    with pytest.raises(InvalidValue):
        make_answer({"id": "bad id!", "title": "T", "text": "x"}, owner="s", now=0)
    with pytest.raises(InvalidValue):
        make_answer({"id": "a", "title": "", "text": "x"}, owner="s", now=0)
    with pytest.raises(InvalidValue):
        make_answer({"id": "a", "title": "T", "text": "x", "queues": "support"}, owner="s",
                    now=0)


def test_an_answer_serves_its_queues_and_categories() -> None:
    ans = make_answer({"id": "a", "title": "T", "text": "x", "queues": ["support"],
                       "categories": ["billing"]}, owner="s", now=0)
    assert ans.serves("support", "billing")
    assert not ans.serves("sales", "billing") and not ans.serves("support", "returns")
    every = make_answer({"id": "b", "title": "T", "text": "x"}, owner="s", now=0)
    assert every.serves("anything", None)


def test_the_most_specific_rule_wins() -> None:
    rules = [make_rule({"mode": "assisted"}),
             make_rule({"queue": "support", "mode": "suggested"}),
             make_rule({"category": "billing", "mode": "free"}),
             make_rule({"queue": "support", "category": "billing", "mode": "automatic",
                        "threshold": 0.4, "review_share": 0.1})]
    assert rule_for(rules, "support", "billing").mode is ResponseMode.AUTOMATIC
    assert rule_for(rules, "support", "returns").mode is ResponseMode.SUGGESTED
    assert rule_for(rules, "sales", "billing").mode is ResponseMode.FREE
    assert rule_for(rules, "sales", None).mode is ResponseMode.ASSISTED
    assert rule_for([], "sales", None) == a.DEFAULT_RULE
    with pytest.raises(InvalidValue):
        make_rule({"mode": "telepathic"})
    with pytest.raises(InvalidValue):
        make_rule({"mode": "automatic", "threshold": 1.5})


AUTO = ResponseRule("support", "*", ResponseMode.AUTOMATIC, threshold=0.5, review_share=0.2)


def test_automatic_gating() -> None:
    assert automatic_plan(AUTO, ("x", 0.49), (), 0.9).plan is Plan.AGENT  # below threshold
    assert automatic_plan(AUTO, None, (), 0.9).plan is Plan.AGENT  # nothing fits
    assert automatic_plan(AUTO, ("x", 0.9), ("customer_name",), 0.9).plan is Plan.AGENT
    assert automatic_plan(AUTO, ("x", 0.5), (), 0.19).plan is Plan.REVIEW  # sampled
    sent = automatic_plan(AUTO, ("x", 0.5), (), 0.2)
    assert (sent.plan, sent.answer_id, sent.score) == (Plan.SEND, "x", 0.5)
    suggested = ResponseRule(mode=ResponseMode.SUGGESTED, threshold=0.0)
    assert automatic_plan(suggested, ("x", 1.0), (), 0.9).plan is Plan.AGENT


def test_sampling_and_the_agent_share() -> None:
    assert a.sampled(0.0, 0.0) is False and a.sampled(1.0, 0.999) is True
    assert a.sampled(0.25, 0.2499) and not a.sampled(0.25, 0.25)
    rule = ResponseRule(review_share=0.1)
    assert a.review_share(rule, None) == 0.1 and a.review_share(rule, 1.0) == 1.0
    draws = [i / 1000 for i in range(1000)]
    assert sum(a.sampled(0.1, d) for d in draws) == 100


def test_checklist_score() -> None:
    assert a.score(a.DEFAULT_CHECKLIST, {"correct": True, "tone": True, "complete": False}) == (
        2, 5)
    assert a.score({"x": 3, "y": 1}, {"x": True}) == (3, 4)
    with pytest.raises(InvalidValue, match="not on the checklist"):
        a.score(a.DEFAULT_CHECKLIST, {"vibes": True})
    with pytest.raises(InvalidValue):
        a.score(a.DEFAULT_CHECKLIST, {"tone": "yes"})
