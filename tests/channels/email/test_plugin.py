"""The e-mail edge as the runtime builds it (channels/email/plugin.py): the customer-facing
pages it hangs on the site (the public knowledge base on `/help`, help.py, beside the contact
form), and the services it configures through their own calls."""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet.task import Clock
from twisted.web.resource import Resource

from channels.email.help import HelpPage
from channels.email.plugin import EDGE


class Reactor(Clock):
    """A virtual clock that also takes the shutdown trigger the reading pool registers."""

    def addSystemEventTrigger(self, *args, **kw):
        return None


def context(answers=None, site_root=None, codification=None) -> SimpleNamespace:
    mail = SimpleNamespace(configure=lambda policy: None)
    return SimpleNamespace(reactor=Reactor(), mail=mail, site_root=site_root or Resource(),
                           codification=codification, answers=answers, held=None)


def test_the_e_mail_edge_mounts_the_public_help_page_with_the_answer_library() -> None:
    root, library = Resource(), object()
    EDGE.build(context(SimpleNamespace(library=library), root), EDGE.settings())
    page = root.children[b"help"]
    assert isinstance(page, HelpPage) and page.library is library


def test_no_help_page_without_the_answer_library() -> None:
    root = Resource()
    EDGE.build(context(None, root), EDGE.settings())
    assert b"help" not in root.children


def test_the_spam_scorer_and_queue_are_registered_by_calls() -> None:
    heard: list = []
    codification = SimpleNamespace(set_scorer=lambda s: heard.append(("scorer", s)),
                                   use_spam_queue=lambda q: heard.append(("queue", q)))
    EDGE.build(context(codification=codification),
               EDGE.settings(spam_queue="junk", form_enabled=False))
    assert heard == [("scorer", None), ("queue", "junk")]
