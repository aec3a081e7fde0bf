"""The web form (channels/email/form.py) against hostile input, on the service layer: every
control or separator character in a header field becomes a space (the body keeps the text),
an unexpected failure is a 500 with an incident id in one log line, and repeated refusals
(honeypot, rate limits) are logged once per interval, not once per request."""

from __future__ import annotations

import logging

from channels.email.form import _one_line
from tests.channels.email.test_form import GOOD, answer, clock, form, mail, post, stack, tasks  # noqa: F401 - fixtures
from tests.dispatcher.service.stacks import result


def test_one_line_replaces_every_control_and_separator_character() -> None:
    for ch in ("\r\n", "\t", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028",
               "\u2029", "\x00", "\x7f", "\x9f"):
        assert _one_line(f"a{ch}b") == "a b", repr(ch)
    assert _one_line("  a\u2028\u2029\x0c b ") == "a  b"
    assert _one_line("Grüße, 東京 \U0001f600") == "Grüße, 東京 \U0001f600"


def test_hostile_subjects_and_names_are_stored_clean_and_the_body_as_typed(stack, form) -> None:  # noqa: F811
    subjects = ["Broken\u2028router", "Broken\x0crouter", "Broken\x85router",
                "Broken\u2029\x1crouter"]
    for n, subject in enumerate(subjects):
        fields = {**GOOD, "email": f"u{n}@customer.org", "name": "Eve\u2028Example",
                  "subject": subject, "message": "one\u2028two\x0cthree"}
        code, data = answer(post(form, fields, as_json=bool(n % 2), ip=f"192.0.2.{n + 10}"))
        assert code == 200 and "request" in str(data), (subject, data)
    for task in tasks(stack):
        assert task.attributes["subject"] == "Broken router"
        [msg, *_] = result(stack.store.mail_messages(task.id))
        assert msg.subject == "Broken router"
        assert "one\u2028two\x0cthree" in msg.text


def test_a_field_of_nothing_but_control_characters_is_a_400_naming_it(stack, form) -> None:  # noqa: F811
    code, data = answer(post(form, {**GOOD, "subject": "\x01\u2028\x7f"}, as_json=True))
    assert (code, set(data["fields"])) == (400, {"subject"})


def test_an_unexpected_failure_is_500_with_an_incident_in_one_log_line(stack, form, mail,  # noqa: F811
                                                                        caplog) -> None:
    def broken(inbound):
        raise RuntimeError("the pool is gone")

    mail.receive = broken
    with caplog.at_level(logging.ERROR, logger="channels.email.form"):
        answers = [answer(post(form, {**GOOD, "email": f"x{n}@customer.org"}, as_json=True,
                               ip=f"198.51.100.{n}")) for n in range(5)]
    assert all(code == 500 and data["error"] == "internal" for code, data in answers)
    incidents = [data["incident"] for _, data in answers]
    assert len(set(incidents)) == 5
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and f"[incident {incidents[0]}]" in errors[0]
    assert "RuntimeError" in errors[0]


def test_repeated_refusals_are_logged_once_per_interval(stack, form, clock, caplog) -> None:  # noqa: F811
    with caplog.at_level(logging.WARNING, logger="channels.email.form"):
        for _ in range(50):
            answer(post(form, {**GOOD, "website": "http://spam.example"}, as_json=True))
        for _ in range(50):
            answer(post(form, as_json=True))
    lines = [r.getMessage() for r in caplog.records]
    assert len([x for x in lines if "honeypot" in x]) == 1
    assert sorted(x for x in lines if "rate limit" in x) == [  # one line per key
        "form: rate limit for email:alice@customer.org", "form: rate limit for ip:192.0.2.1"]
    clock.now += 61
    with caplog.at_level(logging.WARNING, logger="channels.email.form"):
        answer(post(form, {**GOOD, "website": "http://spam.example"}, as_json=True))
    assert "49 more" in caplog.records[-1].getMessage()
