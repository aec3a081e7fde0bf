"""dispatcher/domain/events.py is the one module of event names (the log's kinds): every kind
is declared there once, with a value that never changes (the log on disk depends on it), and
no other module of the tree spells one out again."""

from __future__ import annotations

import ast
from pathlib import Path

from dispatcher.domain import events as ev

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("dispatcher", "channels", "agent_console", "api")
# Wire message types of the CTI that happen to be spelled like a log kind (a PBX's
# `call.answered` report is not the log's `call.answered` event): protocol names, kept there.
# CTI wire types spelled as the log kind they lead to (the PBX's report of what it saw).
WIRE_TYPES = {"channels/phone/messages.py": {ev.CALL_ANSWERED, ev.CALL_ENDED,
                                              ev.CALLBACK_REACHED}}

KINDS = {name: value for name, value in vars(ev).items()
         if name.isupper() and isinstance(value, str) and "." in value}


def test_every_kind_has_one_name_and_keeps_its_value() -> None:
    assert len(set(KINDS.values())) == len(KINDS), "two names for one kind"
    # A sample of the values the stored logs hold (they never change).
    assert KINDS["TASK_CREATED"] == "task.created"
    assert KINDS["EMAIL_SENT"] == "email.sent"
    assert KINDS["TASK_NOTE"] == "task.note"
    assert KINDS["REPLY_REVIEWED"] == "reply.reviewed"
    assert KINDS["CUSTOMER_MERGED"] == "customer.merged"
    assert KINDS["SPAM_RELEASED"] == "spam.released"


def test_no_other_module_spells_a_kind_out() -> None:
    kinds = set(KINDS.values())
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == "dispatcher/domain/events.py":
                continue
            allowed = WIRE_TYPES.get(rel, set())
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in kinds \
                        and node.value not in allowed:
                    found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, "import these from dispatcher.domain.events:\n" + "\n".join(found)


def test_the_services_use_the_domains_names() -> None:
    from dispatcher.domain import metrics
    from dispatcher.service import codification, collaboration, history, mail, review

    assert mail.EMAIL_SENT is ev.EMAIL_SENT and metrics.EMAIL_SENT is ev.EMAIL_SENT
    assert collaboration.REMINDER_DUE is metrics.REMINDER_DUE is ev.REMINDER_DUE
    assert codification.TASK_CATEGORISED is metrics.TASK_CATEGORISED
    assert review.REPLY_REVIEWED is metrics.REPLY_REVIEWED is ev.REPLY_REVIEWED
    assert history.CUSTOMER_MERGED is ev.CUSTOMER_MERGED
