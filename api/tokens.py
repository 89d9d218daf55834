"""Token checks for the search path: which collection a token opens, and its rate limit.

Every search needs the lookup; a short cache keeps Redis out of most requests while a deleted
token still stops working within `token_cache_seconds` (the contract allows 1 s). The rate limit
(our own, per token) is counted in Redis so that it holds across every API process.
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from shared import keys
from shared.catalog import token_grant
from shared.errors import QuotaExceeded, TokenInvalid

_MAX_ENTRIES = 100_000


class TokenCache:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: float) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, tuple[str, int | None] | None]] = {}

    async def admit(self, token: str) -> str:
        """The token's collection id; TokenInvalid if it does not exist, QuotaExceeded over its rate."""
        grant = await self._grant(token)
        if grant is None:
            raise TokenInvalid()
        collection, rate_limit = grant
        if rate_limit is not None:
            await self._count(token, rate_limit)
        return collection

    async def _grant(self, token: str) -> tuple[str, int | None] | None:
        now = time.monotonic()
        cached = self._entries.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        grant = await token_grant(self._redis, token)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = (now + self._ttl, grant)
        return grant

    async def _count(self, token: str, rate_limit: int) -> None:
        """A fixed one-second window: simple, shared by all processes, one round trip."""
        key = keys.rate(token, int(time.time()))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, 2)
            used, _ = await pipe.execute()
        if used > rate_limit:
            raise QuotaExceeded(
                f"This token may make {rate_limit} searches per second; retry in a second.", retry_after=1
            )
