"""The leader lock: one router per deployment.

The router keeps routing state in memory; two routers on one database would offer the same task
twice. `LeaderLock` holds a Redis key with a random token and a time-to-live: `acquire` sets it
only if absent, `renew` extends it only while the token is still ours, `release` deletes it only
if ours (both atomic, by Lua script). A holder that cannot renew before the TTL runs out has lost
leadership and must stop routing.
"""

from __future__ import annotations

import secrets

from redis.asyncio import Redis

from . import keys

DEFAULT_TTL_SECONDS = 10.0

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    def __init__(self, client: Redis, name: str, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        self.client = client
        self.key = keys.leader(name)
        self.ttl_ms = int(ttl * 1000)
        self.token = secrets.token_hex(16)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    async def acquire(self) -> bool:
        return bool(await self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))

    async def renew(self) -> bool:
        return bool(await self._renew(keys=[self.key], args=[self.token, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.token]))

    async def holder(self) -> str | None:
        value = await self.client.get(self.key)
        return value.decode() if isinstance(value, bytes) else value
