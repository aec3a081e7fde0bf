"""The nodes of a cluster on the database (the `cluster_nodes` table, migration 0017): the
`NodeStore` port of dispatcher/service/nodes.py. Each call is its own short transaction on the
pool's threads, outside group commit: a node that does not route writes and reads here without
the router's lease."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from twisted.internet.defer import Deferred

from dispatcher.service.ports import NodeAddress

from . import tables as t
from .lease import ROUTER, thd_now
from .statements import upsert

N = t.cluster_nodes


def thd_publish(conn: sa.Connection, node: NodeAddress) -> None:
    conn.execute(upsert(conn.dialect.name, N), [{
        "name": node.name, "host": node.host, "endpoints": dict(node.endpoints),
        "started_at": node.started_at}])


def _address(row: Any) -> NodeAddress:
    return NodeAddress(row.name, row.host, dict(row.endpoints or {}), float(row.started_at))


def thd_nodes(conn: sa.Connection) -> list[NodeAddress]:
    return [_address(r) for r in conn.execute(sa.select(N).order_by(N.c.name))]


def thd_leader(conn: sa.Connection, lease: str = ROUTER) -> NodeAddress | None:
    """The node that holds the router's lease now (unexpired on the database's clock), with
    its address; None when no node holds it or the holder never published one."""
    leases = t.router_leases
    row = conn.execute(
        sa.select(N).join(leases, leases.c.holder == N.c.name)
        .where(leases.c.name == lease, leases.c.expires_at > thd_now(conn))).first()
    return None if row is None else _address(row)


class SqlNodes:
    def __init__(self, pool: Any) -> None:
        self._pool = pool

    def publish(self, node: NodeAddress) -> Deferred[None]:
        return self._pool.run(thd_publish, node)

    def nodes(self) -> Deferred[list[NodeAddress]]:
        return self._pool.run(thd_nodes)

    def leader(self) -> Deferred[NodeAddress | None]:
        return self._pool.run(thd_leader)
