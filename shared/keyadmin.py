"""`recog apikey create|list|revoke`: the command side of `shared.apikeys`, straight on Redis.

Keys live in Redis, not behind the API: whoever can reach the Redis can make keys, and a lost or
leaked key can still be revoked when no valid key is left to call the API with.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared import apikeys
from shared.failures import CommandFailed
from shared.tables import table

T = TypeVar("T")
REDIS_TIMEOUT_SECONDS = 5.0


def _on_redis(redis_url: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    async def run() -> T:
        async with aioredis.Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_SECONDS, socket_connect_timeout=REDIS_TIMEOUT_SECONDS
        ) as redis:
            return await call(redis)

    try:
        return asyncio.run(run())
    except RedisError as exc:
        raise CommandFailed(f"Redis failed: {exc}") from None


def create(redis_url: str, label: str, out: TextIO = sys.stdout) -> int:
    """Prints the new key alone on its line, for `KEY=$(recog apikey create)`."""
    print(_on_redis(redis_url, lambda redis: apikeys.create(redis, label)), file=out)
    return 0


def list_keys(redis_url: str, out: TextIO = sys.stdout) -> int:
    infos = _on_redis(redis_url, apikeys.listing)
    rows = [
        [f"{info.prefix}..." if info.prefix else "(made before keys were listed)", info.created_at or "-", info.label]
        for info in infos
    ]
    print(table(["key", "created", "label"], rows, "<<<") if rows else "No API keys.", file=out)
    return 0


def revoke(redis_url: str, key_or_prefix: str, out: TextIO = sys.stdout) -> int:
    try:
        info = _on_redis(redis_url, lambda redis: apikeys.revoke(redis, key_or_prefix))
    except apikeys.KeyNotFound as exc:
        print(f"recog: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {info.prefix or key_or_prefix[: apikeys.PREFIX_CHARS]}...", file=out)
    if info.label == apikeys.ADMIN_LABEL:
        print(
            "recog: this was the admin key: the API makes it valid again when it next starts, "
            "unless RECOG_ADMIN_API_KEY (or, for `recog up`, RECOG_DATA_DIR/admin-api-key) is changed",
            file=sys.stderr,
        )
    return 0
