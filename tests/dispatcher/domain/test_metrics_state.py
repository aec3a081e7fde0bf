"""A tally saved as JSON mid-day and loaded back folds the rest of the day exactly as the tally
that never stopped: at every point of the scripted day of test_metrics (every figure compared,
intervals included, and the saved states themselves); data of another version or of a broken
shape is refused with ValueError."""

from __future__ import annotations

import gc
import json
import math
import random
import sys

import pytest

from dispatcher.domain import metrics as m
from dispatcher.domain import metrics_state
from tests.dispatcher.domain.test_metrics import TARGETS, T, scripted_day


def same_state(a: dict, b: dict) -> bool:
    """The same state: the heaps of unanswered e-mails may differ in layout, not in content."""
    return ({**a, "due": sorted(a["due"])} == {**b, "due": sorted(b["due"])}
            and a["due"][:1] == b["due"][:1])


def round_trip(tally: m.Tally) -> m.Tally:
    return metrics_state.load(json.loads(json.dumps(metrics_state.dump(tally))))


@pytest.mark.parametrize(("start", "end", "interval"), [
    (T(8), None, m.HOUR),  # the live view: no end
    (T(8), T(18), m.QUARTER_HOUR),  # a report's period
    (T(10), None, m.HOUR),  # the events before 10:00 are context
])
def test_resumed_at_every_event_the_figures_are_those_of_a_tally_that_never_stopped(
        start, end, interval) -> None:
    events = scripted_day()
    whole = m.Tally(start, end, interval, TARGETS)
    whole.add_all(events)
    expected = whole.figures(T(18)).rows()
    assert len(expected) > 50
    for k in range(len(events) + 1):
        first = m.Tally(start, end, interval, TARGETS)
        first.add_all(events[:k])
        resumed = round_trip(first)
        assert metrics_state.dump(resumed) == metrics_state.dump(first)
        resumed.add_all(events[k:])
        assert resumed.figures(T(18)).rows() == expected, f"resumed after {k} events"
        assert same_state(metrics_state.dump(resumed), metrics_state.dump(whole))


def test_a_snapshot_of_the_resumed_tally_counts_open_spans_and_overdue_mail() -> None:
    events = [e for e in scripted_day() if e.at <= T(10, 30)]
    live = m.Tally(T(8), None, m.HOUR, TARGETS)
    live.add_all(events)
    resumed = round_trip(live)
    for now in (T(10, 45), T(11, 30), T(17)):  # spans open, e3 overdue after 11:00
        assert resumed.figures(now).rows() == live.figures(now).rows()


def test_the_queue_filter_and_targets_are_kept() -> None:
    t = m.Tally(T(8), None, m.HOUR, TARGETS, queue="support")
    t.add_all(scripted_day()[:20])
    back = round_trip(t)
    assert back.queue == "support" and back.targets == TARGETS


def test_state_of_another_version_or_shape_is_refused() -> None:
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    t.add_all(scripted_day())
    data = json.loads(json.dumps(metrics_state.dump(t)))
    for broken in (
        {**data, "version": metrics_state.VERSION + 1},
        {**data, "version": None},
        {k: v for k, v in data.items() if k != "fold"},
        {k: v for k, v in data.items() if k != "tasks"},
        {**data, "tasks": [row[:-1] for row in data["tasks"]]},  # a field short
        {**data, "tasks": [[1, *row[1:]] for row in data["tasks"]]},  # an id not a string
        {**data, "cells": [[k, c[:3]] for k, c in data["cells"]]},
        {**data, "last_at": "noon"},
        [data],
        None,
    ):
        with pytest.raises(ValueError):
            metrics_state.load(broken)


def test_state_of_another_fold_is_refused_and_every_field_is_known() -> None:
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    t.add_all(scripted_day())
    data = json.loads(json.dumps(metrics_state.dump(t)))
    with pytest.raises(ValueError, match="another fold"):
        metrics_state.load({**data, "fold": "00000000"})
    # A field added to the tally or its tasks must be saved too (and VERSION bumped).
    assert set(metrics_state._TASK_FIELDS) == set(m._Task.__slots__)
    assert set(vars(t)) == set(metrics_state._TALLY_FIELDS)
    t.extra_state = 1
    with pytest.raises(ValueError, match="every field"):
        metrics_state.dump(t)


def test_a_resumed_tally_holds_one_id_and_one_due_time_per_waiting_email() -> None:
    """The tally keeps every e-mail of the day: its heap of unanswered ones names each by the
    very id and due time its task holds, and a mail pending since it came holds one float."""
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    t.add_all([e for e in scripted_day() if e.at <= T(10, 30)])
    back = round_trip(t)
    assert back._due
    for due, task_id in back._due:
        [key] = [k for k in back.tasks if k == task_id]
        assert task_id is key and due is back.tasks[key].due
    waiting = [x for x in back.tasks.values() if x.pending_since == x.created_at]
    assert waiting and all(x.pending_since is x.created_at for x in waiting)


def test_a_resumed_tally_holds_its_waiting_emails_without_a_pair_each() -> None:
    """Memory (the tally keeps every e-mail of the day): resumed, its unanswered e-mails are
    held as ids and due times, the very objects its tasks hold, not as a (due, id) tuple each;
    they are still taken in (due, id) order, the new ones among them."""
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    t.add_all([e for e in scripted_day() if e.at <= T(10, 30)])
    back = round_trip(t)
    seen, stack, tuples = set(), [back._due], 0
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        tuples += type(o) is tuple
        stack.extend(gc.get_referents(o))
    assert len(back._due) > 0 and tuples == 0
    kept = sorted((due, task_id) for due, task_id in metrics_state.dump(t)["due"])
    back._due.push(kept[0][0] - 1.0, "new")  # before every other: taken first
    taken = [back._due.pop() for _ in range(len(back._due))]
    assert taken == [(kept[0][0] - 1.0, "new"), *kept]


def test_unanswered_emails_are_taken_in_due_then_id_order_from_both_parts() -> None:
    """`_Due` pops what one heap of (due, id) pairs would, whatever part holds each pair (the
    sorted runs a resumed tally loads, the heap of those that came after), ties included."""
    rng = random.Random(7)
    for _ in range(200):
        loaded = sorted((float(rng.randrange(20)), f"t{rng.randrange(30)}")
                        for _ in range(rng.randrange(12)))
        later = [(float(rng.randrange(20)), f"t{rng.randrange(30)}")
                 for _ in range(rng.randrange(12))]
        due = m._Due(loaded)
        for pair in later:
            due.push(*pair)
        every = sorted(loaded + later)
        assert sorted(due) == every and len(due) == len(every)
        assert due.next_at == (every[0][0] if every else math.inf)
        now = float(rng.randrange(21))
        assert sorted(due.before(now)) == [p for p in every if p[0] < now]
        taken = []
        while due.next_at < math.inf:
            taken.append(due.pop())
        assert taken == every


def test_unanswered_emails_pushed_in_order_take_no_tuple_each() -> None:
    """Memory: e-mails that come in due order (a day's fold, new mail of one target) join the
    runs, without a tuple each; one due earlier than the last goes to the heap."""
    due = m._Due()
    for i in range(1000):
        due.push(1000.0 + i // 3, f"t{i:04d}")  # ties in id order too
    assert due.heap == [] and len(due) == 1000
    due.push(500.0, "late")
    assert due.heap == [(500.0, "late")] and due.next_at == 500.0
    assert due.pop() == (500.0, "late") and due.pop() == (1000.0, "t0000")


def test_a_tally_keeps_each_task_small_and_one_kind_tuple_for_equal_ones() -> None:
    """Memory (the tally keeps every task of the day): a task is one object of ten slots (its
    yes/no state one int; 112 bytes on CPython 3.11, 160 with a slot each), and the tasks of one
    queue, channel and deadline type share one tuple of them, folded or resumed."""
    t = m.Tally(T(8), None, m.HOUR, TARGETS)
    t.add_all(scripted_day())
    for tally in (t, round_trip(t)):
        tasks = list(tally.tasks.values())
        assert len(tasks) > 5 and all(sys.getsizeof(x) <= 112 for x in tasks)
        kinds: dict[tuple, tuple] = {}
        for x in tasks:
            assert kinds.setdefault(x.kind, x.kind) is x.kind
        assert len(kinds) < len(tasks)
