"""`switchboard answers ...` and `switchboard kb ...`: the answer library, the response modes,
the review figures and the knowledge base from the command line.

    switchboard answers import FILE [--author NAME]     JSON Lines, docs/answers.md
    switchboard answers export [FILE] [--active]        to FILE or stdout
    switchboard answers list [--json]
    switchboard answers history ID
    switchboard answers mode-set --queue Q --category C --mode M [--threshold T]
                                 [--review-share S]
    switchboard answers mode-list | mode-remove --queue Q --category C
    switchboard answers review-share AGENT SHARE|-      an agent's own review share
    switchboard answers review-report [--json]          checklist scores per queue and agent
    switchboard kb import FILE | export [FILE] | list [--json] | report [--json]

Sits in the admin edge; each `cmd_*` is given the command's context (`EdgeCommandContext`) and
works through the same service (`dispatcher.service.answers.Library`) as the console, so an
import is checked entirely before anything is saved. A running server reads the library at its
start; changes made in the console are live at once.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dispatcher.domain.errors import InvalidValue
from dispatcher.progress import PROGRESS_AFTER_SECONDS, ProgressLine
from dispatcher.service.answers import Library
from dispatcher.service.edges import EdgeCommandContext

from .parse import nothing_yet, operator

# Response modes and review shares are read by a running server at its start.
NOT_LIVE_SUFFIX = "; a running server reads it at its next start"

DEFAULT_AUTHOR = "cli"


def add_commands(sub: Any) -> None:
    answers = sub.add_parser("answers", help="the library of standard answers, response modes")
    a = answers.add_subparsers(dest="action", required=True)
    p = a.add_parser("import", help="add or update answers from a JSON Lines file")
    p.add_argument("file", help="JSON Lines, one answer per line (docs/answers.md)")
    p.add_argument("--author", default=DEFAULT_AUTHOR, help="who the new versions are by")
    p = a.add_parser("export", help="every answer as JSON Lines (to FILE or stdout)")
    p.add_argument("file", nargs="?", default="-", help="where to write ('-': stdout)")
    p.add_argument("--active", action="store_true", help="leave retired answers out")
    p = a.add_parser("list", help="the answers of the library")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = a.add_parser("history", help="every version of one answer")
    p.add_argument("id", help="the answer's id")
    p = a.add_parser("mode-set", help="the response mode of a queue and category")
    p.add_argument("--queue", default="*", help="the queue ('*': every queue)")
    p.add_argument("--category", default="*", help="the category ('*': every category)")
    p.add_argument("--mode", required=True, choices=["free", "assisted", "suggested",
                                                      "automatic"],
                   help="how agents answer (docs/answers.md, 'Response modes')")
    p.add_argument("--threshold", type=float, default=1.0,
                   help="automatic: the top score (0-1) needed to answer without an agent")
    p.add_argument("--review-share", type=float, default=0.0,
                   help="share (0-1) of outgoing answers held for a supervisor")
    p = a.add_parser("mode-list", help="the response modes set per queue and category")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = a.add_parser("mode-remove", help="remove the response mode of a queue and category")
    p.add_argument("--queue", default="*", help="the queue ('*': every queue)")
    p.add_argument("--category", default="*", help="the category ('*': every category)")
    p = a.add_parser("review-share", help="an agent's own review share ('-' removes it)")
    p.add_argument("agent", help="the agent's id")
    p.add_argument("share", help="0-1, the share of their answers held for review; '-' removes")
    p = a.add_parser("review-report", help="quality review: decisions and checklist scores")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")

    kb = sub.add_parser("kb", help="the knowledge base (FAQ) served on /help")
    k = kb.add_subparsers(dest="action", required=True)
    p = k.add_parser("import", help="add or update articles from a JSON Lines file")
    p.add_argument("file", help="JSON Lines, one article per line (docs/answers.md)")
    p = k.add_parser("export", help="every article as JSON Lines (to FILE or stdout)")
    p.add_argument("file", nargs="?", default="-", help="where to write ('-': stdout)")
    p = k.add_parser("list", help="the articles of the knowledge base")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = k.add_parser("report", help="which articles deflect which categories (/help)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


async def _library(context: EdgeCommandContext, store: Any = None) -> Library:
    """The library, loaded without its index; over `store` (the library's own, counted) when
    given."""
    library = context.library if store is None else Library(store, context.reactor)
    await library.load(index=False)
    return library


def audit(context: EdgeCommandContext, what: str, action: str, subject: str | None = None,
          **details: Any) -> Any:
    """Audit, as the operator, a change whose store keeps no log (imports, response modes)."""
    return context.configuration.audit(what, action, subject, **operator(), **details)


class _Counting:
    """The answer store, telling `progress(saved, total)` after each answer or article saved:
    an import of thousands of answers takes a while (one transaction each)."""

    def __init__(self, inner: Any, total: int, progress: Any) -> None:
        self.inner, self.total, self.progress, self.saved = inner, total, progress, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _count(self, result: Any) -> Any:
        self.saved += 1
        self.progress(self.saved, self.total)
        return result

    def save_answer(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.save_answer(*args, **kwargs).addCallback(self._count)

    def put_article(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.put_article(*args, **kwargs).addCallback(self._count)


def _progress(context: EdgeCommandContext, lines: list[str], what: str) -> tuple[Any, Any]:
    """The library's store, showing the progress of an import on stderr once it has taken more
    than a second, and the progress line."""
    import time

    line = ProgressLine(sys.stderr, label=f"{what} import", unit=what, verb="saved")
    total = sum(1 for text in lines if text.strip())
    started = time.monotonic()

    def progress(done: int, total: int) -> None:
        if time.monotonic() - started >= PROGRESS_AFTER_SECONDS:
            line(done, total)

    return _Counting(context.library.store, total, progress), line


def _read(path: str) -> list[str]:
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidValue(f"cannot read {path}: {exc}") from None


def _write(path: str, lines: list[str]) -> None:
    text = "".join(line + "\n" for line in lines)
    if path == "-":
        sys.stdout.write(text)
    else:
        Path(path).write_text(text, encoding="utf-8")
        print(f"{len(lines)} written to {path}", file=sys.stderr)


async def cmd_answers_import(context: EdgeCommandContext, args: Any) -> int:
    lines = _read(args.file)
    store, progress = _progress(context, lines, "answers")
    library = await _library(context, store)
    try:
        done = await library.import_answers(lines, args.author)
    finally:
        library.stop()
    if progress.shown:
        progress.finish(store.saved)
    await audit(context, "answers", "imported", file=args.file, author=args.author,
                created=done.created, updated=done.updated,
                unchanged=done.unchanged)
    print(f"{done.created} created, {done.updated} updated, {done.unchanged} unchanged")
    return 0


async def cmd_answers_export(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    _write(args.file, library.export_answers(include_retired=not args.active))
    return 0


async def cmd_answers_list(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    answers = library.list_answers(include_retired=True)
    if args.json:
        print(json.dumps([json.loads(line) for line in library.export_answers()]))
        return 0
    if not answers:
        nothing_yet("answers", "import some with `switchboard answers import FILE`")
    for a in answers:
        scope = f"queues={','.join(a.queues) or '*'} categories={','.join(a.categories) or '*'}"
        flag = "  [retired]" if a.retired else ""
        print(f"{a.id:<28} v{a.version:<3} {a.language:<3} {scope}  owner={a.owner}  "
              f"{a.title}{flag}")
    return 0


async def cmd_answers_history(context: EdgeCommandContext, args: Any) -> int:
    versions = await context.library.history(args.id)
    if not versions:
        raise InvalidValue(f"no such answer: {args.id}")
    for v in versions:
        print(json.dumps(asdict(v), ensure_ascii=False))
    return 0


async def cmd_answers_mode_set(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    rule = await library.put_rule({"queue": args.queue, "category": args.category,
                                   "mode": args.mode, "threshold": args.threshold,
                                   "review_share": args.review_share})
    await audit(context, "response_mode", "set", queue=rule.queue,
                category=rule.category, mode=rule.mode.value,
                threshold=rule.threshold, review_share=rule.review_share)
    print(f"{rule.queue}/{rule.category}: {rule.mode.value} (threshold {rule.threshold:g}, "
          f"review share {rule.review_share:g}){NOT_LIVE_SUFFIX}")
    return 0


async def cmd_answers_mode_list(context: EdgeCommandContext, args: Any) -> int:
    rules = (await _library(context)).rules
    if args.json:
        print(json.dumps([{**asdict(r), "mode": r.mode.value} for r in rules]))
        return 0
    if not rules:
        nothing_yet("response modes", "every queue answers in free mode; set one with "
                                      "`switchboard answers mode-set`")
    for r in rules:
        print(f"{r.queue:<16} {r.category:<16} {r.mode.value:<10} threshold {r.threshold:<5g} "
              f"review share {r.review_share:g}")
    return 0


async def cmd_answers_mode_remove(context: EdgeCommandContext, args: Any) -> int:
    if not await context.library.remove_rule(args.queue, args.category):
        raise InvalidValue(f"no rule for {args.queue}/{args.category}")
    await audit(context, "response_mode", "removed", queue=args.queue,
                category=args.category)
    print(f"{args.queue}/{args.category}: removed{NOT_LIVE_SUFFIX}")
    return 0


async def cmd_answers_review_share(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    if args.share == "-":
        share = None
    else:
        try:
            share = float(args.share)
        except ValueError:
            raise InvalidValue("a review share is a number from 0 to 1, or -") from None
    await library.set_agent_share(args.agent, share)
    await audit(context, "review_share", "set" if share is not None else "removed",
                args.agent, share=share)
    print(f"review share of {args.agent}: "
          f"{'removed' if share is None else format(share, 'g')}{NOT_LIVE_SUFFIX}")
    return 0


async def cmd_answers_review_report(context: EdgeCommandContext, args: Any) -> int:
    figures = await context.records.review_figures()
    if args.json:
        print(json.dumps([asdict(f) for f in figures]))
        return 0
    if not figures:
        nothing_yet("reviewed answers")
        return 0
    print(f"{'queue':<16} {'agent':<16} {'reviewed':>8} {'approved':>8} {'edited':>6} "
          f"{'rejected':>8} {'score':>9}")
    for f in figures:
        share = f"{f.score / f.max_score:.0%}" if f.max_score else "-"
        print(f"{f.queue:<16} {f.agent_id or '(automatic)':<16} {f.reviewed:>8} "
              f"{f.approved:>8} {f.edited:>6} {f.rejected:>8} {share:>9}")
    return 0


async def cmd_kb_import(context: EdgeCommandContext, args: Any) -> int:
    lines = _read(args.file)
    store, progress = _progress(context, lines, "articles")
    library = await _library(context, store)
    try:
        done = await library.import_articles(lines)
    finally:
        library.stop()
    if progress.shown:
        progress.finish(store.saved)
    await audit(context, "articles", "imported", file=args.file, created=done.created,
                updated=done.updated)
    print(f"{done.created} created, {done.updated} updated")
    return 0


async def cmd_kb_export(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    _write(args.file, library.export_articles())
    return 0


async def cmd_kb_list(context: EdgeCommandContext, args: Any) -> int:
    library = await _library(context)
    articles = library.list_articles(include_retired=True)
    if args.json:
        print(json.dumps([json.loads(line) for line in library.export_articles()]))
        return 0
    if not articles:
        nothing_yet("articles", "import some with `switchboard kb import FILE`")
    for a in articles:
        print(f"{a.id:<28} {a.category or '-':<16} {a.question}"
              f"{'  [retired]' if a.retired else ''}")
    return 0


async def cmd_kb_report(context: EdgeCommandContext, args: Any) -> int:
    rows = await context.library.deflections()
    if args.json:
        print(json.dumps([{**asdict(d), "rate": d.rate} for d in rows]))
        return 0
    if not rows:
        nothing_yet("views of /help articles")
        return 0
    print(f"{'category':<16} {'article':<28} {'views':>6} {'helped':>7} {'not':>5} {'deflected':>9}")
    for d in rows:
        rate = f"{d.rate:.0%}" if d.rate is not None else "-"
        print(f"{d.category or '-':<16} {d.article_id:<28} {d.views:>6} {d.helped:>7} "
              f"{d.not_helped:>5} {rate:>9}")
    return 0


COMMANDS = {
    ("answers", "import"): cmd_answers_import,
    ("answers", "export"): cmd_answers_export,
    ("answers", "list"): cmd_answers_list,
    ("answers", "history"): cmd_answers_history,
    ("answers", "mode-set"): cmd_answers_mode_set,
    ("answers", "mode-list"): cmd_answers_mode_list,
    ("answers", "mode-remove"): cmd_answers_mode_remove,
    ("answers", "review-share"): cmd_answers_review_share,
    ("answers", "review-report"): cmd_answers_review_report,
    ("kb", "import"): cmd_kb_import,
    ("kb", "export"): cmd_kb_export,
    ("kb", "list"): cmd_kb_list,
    ("kb", "report"): cmd_kb_report,
}
