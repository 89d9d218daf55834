"""Management API keys, in Redis: made, checked, listed and revoked.

Only a key's SHA-256 digest is kept in the `apikeys` set, so a copy of Redis does not hand out
keys. Beside it, the `apikey-info` hash keeps, per digest, what lets a person tell keys apart without
seeing them: the key's first `PREFIX_CHARS` characters, when it was made and a label. The API checks
the set on every request (no cache), so a revoked key is refused from the next request on.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import redis.asyncio as aioredis

from shared import keys

PREFIX_CHARS = 8  # 32 of a key's 160 bits: enough to pick it out of a list, far too few to guess the rest
ADMIN_LABEL = "admin (RECOG_ADMIN_API_KEY)"


class KeyNotFound(LookupError):
    """No key, or more than one, matches what was given to revoke; the message says which."""


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """A key as a person may see it. Keys made before the info was kept show only their digest."""

    digest: str
    prefix: str = ""
    created_at: str = ""  # ISO-8601 UTC
    label: str = ""


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _str(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _info(key: str, label: str) -> str:
    created = datetime.now(UTC).isoformat(timespec="milliseconds")  # as the catalogue's objects
    return json.dumps({"prefix": key[:PREFIX_CHARS], "created_at": created, "label": label})


async def create(redis: aioredis.Redis, label: str = "") -> str:
    """A new key; only its digest is stored, so print it now or lose it."""
    key = secrets.token_hex(20)
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.APIKEYS, digest(key))
        pipe.hset(keys.APIKEY_INFO, digest(key), _info(key, label))
        await pipe.execute()
    return key


async def ensure_admin_key(redis: aioredis.Redis, key: str) -> None:
    """Makes `key` (RECOG_ADMIN_API_KEY) valid; called at each start, it keeps the first start's time."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.APIKEYS, digest(key))
        pipe.hsetnx(keys.APIKEY_INFO, digest(key), _info(key, ADMIN_LABEL))
        await pipe.execute()


async def check(redis: aioredis.Redis, key: str) -> bool:
    return bool(key) and bool(await redis.sismember(keys.APIKEYS, digest(key)))


async def listing(redis: aioredis.Redis) -> list[KeyInfo]:
    """Every valid key, oldest first (keys without info last)."""
    digests = sorted(_str(raw) for raw in await redis.smembers(keys.APIKEYS))
    found = await redis.hmget(keys.APIKEY_INFO, digests) if digests else []
    infos = [
        KeyInfo(digest=d, **json.loads(raw)) if raw else KeyInfo(digest=d)
        for d, raw in zip(digests, found, strict=True)
    ]
    return sorted(infos, key=lambda info: (not info.created_at, info.created_at, info.digest))


async def revoke(redis: aioredis.Redis, key_or_prefix: str) -> KeyInfo:
    """Revokes the key given in full, or the one key whose listed prefix it starts with."""
    infos = await listing(redis)
    full = digest(key_or_prefix)
    matches = [info for info in infos if info.digest == full]
    if not matches and len(key_or_prefix) >= PREFIX_CHARS:
        matches = [info for info in infos if info.prefix and key_or_prefix.startswith(info.prefix)]
    if len(matches) != 1:
        why = "no valid key" if not matches else f"{len(matches)} keys"
        raise KeyNotFound(f"{why} matches {key_or_prefix[:PREFIX_CHARS]}...: give the whole key or a listed prefix")
    async with redis.pipeline(transaction=True) as pipe:
        pipe.srem(keys.APIKEYS, matches[0].digest)
        pipe.hdel(keys.APIKEY_INFO, matches[0].digest)
        await pipe.execute()
    return matches[0]
