"""Reports agree with each other: the same figure from text, CSV, JSON and HTML, and from the
live view (`Today`) at the end of the day — on the scripted day of the metrics tests, whose
figures are computed by hand there."""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from datetime import datetime
from html.parser import HTMLParser

import pytest
from twisted.internet.task import Clock

from admin.report_views import duration, render, show
from dispatcher.domain import events as ev
from dispatcher.domain.errors import InvalidValue, UnknownQueue
from dispatcher.domain.events import Event
from dispatcher.domain.metrics import HOUR
from dispatcher.domain.queues import Queue
from dispatcher.domain.tasks import Channel
from dispatcher.service.ports import Changes
from dispatcher.service.reports import Reports, Today, parse_interval, parse_time, report_data
from dispatcher.storage.memory import MemoryStore
from tests.dispatcher.domain.test_metrics import END, START, T, scripted_day
from tests.dispatcher.storage.test_store_contract import fired

QUEUES = [
    Queue("sales", sl_target={Channel.PHONE: 20.0, Channel.EMAIL: 86_400.0},
          deadline_rule="sliding 4h"),
    Queue("support", sl_target={Channel.PHONE: 30.0, Channel.EMAIL: 4 * 3600.0}),
]


def loaded(events=None) -> MemoryStore:
    store = MemoryStore()
    for q in QUEUES:
        fired(store.put_queue(q))
    fired(store.record(Changes(events=scripted_day() if events is None else events)))
    return store


def build(store=None, **kw):
    store = store or loaded()
    clock = Clock()
    clock.advance(END + 60)
    kw.setdefault("interval", HOUR)
    return fired(Reports(store, store, clock).build(START, END, **kw))


# ---------------------------------------------------------------------- reading each format


def text_cell(text: str, table: str, row: str, column: str) -> str:
    """The cell of a text table: tables are a title line, a header line, rows, a blank line;
    columns are separated by two spaces or more (values never hold a space)."""
    lines = text.splitlines()
    i = lines.index(table)
    header = re.split(r"\s{2,}", lines[i + 1][2:])
    for line in lines[i + 2:]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line[2:])
        if cells[0] == row:
            return cells[header.index(column)]
    raise AssertionError(f"no row {row!r} in {table!r}")


class Cells(HTMLParser):
    """The HTML report's figure cells by (scope, key, bucket, metric); first one wins."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[tuple[str, str, str, str], str] = {}
        self._at: tuple[str, str, str, str] | None = None
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.svgs += 1
        if tag == "td" and "data-metric" in a:
            self._at = (a["data-scope"], a["data-key"], a["data-bucket"], a["data-metric"])

    def handle_data(self, data):
        if self._at is not None:
            self.cells.setdefault(self._at, data)
            self._at = None


def csv_value(text: str, scope: str, key: str, metric: str, start: str | None = None):
    rows = list(csv.DictReader(io.StringIO(text)))
    first = rows[0]["from"]
    for r in rows:
        if (r["scope"], r["key"], r["metric"]) == (scope, key, metric) and r["from"] == (
                start or first) and (start is not None or r["to"] == rows[0]["to"]):
            return None if r["value"] == "" else float(r["value"])
    raise AssertionError(f"no CSV row for {scope} {key} {metric}")


# (table, row label, column label) in text/HTML  <->  (scope, key, metric) in CSV/JSON,
# with the value computed by hand in tests/dispatcher/domain/test_metrics.py.
FIGURES = [
    ("Service level", "queue sales", "service level", "queue", "sales", "service_level", 0.6),
    ("Service level", "channel phone", "service level", "channel", "phone", "service_level",
     0.4),
    ("Service level", "queue sales", "target met", "queue", "sales", "sla_met", 0.0),
    ("Service level", "queue sales", "intervals met", "queue", "sales", "sla_compliance", 0.25),
    ("Service level", "deadline sliding", "service level", "deadline", "sliding",
     "service_level", 0.8),
    ("E-mail", "all e-mail", "1st avg", "channel", "email", "first_response_avg", 6300),
    ("E-mail", "all e-mail", "1st min", "channel", "email", "first_response_min", 900),
    ("E-mail", "all e-mail", "all avg", "channel", "email", "response_avg", 5450),
    ("E-mail", "all e-mail", "auto-acked", "channel", "email", "ack_share", 0.5),
    ("E-mail", "all e-mail", "no reply", "channel", "email", "closed_without_reply", 1),
    ("Phone", "all calls", "abandoned", "channel", "phone", "calls_abandoned", 2),
    ("Phone", "all calls", "wait max", "channel", "phone", "answer_wait_max", 35),
    ("Phone", "sales/phone", "abandon after avg", "queue_channel", "sales/phone",
     "abandon_wait_avg", 25),
    ("Agents", "ann", "occupancy", "agent", "ann", "occupancy", 6000 / 27000),
    ("Agents", "bob", "handled", "agent", "bob", "tasks_handled", 3),
    ("Agents", "ann", "per hour", "agent", "ann", "tasks_per_hour", 0.25),
]


def test_every_format_gives_the_same_figures():
    report = build()
    text, table_csv = render(report, "text"), render(report, "csv")
    doc = json.loads(render(report, "json"))
    html = Cells()
    html.feed(render(report, "html"))
    for table, row, column, scope, key, metric, expected in FIGURES:
        if scope == "agent":
            from_json = doc["agents"][key][metric]
        else:
            from_json = doc["period"][scope][key][metric]
        assert from_json == pytest.approx(expected), (scope, key, metric)
        assert csv_value(table_csv, scope, key, metric) == pytest.approx(from_json)
        shown = show(metric, from_json)
        assert text_cell(text, table, row, column) == shown, (table, row, column)
        assert html.cells[(scope, key, "", metric)] == shown, (scope, key, metric)
    assert html.svgs == 5  # service level, depth, arrivals vs handled, two distributions


def test_intervals_agree_too():
    report = build()
    text, table_csv = render(report, "text"), render(report, "csv")
    doc = json.loads(render(report, "json"))
    html = Cells()
    html.feed(render(report, "html"))
    nine = doc["intervals"][1]
    assert nine["from"] == "2026-01-01T09:00:00+00:00"
    # 09:00-10:00: c1 in time, c2 late, e1 answered in time: 2 of 3.
    sl = nine["figures"]["all"][""]["service_level"]
    assert sl == pytest.approx(2 / 3)
    assert csv_value(table_csv, "all", "", "service_level", nine["from"]) == pytest.approx(sl)
    assert text_cell(text, "By interval (1h)", "2026-01-01 09:00", "service level") == "66.7%"
    assert html.cells[("all", "", "1", "service_level")] == "66.7%"


def test_one_json_data_for_the_api_and_the_admin_renderer():
    """`report_data` (served by the REST API, epoch seconds) and the admin edge's JSON (ISO
    times with the epoch beside) carry the same figures."""
    report = build()
    data, doc = report_data(report), json.loads(render(report, "json"))
    assert data["report"]["from"] == report.start == doc["report"]["from_epoch"]
    assert datetime.fromisoformat(doc["report"]["from"]).timestamp() == report.start
    for part in ("period", "agents", "definitions"):
        assert json.loads(json.dumps(data[part])) == doc[part], part
    assert [i["figures"] for i in json.loads(json.dumps(data["intervals"]))] == [
        i["figures"] for i in doc["intervals"]]
    assert [i["from"] for i in data["intervals"]] == [
        datetime.fromisoformat(i["from"]).timestamp() for i in doc["intervals"]]


def test_the_live_view_at_the_end_of_the_day_agrees():
    store = loaded()
    report = build(store)
    clock = Clock()
    clock.advance(END)
    today = Today(store, store, clock, HOUR, day_start=lambda now: START)
    live = fired(today.refresh())
    for scope, key in [("all", ""), ("queue", "sales"), ("channel", "email"),
                       ("deadline", "sliding"), ("agent", "ann"), ("agent", "bob")]:
        assert live.cell(scope, key).values() == report.figures.cell(scope, key).values()


def test_today_refreshes_with_only_the_new_events():
    events = scripted_day()
    early = [e for e in events if e.at < T(10)]
    store = MemoryStore()
    for q in QUEUES:
        fired(store.put_queue(q))
    fired(store.record(Changes(events=early)))
    clock = Clock()
    clock.advance(T(10))
    today = Today(store, store, clock, HOUR, day_start=lambda now: START)
    first = fired(today.refresh())
    assert first.cell("channel", "phone").value("calls_offered") == 2
    fired(store.record(Changes(events=[e for e in events if e.at >= T(10)])))
    clock.advance(8 * 3600)
    again = fired(today.refresh())
    assert again.cell("channel", "phone").value("calls_offered") == 5  # not 7: no double count
    assert again.cell().values() == build(store).figures.cell().values()
    # A new day: a new tally, from the new day's start.
    clock.advance(24 * 3600)
    today.day_start = lambda now: END + 24 * 3600
    assert fired(today.refresh()).cell().value("calls_offered") is None


def test_today_keeps_only_the_overlap_of_what_it_folded():
    """Memory: the day's first fold passes many events at once (the open tasks' earlier ones,
    the day so far); what `Today` keeps to skip them at the next refresh is only the overlap
    window's, and no room for the rest (a dict keeps the room it grew to unless rebuilt)."""
    store = MemoryStore()
    for q in QUEUES:
        fired(store.put_queue(q))
    fired(store.record(Changes(events=[
        Event(ev.TASK_CREATED, T(9) + i * 0.01, f"m{i}",
              data={"channel": "email", "queue": "support"}) for i in range(20_000)])))
    clock = Clock()
    clock.advance(T(12))
    today = Today(store, store, clock, HOUR, day_start=lambda now: START)
    assert fired(today.refresh()).cell().value("email_requests") == 20_000
    assert len(today._seen) < 2_000 and sys.getsizeof(today._seen) < 100_000


def test_a_queue_report_and_an_empty_period():
    report = build(queue="support")
    assert report.figures.keys("queue") == ["support"]
    empty = build(MemoryStore())
    for fmt in ("text", "csv", "json", "html"):
        assert render(empty, fmt)
    assert json.loads(render(empty, "json"))["period"] == {}


def test_bad_requests_are_refused():
    store = loaded()
    reports = Reports(store, store, Clock())
    for args, error in [((END, START), InvalidValue), ((START, END, 7.0), InvalidValue),
                        ((START, START + 400 * 86_400, 900.0), InvalidValue)]:
        with pytest.raises(error):
            fired(reports.build(*args))
    with pytest.raises(UnknownQueue):
        fired(reports.build(START, END, HOUR, "nope"))
    with pytest.raises(InvalidValue):
        render(build(store), "pdf")
    with pytest.raises(InvalidValue):
        parse_interval("2h")
    with pytest.raises(InvalidValue):
        parse_time("yesterday-ish")


def test_parse_and_show():
    assert parse_time("2026-01-01") == T(0)
    assert parse_time("2026-01-01T09:00+01:00") == T(8)
    assert parse_time(str(T(3))) == T(3)
    assert show("service_level", 0.6) == "60.0%"
    assert show("first_response_avg", 6300) == "1:45:00"
    assert show("answer_wait_le_10", 3) == "3"
    assert show("interactions_avg", 2.5) == "2.50"
    assert show("replies", None) == "-"
    assert duration(59.6) == "0:01:00"


def test_unknown_events_and_odd_data_do_not_break_a_report():
    events = scripted_day() + [
        Event("something.else", T(16), "e1", data={"x": [1, 2]}),
        Event(ev.TASK_COMPLETED, T(16), "no-such-task", "ann"),
        Event("reply.reviewed", T(16), "e2", data={"score": "eight", "max_score": 10}),
    ]
    report = build(loaded(events))
    assert report.figures.cell().value("review_score_avg") == pytest.approx(80)


def test_an_offset_whose_plus_became_a_space_in_a_url():
    assert parse_time("2026-01-01T09:00 01:00") == T(8)
    assert parse_time("2026-01-01 09:00") == T(9)
