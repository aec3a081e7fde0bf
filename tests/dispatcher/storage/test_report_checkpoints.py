"""The contract of `ReportStore.save_checkpoint` / `load_checkpoint` / `count_events` on
`MemoryStore` and on `SqlReportStore` (SQLite, PostgreSQL): a save replaces the checkpoint of
its name and fires with its JSON's length; a load gives it back as saved (floats exact) to the
caller's `decode`, `None` when there is none, data None when the stored text is not JSON;
`make` and `decode` run off the reactor thread on the SQL store; what `decode` raises is the
load's failure; `count_events` counts the period as `fold_events` gives it."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa

from dispatcher.service.ports import ReportCheckpoint
from dispatcher.storage import report_checkpoints
from dispatcher.storage import tables as t
from tests.dispatcher.storage import test_reports as contract
from tests.dispatcher.storage.test_reports import END, START, T0, Both, scenario

both = contract.both  # the same three stores as the contract of `fold_events`


def test_saved_checkpoints_come_back_as_saved_and_replace_those_of_their_name(
        both: Both) -> None:
    threads: list[str] = []

    def make(name: str, value: float) -> ReportCheckpoint:
        def build() -> ReportCheckpoint:
            threads.append(threading.current_thread().name)
            return ReportCheckpoint(name, START, 101, T0 + 1.25,
                                    {"x": [value, None, True, "é"], "n": 3})
        return build

    got: list[ReportCheckpoint | None] = []

    def decode(cp: ReportCheckpoint | None) -> str:
        threads.append(threading.current_thread().name)
        got.append(cp)
        return "decoded"

    assert both.wait(both.reports.load_checkpoint("today", decode)) == "decoded"
    assert got == [None]
    n = both.wait(both.reports.save_checkpoint(make("today", 0.1 + 0.2)))
    assert n == len('{"x":[0.30000000000000004,null,true,"\\u00e9"],"n":3}')
    both.wait(both.reports.save_checkpoint(make("other", 1.0)))
    both.wait(both.reports.save_checkpoint(make("today", 1 / 3)))
    both.wait(both.reports.load_checkpoint("today", decode))
    assert got[-1] == ReportCheckpoint("today", START, 101, T0 + 1.25,
                                       {"x": [1 / 3, None, True, "é"], "n": 3})
    both.wait(both.reports.load_checkpoint("other", decode))
    assert got[-1].data["x"][0] == 1.0
    main = threading.main_thread().name
    if both.reports is not both.store:  # the SQL store: on its reading thread
        assert threads and main not in threads


def test_a_decode_that_raises_fails_the_load(both: Both) -> None:
    both.wait(both.reports.save_checkpoint(
        lambda: ReportCheckpoint("today", START, 1, T0, {})))

    def decode(cp: ReportCheckpoint | None) -> None:
        raise ValueError("not mine")

    with pytest.raises(ValueError, match="not mine"):
        both.wait(both.reports.load_checkpoint("today", decode))


def test_data_that_is_not_json_comes_back_as_none(both: Both) -> None:
    both.wait(both.reports.save_checkpoint(
        lambda: ReportCheckpoint("today", START, 1, T0, {"a": 1})))
    if both.reports is both.store:
        both.store._checkpoints["today"] = (START, 1, T0, '{"a": ')
    else:
        engine = sa.create_engine(both.reports.engine.url)
        with engine.begin() as conn:
            conn.execute(t.report_checkpoints.update().values(data='{"a": '))
        engine.dispose()
    cp = both.wait(both.reports.load_checkpoint("today", lambda cp: cp))
    assert cp is not None and cp.data is None and cp.version == 1


def test_what_cannot_be_json_is_not_saved(both: Both) -> None:
    with pytest.raises(ValueError):
        both.wait(both.reports.save_checkpoint(
            lambda: ReportCheckpoint("today", START, 1, T0, {"a": float("nan")})))
    assert both.wait(both.reports.load_checkpoint("today", lambda cp: cp)) is None


def test_count_events_counts_the_period_as_fold_events_gives_it(both: Both) -> None:
    scenario(both)
    for start, end in ((START, END), (START + 600, START + 1200), (T0 - 1000, START),
                       (END, END + 10)):
        given: list[int] = []
        n = both.wait(both.reports.fold_events(
            start, end, lambda rows, given=given: given.append(len(rows)), context=False))
        assert both.wait(both.reports.count_events(start, end)) == n == sum(given)
    assert both.wait(both.reports.count_events(START, END)) > 3


@pytest.mark.parametrize("value", [
    {}, [], {"a": []}, {"a": {}}, [[]], 0, -1.5e-300, "x", None, True,
    {"tasks": [[f"t{i}", i, i / 7, None, True, {"k": [i]}] for i in range(4999)],
     "é\n\"": {"deep": list(range(2001)), "pi": 3.141592653589793}, "n": 1e16},
])
def test_the_pieces_are_the_json_of_the_whole(value) -> None:
    text = report_checkpoints.dumps(value)
    assert text == json.dumps(value, separators=(",", ":"), allow_nan=False)
    assert report_checkpoints.loads(text) == value


@pytest.mark.parametrize("text", ['{"a":[1,2', '{"a":1', '[1,2]x', '{"a" :1}', '[1 ,2]', "",
                                  '{1:2}', '{"a":1,}', "[1,]"])
def test_what_is_not_json_as_written_is_refused(text) -> None:
    with pytest.raises(ValueError):
        report_checkpoints.loads(text)
