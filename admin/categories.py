"""`switchboard categories ...`: categories, their rules and the classifier's training set from
the command line.

    switchboard categories add NAME [--queue Q] [--priority P] [--skills s=l,...]
                                    [--attribute k=v ...] [--description TEXT]
    switchboard categories rule-add CATEGORY --field F --pattern P [--match regex|keywords]
                                    [--position N] [--disabled]
    switchboard categories rule-remove ID
    switchboard categories list [--json]
    switchboard categories train [--file FILE.jsonl] [--folds K]

Sits in the admin edge; each `cmd_*` is given the command's context (`EdgeCommandContext`).
Rules and categories are checked, stored and audited by `dispatcher.service.configuration.
Configuration`; a running server reloads them within a few seconds. `train` imports
labelled examples (JSON Lines: {"category", "text"} or {"category", "subject", "body"}), then
measures the classifier on the whole training set by stratified cross-validation (in a worker
thread) and prints its accuracy; the server retrains itself on its schedule.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import threads

from dispatcher.domain.categories import (
    FIELDS,
    FORM_PREFIX,
    MATCHES,
    REGEX,
    Category,
    CategoryRule,
    check_name,
)
from dispatcher.domain.errors import InvalidValue
from dispatcher.service.codification import (
    DEFAULT_MAX_EXAMPLES,
    EVALUATION_FOLDS,
    EXAMPLE_IMPORT,
    evaluate,
)
from dispatcher.service.edges import EdgeCommandContext
from dispatcher.service.ports import TrainingExample

from .parse import NOT_LIVE, operator, parse_levels, parse_pairs


def add_commands(sub: Any) -> None:
    cats = sub.add_parser("categories", help="categories, categorisation rules, training")
    a = cats.add_subparsers(dest="action", required=True)
    p = a.add_parser("add", help="add or replace a category and what it drives")
    p.add_argument("name", help="the category's name (letters, digits, _ . -)")
    p.add_argument("--queue", help="the queue its tasks go to")
    p.add_argument("--priority", type=int, help="the priority of its tasks (0-100)")
    p.add_argument("--skills", help="skill=level,... its tasks require")
    p.add_argument("--attribute", action="append", default=[],
                   help="key=value set on its tasks (repeatable)")
    p.add_argument("--description", default="", help="what the category is for")
    p = a.add_parser("rule-add", help="add a rule (rules run by position; the first wins)")
    p.add_argument("category", help="the category the rule gives")
    p.add_argument("--field", required=True,
                   help=f"one of {', '.join(sorted(FIELDS))} or {FORM_PREFIX}<name>")
    p.add_argument("--pattern", required=True, help="a regular expression, or keywords a,b,c")
    p.add_argument("--match", choices=sorted(MATCHES), default=REGEX,
                   help="how --pattern is read")
    p.add_argument("--position", type=int, default=100,
                   help="rules run by position, lowest first; the first that matches wins")
    p.add_argument("--disabled", action="store_true", help="store the rule switched off")
    p = a.add_parser("rule-remove", help="remove a rule by id")
    p.add_argument("id", type=int, help="the rule's id (`categories list` shows it)")
    p = a.add_parser("list", help="categories, rules, and how many training examples")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p = a.add_parser("train", help="import labelled examples and measure the classifier")
    p.add_argument("--file", help="JSON Lines: {category, text} or {category, subject, body}")
    p.add_argument("--folds", type=int, default=EVALUATION_FOLDS,
                   help="cross-validation folds of the accuracy measure")


async def cmd_categories_add(context: EdgeCommandContext, args) -> int:
    attributes = {}
    for item in args.attribute:
        attributes.update(parse_pairs(item))
    category = Category(check_name(args.name), queue=args.queue or None,
                        priority=args.priority,
                        skills=parse_levels(args.skills) if args.skills else {},
                        attributes=attributes, description=args.description)
    await context.configuration.put_category(category, **operator())
    print(f"category {category.name} saved; {NOT_LIVE}")
    return 0


async def cmd_categories_rule_add(context: EdgeCommandContext, args) -> int:
    rule = CategoryRule(args.category, args.field, args.pattern, args.match, args.position,
                        not args.disabled)
    rule_id = await context.configuration.add_rule(rule, **operator())
    print(f"rule {rule_id} added; {NOT_LIVE}")
    return 0


async def cmd_categories_rule_remove(context: EdgeCommandContext, args) -> int:
    if not await context.configuration.remove_rule(args.id, **operator()):
        print(f"no rule {args.id}", file=sys.stderr)
        return 1
    print(f"rule {args.id} removed; {NOT_LIVE}")
    return 0


async def cmd_categories_list(context: EdgeCommandContext, args) -> int:
    categories = await context.configuration.categories()
    rules = await context.configuration.rules()
    examples = await context.records.example_count()
    if args.json:
        print(json.dumps({
            "categories": [{"name": c.name, "queue": c.queue, "priority": c.priority,
                            "skills": dict(c.skills), "attributes": dict(c.attributes),
                            "description": c.description} for c in categories],
            "rules": [{"id": r.id, "position": r.position, "category": r.category,
                       "field": r.field, "match": r.match, "pattern": r.pattern,
                       "enabled": r.enabled} for r in rules],
            "examples": examples}, indent=2))
        return 0
    print("Categories" + ("" if categories else ": none yet (`switchboard categories add NAME`)"))
    for c in categories:
        print(f"  {c.name:<20} queue={c.queue or '-'} priority="
              f"{'-' if c.priority is None else c.priority} skills={dict(c.skills)}")
    print("Rules (in order)" + ("" if rules else ": none yet (`switchboard categories rule-add`)"))
    for r in rules:
        state = "" if r.enabled else " (disabled)"
        print(f"  #{r.id:<4} pos {r.position:<4} {r.field:<14} {r.match:<8} "
              f"{r.pattern!r} -> {r.category}{state}")
    print(f"Training examples: {examples}")
    return 0


def read_examples(path: str, at: float) -> list[TrainingExample]:
    """Labelled examples from a JSON Lines file; every bad line is reported at once."""
    out: list[TrainingExample] = []
    problems: list[str] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            text = item.get("text") or f"{item.get('subject', '')}\n{item.get('body', '')}"
            if not isinstance(text, str) or not text.strip():
                raise ValueError("no text")
            out.append(TrainingExample(text, check_name(str(item["category"])),
                                       EXAMPLE_IMPORT, at, actor="cli"))
        except (ValueError, KeyError, TypeError, AttributeError, InvalidValue) as exc:
            problems.append(f"line {n}: {exc}")
    if problems:
        raise InvalidValue(f"{path}: " + "; ".join(problems[:20]))
    return out


async def cmd_categories_train(context: EdgeCommandContext, args) -> int:
    if args.file:
        examples = read_examples(args.file, time.time())
        await context.records.add_examples(examples)
        print(f"imported {len(examples)} examples")
    stored = await context.records.examples(DEFAULT_MAX_EXAMPLES)
    pairs = [(e.text, e.category) for e in stored]
    categories = sorted({c for _, c in pairs})
    started = time.monotonic()
    print(f"categories train: measuring the classifier on {len(pairs)} examples in "
          f"{len(categories)} categories ({args.folds} folds) ...", file=sys.stderr, flush=True)
    accuracy = await threads.deferToThread(evaluate, pairs, args.folds)
    print(f"categories train: measured in {time.monotonic() - started:.1f} s", file=sys.stderr)
    if accuracy is None:
        print(f"{len(pairs)} examples in {len(categories)} categories: too few to measure "
              "(at least 2 categories with 2 examples each)")
        return 1
    print(f"{len(pairs)} examples in {len(categories)} categories; cross-validated "
          f"accuracy {accuracy:.3f}; a running server retrains on its schedule")
    return 0


COMMANDS = {
    ("categories", "add"): cmd_categories_add,
    ("categories", "rule-add"): cmd_categories_rule_add,
    ("categories", "rule-remove"): cmd_categories_rule_remove,
    ("categories", "list"): cmd_categories_list,
    ("categories", "train"): cmd_categories_train,
}
