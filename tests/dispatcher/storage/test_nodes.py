"""The cluster's nodes on the database (dispatcher/storage/nodes.py, table `cluster_nodes`), on
SQLite and PostgreSQL: a node's address comes back as published, a second publication replaces
the first, and `leader` gives the address of the lease's unexpired holder only."""

from __future__ import annotations

import pytest

from dispatcher.service.ports import NodeAddress
from dispatcher.storage.lease import SqlLeases
from dispatcher.storage.nodes import SqlNodes
from tests.dispatcher.storage.wiring import Wiring

A = NodeAddress("node-a", "10.0.0.1", {"http": "http://10.0.0.1:8080",
                                       "console": "ws://10.0.0.1:8081"}, 1_772_532_000.0)
B = NodeAddress("node-b", "fe80::1", {"http": "http://[fe80::1]:8080"}, 1_772_532_001.5)


@pytest.fixture
def nodes(wiring: Wiring) -> SqlNodes:
    return SqlNodes(wiring.pool)


def test_published_addresses_come_back_by_name(wiring, nodes) -> None:
    wiring.wait(nodes.publish(B))
    wiring.wait(nodes.publish(A))
    assert wiring.wait(nodes.nodes()) == [A, B]


def test_a_node_publishing_again_replaces_its_row(wiring, nodes) -> None:
    wiring.wait(nodes.publish(A))
    moved = NodeAddress("node-a", "10.0.0.9", {"http": "http://10.0.0.9:9000"}, A.started_at + 60)
    wiring.wait(nodes.publish(moved))
    assert wiring.wait(nodes.nodes()) == [moved]


def test_the_leader_is_the_unexpired_holder_of_the_lease(wiring, nodes) -> None:
    leases = SqlLeases(wiring.pool)
    wiring.wait(nodes.publish(A))
    wiring.wait(nodes.publish(B))
    assert wiring.wait(nodes.leader()) is None  # no lease yet
    claim = wiring.wait(leases.claim("node-b", 30.0))
    assert claim.won
    assert wiring.wait(nodes.leader()) == B
    wiring.wait(leases.release("node-b", claim.lease.epoch))  # expires at once
    assert wiring.wait(nodes.leader()) is None


def test_a_holder_that_never_published_has_no_address(wiring, nodes) -> None:
    wiring.wait(nodes.publish(A))
    assert wiring.wait(SqlLeases(wiring.pool).claim("node-z", 30.0)).won
    assert wiring.wait(nodes.leader()) is None
