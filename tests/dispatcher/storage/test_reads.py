"""Turn reads (storage/reads.py): the reads asked for in one reactor turn go to one database
call, one call at a time, each answered with its own result or with the call's failure."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from dispatcher.storage.reads import TurnReads


class FakePool:
    """`Pool.run` whose calls the test answers by hand."""

    def __init__(self) -> None:
        self.reactor = Clock()
        self.calls: list[tuple[list[Any], Deferred[Any]]] = []

    def run(self, thd_fn: Any, args: list[Any]) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.calls.append((list(args), d))
        return d


def outcomes(ds: list[Deferred[Any]]) -> list[Any]:
    got: list[Any] = []
    for d in ds:
        d.addBoth(got.append)
    return got


def test_the_reads_of_one_turn_are_one_call_and_each_gets_its_own_answer():
    pool = FakePool()
    reads = TurnReads(pool, lambda conn, args: [])
    ds = [reads.run(n) for n in (1, 2, 3)]
    assert pool.calls == []  # at the end of the turn
    pool.reactor.advance(0)
    assert [args for args, _ in pool.calls] == [[1, 2, 3]]
    got = outcomes(ds)
    pool.calls[0][1].callback(["one", "two", "three"])
    assert got == ["one", "two", "three"] and reads.calls == 1


def test_reads_asked_while_a_call_runs_wait_for_the_next_call():
    pool = FakePool()
    reads = TurnReads(pool, lambda conn, args: [])
    first = reads.run("a")
    pool.reactor.advance(0)
    later = [reads.run("b"), reads.run("c")]
    pool.reactor.advance(0)
    assert len(pool.calls) == 1  # one call at a time
    pool.calls[0][1].callback(["A"])
    assert outcomes([first]) == ["A"]
    pool.reactor.advance(0)
    assert [args for args, _ in pool.calls] == [["a"], ["b", "c"]]
    pool.calls[1][1].callback(["B", "C"])
    assert outcomes(later) == ["B", "C"]


def test_a_failed_call_fails_each_of_its_reads_and_the_next_ones_still_run():
    pool = FakePool()
    reads = TurnReads(pool, lambda conn, args: [])
    ds = [reads.run(1), reads.run(2)]
    pool.reactor.advance(0)
    after = reads.run(3)
    got = outcomes(ds)
    pool.calls[0][1].errback(Failure(RuntimeError("database gone")))
    assert [f.check(RuntimeError) for f in got] == [RuntimeError, RuntimeError]
    pool.reactor.advance(0)
    pool.calls[1][1].callback(["three"])
    assert outcomes([after]) == ["three"]


def test_a_call_giving_the_wrong_number_of_results_fails_its_reads():
    pool = FakePool()
    reads = TurnReads(pool, lambda conn, args: [])
    ds = [reads.run(1), reads.run(2)]
    pool.reactor.advance(0)
    got = outcomes(ds)
    pool.calls[0][1].callback(["only one"])
    assert all(isinstance(f, Failure) and "1 results for 2 reads" in f.getErrorMessage()
               for f in got)
