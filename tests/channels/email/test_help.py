"""`/help` (channels/email/help.py) through twisted.web's request machinery: public search over
the knowledge base with everything escaped, article pages counting views, the visitors'
"did this answer your question" feeding the deflection report, bounded forms and votes."""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from channels.email import help as h
from dispatcher.service.answers import Library
from dispatcher.storage.answers import MemoryAnswerStore
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.service.stacks import result

HOSTILE = '<img src=x onerror="alert(1)">'


@pytest.fixture
def site():
    clock = Clock()
    clock.advance(1_700_000_000)
    library = Library(MemoryAnswerStore(MemoryStore()), clock)
    result(library.import_articles([
        json.dumps({"id": "kb-refund", "question": "When do I get my refund?",
                    "answer": f"Within 10 days. {HOSTILE}", "category": "billing"}),
        json.dumps({"id": "kb-sunday", "question": "Do you deliver on Sundays?",
                    "answer": "No, Monday to Saturday.", "category": "delivery"}),
    ]))
    library.rebuild_now()
    root = h.HelpPage(library)
    return root, library


def get(root, path: bytes, args: dict | None = None, method: bytes = b"GET",
        client: str = "192.0.2.1") -> tuple[DummyRequest, str]:
    parts = [p for p in path.split(b"/") if p]
    request = DummyRequest(parts)
    request.method = method
    request.args = args or {}
    request.client = type("A", (), {"host": client})()
    request.getClientAddress = lambda: request.client
    resource = root
    for part in parts:
        resource = resource.getChildWithDefault(part, request)
    body = resource.render(request)
    if body is NOT_DONE_YET:
        assert request.finished
        body = b"".join(request.written)
    request.responseCode = request.responseCode or 200  # DummyRequest leaves 200 unset
    return request, body.decode()


def test_search_is_public_and_escapes_the_query(site) -> None:
    root, _ = site
    request, page = get(root, b"", {b"q": [b"refund <script>x</script>"]})
    assert "/help/article/kb-refund" in page and "<script>x" not in page
    assert 'value="refund &lt;script&gt;x&lt;/script&gt;"' in page
    csp = request.responseHeaders.getRawHeaders(b"content-security-policy")[0]
    assert b"script-src" not in csp and b"default-src 'none'" in csp
    _, page = get(root, b"", {b"q": [b"sunday"]})
    assert "kb-sunday" in page and "kb-refund" not in page
    _, page = get(root, b"", {b"q": [b"zzqqx"]})
    assert "Nothing matches" in page
    _, page = get(root, b"")
    assert page.index("kb-refund") < page.index("kb-sunday")  # by category without words


def test_an_article_page_escapes_and_counts_a_view(site) -> None:
    root, library = site
    _, page = get(root, b"article/kb-refund")
    assert HOSTILE not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert 'name="article" value="kb-refund"' in page
    request, _ = get(root, b"article/nope")
    assert request.responseCode == 404
    report = {d.article_id: d.views for d in result(library.deflections())}
    assert report == {"kb-refund": 1, "kb-sunday": 0}


def test_feedback_counts_deflections_and_refuses_bad_forms(site) -> None:
    root, library = site
    request, page = get(root, b"feedback", {b"article": [b"kb-refund"], b"helped": [b"yes"]},
                        b"POST")
    assert request.responseCode == 200 and "glad it helped" in page
    _, page = get(root, b"feedback", {b"article": [b"kb-refund"], b"helped": [b"no"]}, b"POST")
    assert "related articles" in page
    request, _ = get(root, b"feedback", {b"article": [b"nope"], b"helped": [b"yes"]}, b"POST")
    assert request.responseCode == 400
    request, _ = get(root, b"feedback", {b"article": [b"kb-refund"], b"helped": [b"maybe"]},
                     b"POST")
    assert request.responseCode == 400
    (refund,) = [d for d in result(library.deflections()) if d.article_id == "kb-refund"]
    assert (refund.helped, refund.not_helped) == (1, 1)


def test_votes_per_client_are_bounded(site) -> None:
    root, library = site
    codes = [get(root, b"feedback", {b"article": [b"kb-sunday"], b"helped": [b"yes"]},
                 b"POST", client="198.51.100.7")[0].responseCode
             for _ in range(h.MAX_VOTES_PER_WINDOW + 2)]
    assert codes.count(429) == 2 and codes[:h.MAX_VOTES_PER_WINDOW] == [
        200] * h.MAX_VOTES_PER_WINDOW
    other = get(root, b"feedback", {b"article": [b"kb-sunday"], b"helped": [b"yes"]}, b"POST",
                client="198.51.100.8")[0]
    assert other.responseCode == 200
    library.clock.advance(h.VOTE_WINDOW_SECONDS)
    again = get(root, b"feedback", {b"article": [b"kb-sunday"], b"helped": [b"no"]}, b"POST",
                client="198.51.100.7")[0]
    assert again.responseCode == 200


def test_a_search_while_a_start_builds_the_index_is_answered_once_it_is_built(site) -> None:
    _, built = site
    library = Library(built.store, built.clock)
    builds = []
    library.offload = lambda fn, *args: (builds.append((fn, args)), pending)[1]
    pending: Deferred = Deferred()
    result(library.load())
    root = h.HelpPage(library)
    request = DummyRequest([b""])
    request.args = {b"q": [b"refund"]}
    assert root.render(request) is NOT_DONE_YET and not request.finished

    fn, args = builds[0]
    fn(*args)
    pending.callback(None)

    assert request.finished and "kb-refund" in b"".join(request.written).decode()
