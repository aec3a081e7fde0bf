"""runtime/peers.py: what a node publishes about itself, and the leader's list of the nodes'
addresses in the connection gate (no per-address cap for them, their X-Forwarded-For
believed)."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.exc import OperationalError
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock

from dispatcher import net
from dispatcher.runtime import peers
from dispatcher.runtime.config import ClusterConfig, Config, ServerConfig
from dispatcher.service.nodes import Nodes


class Store:
    def __init__(self) -> None:
        self.published: list = []
        self.hosts = ["localhost"]
        self.failing = False

    def publish(self, node):
        self.published.append(node)
        return succeed(None)

    def nodes(self):
        if self.failing:
            return fail(OperationalError("SELECT", {}, Exception("database away")))
        return succeed([dataclasses.make_dataclass("N", ["host"])(h) for h in self.hosts])

    def leader(self):
        return succeed(None)


def config(host: str = "127.0.0.1", advertise: str = "") -> Config:
    return dataclasses.replace(Config(), server=dataclasses.replace(ServerConfig(), host=host),
                               cluster=dataclasses.replace(ClusterConfig(), advertise=advertise))


def test_the_advertised_host_is_the_setting_else_the_listening_address_else_the_hosts_name():
    assert peers.advertised_host(config(advertise="sb-1.internal")) == "sb-1.internal"
    assert peers.advertised_host(config(host="10.0.0.11")) == "10.0.0.11"
    assert peers.advertised_host(config(host="0.0.0.0")) not in peers.WILDCARDS


def test_a_node_publishes_its_http_and_each_edges_socket_endpoint():
    class Console:
        def endpoints(self):
            return {"console": 8081}

    class Phone:
        def endpoints(self):
            return {"cti": 8090, "sip": 5060, "sip_tcp": 5061}

    class Mail:  # no endpoints() at all: nothing to publish
        pass

    store = Store()
    nodes = Nodes(store, Clock(), "sb-1", "fe80::11")
    peers.publish(nodes, 8080, [Console(), Mail(), Phone()])
    [node] = store.published
    assert node.endpoints == {"http": "http://[fe80::11]:8080",
                              "console": "ws://[fe80::11]:8081", "cti": "ws://[fe80::11]:8090",
                              "sip": "sip://[fe80::11]:5060", "sip_tcp": "sip://[fe80::11]:5061"}


def test_the_leader_keeps_the_nodes_addresses_in_the_gate(monkeypatch):
    monkeypatch.setattr(peers, "deferToThread", lambda f, *a: succeed(f(*a)))
    store, clock, gate = Store(), Clock(), net.Gate(100, 2)
    hosts = peers.NodeHosts(Nodes(store, clock, "sb-1", "127.0.0.1"), gate, clock, every=10.0)
    hosts.start()
    assert "127.0.0.1" in gate.nodes  # localhost, resolved
    store.failing = True
    clock.advance(10.0)
    assert "127.0.0.1" in gate.nodes  # the last good list stays through an outage
    store.failing, store.hosts = False, ["192.0.2.7", "no-such-host.invalid"]
    clock.advance(10.0)
    assert gate.nodes == frozenset({"192.0.2.7"})
    hosts.stop()


@pytest.mark.parametrize("hosts", [[], ["no-such-host.invalid"]])
def test_names_that_do_not_resolve_give_no_address(hosts):
    assert peers.resolve(hosts) == frozenset()
