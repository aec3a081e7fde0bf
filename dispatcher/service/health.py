"""Readiness for `/healthz` (load balancers, orchestrators): how big the routing state is and
whether the database answers, without handing an edge the router or the store.

Sits in the service layer over the domain's `Router` (read only: counts), the node's role in
the cluster (leadership.py `status`) and a `ping()` given by the composition root (a round trip to the database, a Deferred firing with its seconds).
No data about customers or agents, so the page that serves it needs no token.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred

from dispatcher.domain.routing import Router


class Readiness:
    def __init__(self, router: Router, ping: Callable[[], Deferred[float]] | None = None,
                 role: Callable[[], dict[str, Any]] | None = None) -> None:
        self._router = router
        self._ping = ping
        self._role = role

    def figures(self) -> dict[str, Any]:
        """The routing state's size: queues, agents, open tasks; with several nodes, this
        node's part (`cluster`: role, epoch, the leader, the lease's age; leadership.py)."""
        figures: dict[str, Any] = {"queues": len(self._router.queues),
                                   "agents": len(self._router.agents),
                                   "open_tasks": len(self._router.tasks)}
        if self._role is not None:
            figures["cluster"] = self._role()
        return figures

    @property
    def probes_database(self) -> bool:
        return self._ping is not None

    def ping(self) -> Deferred[float]:
        """A round trip to the database; fires with its duration in seconds."""
        if self._ping is None:
            raise RuntimeError("no database probe here")
        return self._ping()
