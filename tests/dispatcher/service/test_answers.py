"""The answer library as use cases (dispatcher.service.answers) on the memory stores with a
virtual clock: versions on change only, retiring, JSON Lines import/export round trip and
all-or-nothing import, debounced index rebuild, knowledge base and /help feedback, rules."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred, succeed

from dispatcher.domain.answers import ResponseMode
from dispatcher.domain.errors import InvalidValue
from dispatcher.service.answers import LEARN_REBUILD_DELAY, REBUILD_DELAY, Library
from dispatcher.storage.answers import MemoryAnswerStore
from tests.dispatcher.service.stacks import Stack, failure_of, result

DATA = Path(__file__).resolve().parents[2] / "data" / "answers"


@pytest.fixture
def library(stack: Stack) -> Library:
    lib = Library(MemoryAnswerStore(stack.store), stack.clock)
    result(lib.load())
    return lib


def test_a_save_with_new_content_adds_a_version_and_keeps_the_owner(library: Library) -> None:
    first = result(library.save_answer({"id": "hi", "title": "Hi", "text": "Hello"}, "sue"))
    assert (first.version, first.owner) == (1, "sue")
    same = result(library.save_answer({"id": "hi", "title": "Hi", "text": "Hello"}, "bob"))
    assert same == first  # nothing changed: no version
    second = result(library.save_answer({"id": "hi", "title": "Hi", "text": "Hello!"}, "bob"))
    assert (second.version, second.owner) == (2, "sue")
    retired = result(library.retire_answer("hi", "bob"))
    assert retired.retired and retired.version == 3
    history = result(library.history("hi"))
    assert [(v.version, v.author, v.retired) for v in history] == [
        (1, "sue", False), (2, "bob", False), (3, "bob", True)]
    assert library.list_answers() == [] and library.list_answers(True) == [retired]
    assert isinstance(failure_of(library.retire_answer("nope", "bob")).value, InvalidValue)


def test_import_export_round_trip(stack: Stack, library: Library) -> None:
    lines = (DATA / "library.jsonl").read_text().splitlines()
    done = result(library.import_answers(lines, "sue"))
    assert (done.created, done.updated, done.unchanged) == (20, 0, 0)
    exported = library.export_answers()
    assert len(exported) == 20 and json.loads(exported[0])["version"] == 1
    other = Library(MemoryAnswerStore(stack.store), stack.clock)
    again = result(other.import_answers(exported, "bob"))
    assert again.created == 20
    assert [(a.id, a.text, a.owner) for a in other.list_answers()] == [
        (a.id, a.text, a.owner) for a in library.list_answers()]
    assert result(library.import_answers(exported, "sue")).unchanged == 20


def test_an_import_with_one_bad_line_saves_nothing(library: Library) -> None:
    lines = ['{"id": "ok", "title": "T", "text": "x"}', "not json",
             '{"id": "b", "title": "T", "text": "{{secret}}"}', "[1]",
             '{"id": "ok", "title": "T", "text": "y"}']
    err = failure_of(library.import_answers(lines, "sue")).value
    assert isinstance(err, InvalidValue)
    assert "line 2" in str(err) and "line 3" in str(err) and "line 4" in str(err)
    assert "appears twice" in str(err)
    assert library.list_answers() == []


def test_the_index_is_rebuilt_once_after_changes(stack: Stack, library: Library) -> None:
    for i in range(5):
        result(library.save_answer({"id": f"a{i}", "title": f"Parcel {i}",
                                    "text": "where is my parcel tracking"}, "sue"))
    assert library.ranker.size == 0  # not yet: debounced
    stack.clock.advance(REBUILD_DELAY)
    assert library.ranker.size == 5
    assert library.ranker.rank("parcel tracking", limit=1)[0].id == "a0"


class Offload:
    """An `offload` whose runs the test finishes: each call is kept with its Deferred."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, tuple[Any, ...], Deferred[None]]] = []

    def __call__(self, fn: Any, *args: Any) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.calls.append((fn, args, d))
        return d

    def finish(self, index: int) -> None:
        fn, args, d = self.calls[index]
        fn(*args)
        d.callback(None)


def test_a_load_builds_its_index_off_the_reactor_and_rankings_wait_for_it(stack: Stack) -> None:
    """A start (`load`) with a thread pool is done once the library is read; the index is
    built there meanwhile, and `indexed` fires once it is in use."""
    store = MemoryAnswerStore(stack.store)
    result(Library(store, stack.clock).save_answer(
        {"id": "parcel", "title": "Parcel", "text": "where is my parcel tracking"}, "sue"))
    offload = Offload()
    library = Library(store, stack.clock, offload=offload)
    assert library.indexed().called  # nothing loaded, nothing to wait for

    result(library.load())

    assert len(offload.calls) == 1 and library.ranker.size == 0 and not library.is_indexed
    waiting = library.indexed()
    found = library.help_found("parcel")
    assert not waiting.called and not found.called
    offload.finish(0)
    assert waiting.called and library.is_indexed and library.ranker.size == 1
    assert result(found) == []  # no articles: searched on the built index, not before
    assert library.indexed().called


def test_a_failed_first_build_is_logged_and_never_leaves_anyone_waiting(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    offload = Offload()
    library = Library(MemoryAnswerStore(stack.store), stack.clock, offload=offload)
    result(library.load())
    waiting = library.indexed()
    offload.calls[0][2].errback(RuntimeError("out of memory"))
    assert waiting.called and library.is_indexed
    assert "could not be built: out of memory" in caplog.text


def test_rebuilds_off_the_reactor_run_one_at_a_time_and_the_newest_last(stack: Stack) -> None:
    """A rebuild asked for while one runs waits for it; two asked for meanwhile make one."""
    offload = Offload()
    library = Library(MemoryAnswerStore(stack.store), stack.clock, offload=offload)
    result(library.save_answer({"id": "a0", "title": "Parcel", "text": "parcel"}, "sue"))
    stack.clock.advance(REBUILD_DELAY)  # the first rebuild starts, and takes long
    for n, word in ((1, "refund"), (2, "invoice")):
        result(library.save_answer({"id": f"a{n}", "title": word, "text": word}, "sue"))
        stack.clock.advance(REBUILD_DELAY)  # waits for the first
    assert len(offload.calls) == 1
    offload.finish(0)
    assert len(offload.calls) == 2 and library.ranker.size == 1
    offload.finish(1)
    assert len(offload.calls) == 2 and library.ranker.size == 3  # the newest index last


def test_knowledge_base_help_search_and_deflections(stack: Stack, library: Library) -> None:
    result(library.import_articles([
        json.dumps({"id": "kb-refund", "question": "When do I get my refund?",
                    "answer": "Within 10 days.", "category": "billing"}),
        json.dumps({"id": "kb-hours", "question": "Opening hours", "answer": "9 to 5",
                    "category": "general"})]))
    library.rebuild_now()
    assert [a.id for a in library.help_search("refund money")][:1] == ["kb-refund"]
    assert [a.id for a in library.help_search("")] == ["kb-refund", "kb-hours"]  # by category
    result(library.record_help("kb-refund", None))
    result(library.record_help("kb-refund", True))
    with pytest.raises(InvalidValue):
        library.record_help("nope", True)
    report = {d.article_id: (d.category, d.views, d.helped) for d in
              result(library.deflections())}
    assert report == {"kb-refund": ("billing", 1, 1), "kb-hours": ("general", 0, 0)}
    assert json.loads(library.export_articles()[0])["id"] == "kb-hours"


def test_rules_and_agent_shares_are_kept_in_memory_after_saving(library: Library) -> None:
    result(library.put_rule({"queue": "support", "category": "billing", "mode": "automatic",
                             "threshold": 0.5}))
    assert library.rule_for("support", "billing").mode is ResponseMode.AUTOMATIC
    assert library.rule_for("support", "other").mode is ResponseMode.FREE
    assert result(library.remove_rule("support", "billing")) is True
    assert library.rule_for("support", "billing").mode is ResponseMode.FREE
    result(library.set_agent_share("ann", 1.0))
    assert library.agent_share("ann") == 1.0
    with pytest.raises(InvalidValue):
        library.set_agent_share("ann", 2)


def test_past_replies_reach_the_index_later_and_changes_sooner(stack: Stack,
                                                              library: Library) -> None:
    result(library.save_answer({"id": "dd", "title": "Direct debit", "text": "new mandate"},
                               "sue"))
    stack.clock.advance(REBUILD_DELAY)
    library.learn("dd", "zzqx bank")
    assert library.ranker.rank("zzqx") == []
    stack.clock.advance(LEARN_REBUILD_DELAY - 1)
    assert library.ranker.rank("zzqx") == []
    stack.clock.advance(1)
    assert library.ranker.rank("zzqx")[0].id == "dd"
    library.learn("dd", "yyqw bank")
    result(library.save_answer({"id": "dd", "title": "Direct debit", "text": "mandate"}, "sue"))
    stack.clock.advance(REBUILD_DELAY)  # a library change does not wait for the learning delay
    assert library.ranker.rank("yyqw")[0].id == "dd"
    library.learn("nope", "x")  # an unknown answer teaches nothing
    assert all(a != "nope" for a, _ in library.examples)


def test_two_racing_saves_one_wins_the_other_is_told(stack: Stack, library: Library) -> None:
    result(library.save_answer({"id": "hi", "title": "Hi", "text": "Hello"}, "sue"))
    result(library.save_answer({"id": "hi", "title": "Hi", "text": "Hello, mine"}, "sue"))
    # Bob's console read version 1 just before Sue saved version 2: his save also makes a
    # version 2, which the store refuses; he is told to reload, nothing is overwritten.
    racing = Library(_Stale(library.store), stack.clock)
    err = failure_of(racing.save_answer({"id": "hi", "title": "Hi", "text": "Theirs"}, "bob"))
    assert isinstance(err.value, InvalidValue) and "someone else" in str(err.value)
    assert result(library.store.get_answer("hi")).text == "Hello, mine"


class _Stale:
    """A store whose first read of an answer is one version old."""

    def __init__(self, inner) -> None:
        self.inner, self.reads = inner, 0

    def get_answer(self, answer_id):
        self.reads += 1
        found = result(self.inner.get_answer(answer_id))
        if self.reads == 1:
            return succeed(replace(found, version=found.version - 1))
        return succeed(found)

    def __getattr__(self, name):
        return getattr(self.inner, name)
