"""A node's side of the cluster's address book (service/nodes.py): what it publishes, and the
leader's view of the other nodes.

Sits in the runtime, used by serve.py. It promises:
- `publish(app, http_port, edges)`: this node's HTTP URL and the socket endpoints its edges
  serve (`Edge.endpoints()`: console, cti, sip, sip_tcp), on the host the others reach it by
  (`[cluster] advertise`, else `[server] host`, else the host's name for a wildcard address).
- `NodeHosts`: on the leader, every `every` seconds, the addresses of the published nodes go
  into the connection gate's `nodes` (net.Gate): a standby passing hundreds of agents on is
  not held to the per-address cap. Names are resolved off the reactor; a failure keeps the
  last good set and is logged once per outage.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable
from typing import Any

from sqlalchemy.exc import SQLAlchemyError
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread

from dispatcher import net
from dispatcher.guard import Outage
from dispatcher.service.nodes import HTTP, SIP, SIP_TCP, Nodes, url

from .config import Config

log = logging.getLogger(__name__)

NODE_HOSTS_SECONDS = 10.0
WILDCARDS = {"", "0.0.0.0", "::", "[::]"}
SOCKET_SCHEME = "ws"
SCHEMES = {SIP: "sip", SIP_TCP: "sip"}  # every other kind is a WebSocket


def advertised_host(config: Config) -> str:
    """The host other nodes and browsers reach this node by."""
    if config.cluster.advertise:
        return config.cluster.advertise
    if config.server.host not in WILDCARDS:
        return config.server.host
    return socket.getfqdn()


def publish(nodes: Nodes, http_port: int, edges: Iterable[Any]) -> Deferred[None]:
    """Publish this node's endpoints: `http`, and each socket endpoint of `edges`."""
    endpoints = {HTTP: url("http", nodes.host, http_port)}
    for edge in edges:
        for kind, port in (getattr(edge, "endpoints", dict)() or {}).items():
            endpoints[kind] = url(SCHEMES.get(kind, SOCKET_SCHEME), nodes.host, port)
    return nodes.publish(endpoints)


def resolve(hosts: Iterable[str]) -> frozenset[str]:
    """Every address of every host (blocking: run in a thread)."""
    found: set[str] = set()
    for host in hosts:
        try:
            found.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))
        except OSError:
            continue
    return frozenset(found)


class NodeHosts:
    def __init__(self, nodes: Nodes, gate: net.Gate, reactor: Any,
                 every: float = NODE_HOSTS_SECONDS) -> None:
        self._nodes = nodes
        self._gate = gate
        self._loop = LoopingCall(lambda: ensureDeferred(self._refresh()))
        self._loop.clock = reactor
        self._every = every
        self._outage = Outage(log)

    def start(self) -> None:
        self._loop.start(self._every, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    async def _refresh(self) -> None:
        try:
            hosts = await self._nodes.hosts()
            addresses = await deferToThread(resolve, hosts)
        except SQLAlchemyError as exc:
            self._outage.failed("cannot read the cluster's nodes: %s", exc)
            return
        self._outage.worked("reading the cluster's nodes works again")
        if addresses != self._gate.nodes:
            log.info("cluster nodes' addresses (no per-address cap): %s",
                     ", ".join(sorted(addresses)) or "none")
        self._gate.nodes = addresses
