"""The composition root: builds the store, the router and the services from a Config, and
starts and stops them. Constructor injection only; nothing else creates concrete classes.

`Storage` is the database side alone (for the admin commands); `App` is the whole dispatcher
(for `serve`, `demo`): on start it refuses a stale schema, rebuilds the router from the
database and re-arms every timer.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred

from dispatcher.domain.deadlines import BusinessCalendar
from dispatcher.domain.routing import Router
from dispatcher.service.assignment import Assignment
from dispatcher.service.intake import Intake
from dispatcher.service.queries import Queries
from dispatcher.service.sessions import Sessions
from dispatcher.storage import schema
from dispatcher.storage.commit import GroupCommit
from dispatcher.storage.engine import make_engine
from dispatcher.storage.pool import Pool
from dispatcher.storage.sql import SqlStore

from .config import Config

log = logging.getLogger(__name__)


class StaleSchema(Exception):
    def __init__(self, status: schema.SchemaStatus) -> None:
        super().__init__(
            f"the database schema is at {status.current or 'nothing'}, this version needs "
            f"{status.head}; {schema.STALE_SCHEMA_HINT}"
        )


class Storage:
    """Engine, thread pool, group commit and store for one database URL."""

    def __init__(self, url: str, reactor: Any) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.pool = Pool(self.engine, reactor)
        self.commit = GroupCommit(self.pool, reactor)
        self.store = SqlStore(self.pool, self.commit)

    def check(self) -> schema.SchemaStatus:
        return schema.check(self.url)

    def start(self) -> None:
        self.pool.start()

    async def stop(self) -> None:
        await self.commit.drain()
        self.pool.stop()
        self.engine.dispose()


class App:
    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self.reactor = reactor
        self.storage = Storage(config.database.url, reactor)
        self.store = self.storage.store
        self.router = Router(new_offer_id=lambda: uuid.uuid4().hex)
        self.assignment = Assignment(self.router, self.store, reactor)
        self.intake = Intake(self.assignment, self.store, reactor)
        self.sessions = Sessions(self.assignment)
        self.queries = Queries(self.router, self.store)

    def start(self) -> Deferred[None]:
        return ensureDeferred(self._start())

    async def _start(self) -> None:
        status = self.storage.check()
        if not status.ok:
            raise StaleSchema(status)
        self.storage.start()
        state = await self.store.load_state()
        self.intake.calendars = {
            c.name: BusinessCalendar.from_spec(c.name, c.timezone, c.hours, c.holidays)
            for c in state.calendars
        }
        await self.assignment.restore(state)
        log.info("router rebuilt: %d queues, %d agents, %d open tasks",
                 len(state.queues), len(state.agents), len(state.open_tasks))

    def stop(self) -> Deferred[None]:
        self.assignment.stop()
        return ensureDeferred(self.storage.stop())
