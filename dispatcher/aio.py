"""The only bridge between Twisted's Deferreds and asyncio (websockets, redis.asyncio).

The process runs Twisted on the asyncio reactor, so both share one event loop. Cross here, once
per batch of work rather than per message, and keep a strong reference to every background task
(asyncio keeps only weak ones: an unreferenced task can vanish mid-flight).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from twisted.internet.defer import Deferred

T = TypeVar("T")
log = logging.getLogger(__name__)


def to_deferred(coro: Coroutine[Any, Any, T]) -> Deferred[T]:
    """Run an asyncio coroutine; a Deferred that fires with its result."""
    return Deferred.fromFuture(asyncio.ensure_future(coro))


def to_future(d: Deferred[T]) -> asyncio.Future[T]:
    """Await a Deferred from asyncio code."""
    return d.asFuture(asyncio.get_event_loop())


class Background:
    """Holds the asyncio tasks started in the background until they end; logs their failures."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def start(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        if name:
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def __len__(self) -> int:
        return len(self._tasks)
