"""The cluster's address book (dispatcher/service/nodes.py) on a virtual clock: the leader's
endpoint read at most once per cache period, again at once after `forget`, never this node's
own, and None (logged once) while the database fails."""

from __future__ import annotations

import logging

from twisted.internet.defer import Deferred, ensureDeferred, fail, succeed
from twisted.internet.task import Clock

from dispatcher.service.nodes import Nodes, url
from dispatcher.service.ports import NodeAddress

LEADER = NodeAddress("a", "10.0.0.1", {"http": "http://10.0.0.1:8080",
                                       "console": "ws://10.0.0.1:8081"}, 0.0)


class Store:
    def __init__(self) -> None:
        self.leader_is: NodeAddress | None = LEADER
        self.reads = 0
        self.failing = False
        self.published: list[NodeAddress] = []
        self.pending: Deferred | None = None

    def publish(self, node: NodeAddress) -> Deferred[None]:
        self.published.append(node)
        return succeed(None)

    def nodes(self) -> Deferred[list[NodeAddress]]:
        return succeed([LEADER, *self.published])

    def leader(self) -> Deferred[NodeAddress | None]:
        self.reads += 1
        if self.pending is not None:
            return self.pending
        return fail(RuntimeError("database away")) if self.failing else succeed(self.leader_is)


def ask(nodes: Nodes, kind: str) -> str | None:
    d = nodes.leader(kind)
    assert d.called
    return d.result


def test_the_leaders_endpoint_by_kind_and_none_for_one_it_lacks() -> None:
    store, clock = Store(), Clock()
    nodes = Nodes(store, clock, "b", "10.0.0.2")
    assert ask(nodes, "console") == "ws://10.0.0.1:8081"
    assert ask(nodes, "cti") is None


def test_read_once_per_cache_period_and_again_after_forget() -> None:
    store, clock = Store(), Clock()
    nodes = Nodes(store, clock, "b", "10.0.0.2", cache_seconds=1.0)
    for _ in range(5):
        ask(nodes, "http")
    assert store.reads == 1
    clock.advance(1.0)
    ask(nodes, "http")
    assert store.reads == 2
    nodes.forget()
    ask(nodes, "http")
    assert store.reads == 3


def test_this_node_is_never_its_own_leader_to_pass_on_to() -> None:
    store, clock = Store(), Clock()
    assert ask(Nodes(store, clock, "a", "10.0.0.1"), "http") is None


def test_callers_during_a_read_share_it() -> None:
    store, clock = Store(), Clock()
    nodes = Nodes(store, clock, "b", "10.0.0.2")
    store.pending = Deferred()
    first, second = nodes.leader("http"), nodes.leader("http")
    assert not first.called and not second.called
    store.pending.callback(LEADER)
    assert first.result == second.result == "http://10.0.0.1:8080"
    assert store.reads == 1


def test_a_failing_database_gives_none_logged_once(caplog) -> None:
    store, clock = Store(), Clock()
    nodes = Nodes(store, clock, "b", "10.0.0.2", cache_seconds=1.0)
    store.failing = True
    with caplog.at_level(logging.INFO, logger="dispatcher.service.nodes"):
        for _ in range(3):
            assert ask(nodes, "http") is None
            clock.advance(1.0)
        store.failing = False
        assert ask(nodes, "http") == "http://10.0.0.1:8080"
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "cannot read" in m]) == 1
    assert len([m for m in lines if "works again" in m]) == 1


def test_publish_says_where_this_node_is() -> None:
    store, clock = Store(), Clock()
    clock.advance(42.0)
    nodes = Nodes(store, clock, "b", "fe80::2")
    nodes.publish({"http": url("http", "fe80::2", 8080)})
    assert store.published == [NodeAddress("b", "fe80::2", {"http": "http://[fe80::2]:8080"},
                                            42.0)]
    hosts = ensureDeferred(nodes.hosts())
    assert hosts.result == {"10.0.0.1", "fe80::2"}
