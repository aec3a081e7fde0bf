"""A routing decision's explanation in words: the one place they are made.

Pure domain (stdlib only). The router records with each `task.offered` an explanation as data
(routing.py's module docstring: `rule`, `eligible`, `available`, `skipped`, and since they
exist `offered`, `passed` and `counts`); `explain_in_words` turns one into a line a person
reads, e.g. "offered to ann (longest idle of 2 available out of 5 eligible); passed over: bob
declined it; carl on a call (phone, 1/1); dana: skill french 2 < 4; 3 more members not
eligible". The text view of a task (admin/task_views.py) and the supervisors' live state
(dispatcher/service/supervision.py, hence the wallboard) both use it. It never fails on what
it does not know: an older explanation (no `passed`) is told from its counts and `skipped`, an
unknown reason code is shown as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

# Words for the rules, as "offered to X (<words>...)".
_RULES = {
    "longest_idle": "longest idle",
    "highest_skill": "highest skill, then longest idle",
    "best_task_for_agent": "their best waiting task by priority, due time and arrival",
}


def _channel_slot(p: Mapping[str, Any]) -> str:
    channel = p.get("channel", "")
    figures = f"{p.get('held', '?')}/{p.get('capacity', '?')}"
    if channel == "phone":
        return f"on a call (phone, {figures})"
    return f"has no free {channel} slot ({figures})"


def _holding(p: Mapping[str, Any]) -> str:
    holding, channel = p.get("holding", ""), p.get("channel", "")
    if holding == "phone":
        return f"on a call (no {channel} on top of it)"
    return f"holding {holding} work (no {channel} on top of it)"


def _unreachable(p: Mapping[str, Any]) -> str:
    channel = p.get("channel", "")
    return ("unreachable (no phone registered)" if channel == "phone"
            else f"unreachable on {channel}")


def _engaged(p: Mapping[str, Any]) -> str:
    channel = p.get("channel", "")
    return ("in a call outside routing (PBX)" if channel == "phone"
            else f"engaged outside routing on {channel}")


# Reason code -> the words after the agent's name.
_REASONS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "declined": lambda p: "declined it",
    "expired": lambda p: "let an offer of it expire",
    "break": lambda p: f"on a break ({p['break_reason']})" if p.get("break_reason")
    else "on a break",
    "offline": lambda p: "offline",
    "not_responding": lambda p: "not responding",
    "disabled": lambda p: "disabled",
    "offer_pending": lambda p: f"has another offer pending ({p.get('channel', '')})",
    "paused": lambda p: f"has {p.get('channel', '')} paused",
    "unreachable": _unreachable,
    "engaged": _engaged,
    "no_capacity": _channel_slot,
    "interruption": _holding,
    "not_listed": lambda p: "free, not listed yet",
    "kept_for_calls": lambda p: "kept free for calls (the call queue's reserve)",
}


def passed_in_words(p: Mapping[str, Any]) -> str:
    """One agent passed over, in words: "bob declined it", "dana: skill french 2 < 4"."""
    agent = p.get("agent", "?")
    reason = p.get("reason", "")
    if reason == "not_eligible":
        return f"{agent}: {p.get('detail') or 'does not meet the requirement'}"
    words = _REASONS.get(reason)
    return f"{agent} {words(p)}" if words is not None else f"{agent}: {reason or 'passed over'}"


def _how(why: Mapping[str, Any]) -> str:
    """The parenthesis after "offered to X": the rule and the counts it chose among."""
    rule = str(why.get("rule", ""))
    available, eligible = why.get("available"), why.get("eligible")
    among = (f"{available} available out of {eligible} eligible"
             if available is not None and eligible is not None else "")
    if rule == "transfer":
        return f"transferred by {why.get('by', '?')} from {why.get('from_agent', '?')}"
    if rule == "supervisor":
        return f"sent to them by {why.get('by', '?')}"
    if rule == "sticky":
        kept = "; kept for them until they were free" if why.get("waited_for_agent") else ""
        return f"they handled the customer before{kept}; {among}" if among else (
            "they handled the customer before" + kept)
    words = _RULES.get(rule, rule.replace("_", " ") or "routed")
    if rule == "best_task_for_agent":
        return f"{words}; {among}" if among else words
    return f"{words} of {among}" if among else words


def _skipped_tasks(why: Mapping[str, Any]) -> str:
    skipped = why.get("skipped") or {}
    if why.get("rule") != "best_task_for_agent" or not skipped:
        return ""
    return "; ahead of it, declined by them: " + ", ".join(sorted(map(str, skipped)))


def _more(counts: Mapping[str, Any]) -> list[str]:
    out = []
    for key, words in (("more_available", "available, lower in the order"),
                       ("more_unavailable", "not available"),
                       ("more_not_eligible", "members not eligible")):
        n = counts.get(key)
        if isinstance(n, int) and n > 0:
            out.append(f"{n} more {words}")
    return out


def explain_in_words(why: Mapping[str, Any], agent: str | None = None) -> str:
    """The explanation `why` of one decision in words. `agent`: who was offered, for an
    explanation recorded before it named them (`offered`)."""
    offered = why.get("offered") or agent or "?"
    head = f"offered to {offered} ({_how(why)})" + _skipped_tasks(why)
    if why.get("condition"):
        head += f"; who may take it: {why['condition']}"
    passed = why.get("passed")
    if passed is None:  # recorded before agents passed over were named
        if why.get("rule") == "best_task_for_agent":
            return head
        names = [f"{a} declined it" for a in sorted(why.get("skipped") or {})]
        return head + ("; passed over: " + "; ".join(names) if names else "")
    parts = [passed_in_words(p) for p in passed if isinstance(p, Mapping)]
    parts += _more(why.get("counts") or {})
    return head + ("; passed over: " + "; ".join(parts) if parts else "")
