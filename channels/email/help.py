"""`/help`: the public self-service page of the knowledge base (no login), on the runtime's
twisted.web site, beside the other customer-facing pages (the contact form, form.py); the e-mail
edge mounts it (plugin.py) when the runtime has the answer library.

    GET  /help?q=words          search form and the matching articles (questions, linked)
    GET  /help/article/<id>     one article; counts a view; asks "did this answer your question?"
    POST /help/feedback         article=<id>&helped=yes|no; counts a deflection (yes) or not

What it promises: every text from the knowledge base or the visitor is HTML-escaped (no markup
from anyone reaches the page); the page runs no script (Content-Security-Policy forbids it) and
posts only to itself; queries and forms are bounded in size; each client address may give at
most `MAX_VOTES_PER_WINDOW` answers per `VOTE_WINDOW_SECONDS`, the others are refused (429).
Views and votes feed the deflection report (`switchboard kb report`): which articles answer
which categories without an e-mail.
"""

from __future__ import annotations

import html
import logging
from collections import OrderedDict
from typing import Any
from urllib.parse import quote, urlencode

from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from dispatcher import net
from dispatcher.service import pages

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 200
MAX_RESULTS = 20
MAX_FORM_BYTES = 2_048
MAX_VOTES_PER_WINDOW = 30
VOTE_WINDOW_SECONDS = 3600.0
MAX_TRACKED_CLIENTS = 10_000
CSP = pages.policy("style-src 'unsafe-inline'", "form-action 'self'")
STYLE = ("body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;"
         "line-height:1.5}input[type=search]{width:70%;padding:.4rem}"
         ".cat{color:#666;font-size:.85rem}.answer{white-space:pre-wrap}")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _page(title: str, body: str) -> bytes:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
            f'<h1><a href="/help">Help</a></h1>{body}</body></html>').encode()


def _headers(request: Any) -> None:
    request.setHeader(b"content-type", b"text/html; charset=utf-8")
    pages.harden(request, CSP)


def _arg(request: Any, name: bytes, limit: int) -> str:
    values = request.args.get(name) or [b""]
    return values[0][:limit * 4].decode("utf-8", "replace")[:limit]


def _form(query: str) -> str:
    return ('<form method="get" action="/help" role="search">'
            f'<input type="search" name="q" value="{_e(query)}" maxlength="{MAX_QUERY_CHARS}" '
            'aria-label="Search the help"> <button type="submit">Search</button></form>')


class _Votes:
    """A bounded count of recent votes per client address."""

    def __init__(self) -> None:
        self.by_client: OrderedDict[str, list[float]] = OrderedDict()

    def allow(self, client: str, now: float) -> bool:
        recent = [t for t in self.by_client.pop(client, []) if now - t < VOTE_WINDOW_SECONDS]
        allowed = len(recent) < MAX_VOTES_PER_WINDOW
        if allowed:
            recent.append(now)
        self.by_client[client] = recent
        while len(self.by_client) > MAX_TRACKED_CLIENTS:
            self.by_client.popitem(last=False)
        return allowed


class HelpPage(Resource):
    """`/help` and its search."""

    def __init__(self, library: Any) -> None:
        super().__init__()
        self.library = library
        self.votes = _Votes()
        self.putChild(b"article", _Articles(self))
        self.putChild(b"feedback", _Feedback(self))

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b"":
            return self
        return super().getChild(path, request)

    def render_GET(self, request: Any) -> Any:
        _headers(request)
        query = _arg(request, b"q", MAX_QUERY_CHARS).strip()
        # At once, but while a start's index is being built (Library.indexed).
        d = self.library.help_found(query, MAX_RESULTS)

        def done(result: Any) -> None:
            if hasattr(result, "getErrorMessage"):
                log.error("help: search failed: %s", result.getErrorMessage())
                request.setResponseCode(500)
                page = _page("Help", _form(query) + "<p>Search failed. Try again.</p>")
            else:
                page = self._results(query, result)
            if not getattr(request, "_disconnected", False):
                request.write(page)
                request.finish()

        d.addBoth(done)
        return NOT_DONE_YET

    @staticmethod
    def _results(query: str, articles: list[Any]) -> bytes:
        items = "".join(
            f'<li><a href="/help/article/{quote(a.id, safe="")}">{_e(a.question)}</a> '
            f'<span class="cat">{_e(a.category)}</span></li>' for a in articles)
        if query and not articles:
            found = f"<p>Nothing matches “{_e(query)}”. Try other words, or write to us.</p>"
        else:
            found = f"<ul>{items}</ul>"
        return _page("Help", _form(query) + found)


class _Articles(Resource):
    def __init__(self, page: HelpPage) -> None:
        super().__init__()
        self.page = page

    def getChild(self, path: bytes, request: Any) -> Resource:
        return _Article(self.page, path.decode("utf-8", "replace")[:200])


class _Article(Resource):
    isLeaf = True

    def __init__(self, page: HelpPage, article_id: str) -> None:
        super().__init__()
        self.page, self.article_id = page, article_id

    def render_GET(self, request: Any) -> Any:
        _headers(request)
        article = self.page.library.articles.get(self.article_id)
        if article is None or article.retired:
            request.setResponseCode(404)
            return _page("Not found", "<p>There is no such article.</p>" + _form(""))
        body = (f"<h2>{_e(article.question)}</h2><p class=\"cat\">{_e(article.category)}</p>"
                f'<div class="answer">{_e(article.answer)}</div>'
                '<form method="post" action="/help/feedback"><p>Did this answer your question?'
                f' <input type="hidden" name="article" value="{_e(article.id)}">'
                '<button name="helped" value="yes">Yes</button> '
                '<button name="helped" value="no">No</button></p></form>' + _form(""))
        d = self.page.library.record_help(article.id, None)

        def done(result: Any) -> None:
            if hasattr(result, "getErrorMessage"):
                log.warning("help: could not count a view of %s: %s", article.id,
                            result.getErrorMessage())
            if not getattr(request, "_disconnected", False):
                request.write(_page(article.question, body))
                request.finish()

        d.addBoth(done)
        return NOT_DONE_YET


class _Feedback(Resource):
    isLeaf = True

    def __init__(self, page: HelpPage) -> None:
        super().__init__()
        self.page = page

    def render_POST(self, request: Any) -> Any:
        _headers(request)
        length = int(request.getHeader(b"content-length") or 0)
        if length > MAX_FORM_BYTES:
            request.setResponseCode(413)
            return _page("Too large", "<p>That form is too large.</p>")
        article_id = _arg(request, b"article", 200)
        helped = _arg(request, b"helped", 3)
        article = self.page.library.articles.get(article_id)
        if article is None or article.retired or helped not in ("yes", "no"):
            request.setResponseCode(400)
            return _page("Not understood", "<p>We could not read that answer.</p>" + _form(""))
        if not self.page.votes.allow(net.client_host(request), self.page.library.now()):
            request.setResponseCode(429)
            return _page("Too many", "<p>Thank you, we already have your answers.</p>")
        d = self.page.library.record_help(article.id, helped == "yes")

        def done(result: Any) -> None:
            if hasattr(result, "getErrorMessage"):
                log.warning("help: could not record feedback: %s", result.getErrorMessage())
                request.setResponseCode(503)
                text = "<p>Sorry, we could not record your answer. Please try again.</p>"
            elif helped == "yes":
                text = "<p>Thank you! We are glad it helped.</p>"
            else:
                link = "/help?" + urlencode({"q": article.category or article.question})
                text = (f'<p>Thank you. See <a href="{_e(link)}">related articles</a>, or write'
                        " to us: a person will answer.</p>")
            if not getattr(request, "_disconnected", False):
                request.write(_page("Thank you", text + _form("")))
                request.finish()

        d.addBoth(done)
        return NOT_DONE_YET


def mount(root: Resource, library: Any) -> None:
    """Hang `/help` on the site root."""
    root.putChild(b"help", HelpPage(library))
