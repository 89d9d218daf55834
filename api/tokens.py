"""Token -> collection lookups for the search path, cached briefly in the process.

Every search needs this lookup; a short cache keeps Redis out of most requests while a deleted
token still stops working within `token_cache_seconds` (the contract allows 1 s).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from shared.catalog import token_collection

_MAX_ENTRIES = 100_000


class TokenCache:
    def __init__(self, redis: aioredis.Redis, ttl_seconds: float) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, str | None]] = {}

    async def collection_of(self, token: str) -> str | None:
        """The token's collection id, or None when the token does not exist (or was revoked)."""
        now = time.monotonic()
        cached = self._entries.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        collection = await token_collection(self._redis, token)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[token] = (now + self._ttl, collection)
        return collection
