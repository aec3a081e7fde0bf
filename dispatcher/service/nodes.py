"""The nodes of a cluster and where to reach the one that routes.

Sits in `dispatcher.service` over a `NodeStore` port (storage/nodes.py on the database). Every
node publishes, when it starts, the host other nodes reach it by and the URL of each endpoint
it serves (`http`, `console`, `cti`, `sip`, `sip_tcp`); a node that does not route asks
`leader(kind)` for the leader's endpoint of that kind, to pass its agents' sockets and HTTP
requests on to it (dispatcher/tunnel.py, runtime/proxy.py, channels/phone/redirect.py). What
it promises:

- `leader(kind)` is the URL of that endpoint on the node holding the lease now, or None
  (no leader, or the leader serves no such endpoint); read from the database at most once per
  `cache_seconds`, and again at once after `forget()` (a connection to it failed, so it may
  have changed). A failing database gives None, logged once per outage.
- `hosts()`: the hosts of every node published, for the leader's connection limits (the
  nodes that pass agents on are not held to the per-address cap).
- Time is the reactor's (`IReactorTime`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.interfaces import IReactorTime

from dispatcher.guard import Outage

from .ports import NodeAddress, NodeStore

log = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
HTTP, CONSOLE, CTI = "http", "console", "cti"  # the kinds of endpoint
SIP, SIP_TCP = "sip", "sip_tcp"  # the SIP server's UDP and TCP ports


def url(scheme: str, host: str, port: int) -> str:
    """`scheme://host:port` with an IPv6 address in brackets."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{shown}:{port}"


class Nodes:
    def __init__(self, store: NodeStore, clock: IReactorTime, name: str, host: str,
                 cache_seconds: float = CACHE_SECONDS) -> None:
        self._store = store
        self._clock = clock
        self.name = name
        self.host = host
        self._cache_seconds = cache_seconds
        self._leader: NodeAddress | None = None
        self._read_at: float | None = None
        self._reading: Deferred[Any] | None = None
        self._outage = Outage(log)

    def publish(self, endpoints: Mapping[str, str]) -> Deferred[None]:
        """Say where this node's endpoints are (replacing what it said before)."""
        return self._store.publish(NodeAddress(self.name, self.host, dict(endpoints),
                                               self._clock.seconds()))

    def leader(self, kind: str) -> Deferred[str | None]:
        """The leader's endpoint of `kind` (module doc)."""
        return ensureDeferred(self._leader_endpoint(kind))

    async def _leader_endpoint(self, kind: str) -> str | None:
        now = self._clock.seconds()
        if self._read_at is None or now - self._read_at >= self._cache_seconds:
            if self._reading is None:
                self._reading = self._store.leader()
                try:
                    self._leader = await self._reading
                    self._outage.worked("reading the leader's address works again")
                except Exception as exc:  # noqa: BLE001 - the database away: no leader to pass to
                    self._leader = None
                    self._outage.failed("cannot read the leader's address: %s", exc)
                finally:
                    self._reading = None
                    self._read_at = self._clock.seconds()
            else:
                await _after(self._reading)
        leader = self._leader
        if leader is None or leader.name == self.name:
            return None
        return leader.endpoints.get(kind)

    def forget(self) -> None:
        """The leader's endpoint failed: read it again at the next call."""
        self._read_at = None

    async def hosts(self) -> set[str]:
        return {node.host for node in await self._store.nodes()}


def _after(reading: Deferred[Any]) -> Deferred[None]:
    """Wait for another caller's read without taking its result or its failure."""
    waiter: Deferred[None] = Deferred()
    reading.addBoth(lambda result: (waiter.callback(None), result)[1])
    return waiter
