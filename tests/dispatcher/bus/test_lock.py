"""The leader lock against the real Redis server (SWITCHBOARD_TEST_REDIS_URL, database 15)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from dispatcher.bus.lock import LeaderLock
from tests.support import REDIS_URL, missing


@pytest.fixture
def redis_client():
    from redis.asyncio import Redis

    async def ping():
        client = Redis.from_url(REDIS_URL)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except Exception as exc:  # noqa: BLE001 - any failure means no usable server
        missing(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return lambda: Redis.from_url(REDIS_URL)


def run(coro):
    return asyncio.run(coro)


def test_one_holder_at_a_time(redis_client):
    async def scenario():
        client = redis_client()
        name = uuid.uuid4().hex
        first, second = LeaderLock(client, name), LeaderLock(client, name)
        try:
            assert await first.acquire()
            assert not await second.acquire()
            assert await first.renew()
            assert not await second.renew()
            assert not await second.release()  # not ours: the key stays
            assert await first.holder() == first.token
            assert await first.release()
            assert await second.acquire()
            assert await second.holder() == second.token
        finally:
            await second.release()
            await client.aclose()

    run(scenario())


def test_a_lock_not_renewed_expires(redis_client):
    async def scenario():
        client = redis_client()
        name = uuid.uuid4().hex
        first, second = LeaderLock(client, name, ttl=0.2), LeaderLock(client, name, ttl=0.2)
        try:
            assert await first.acquire()
            await asyncio.sleep(0.35)
            assert await second.acquire()
            assert not await first.renew()  # leadership lost: the holder must stop routing
        finally:
            await second.release()
            await client.aclose()

    run(scenario())
