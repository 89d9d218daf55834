"""Typed reading of redis-py replies.

redis-py types every reply as `bytes | str` (it cannot know whether `decode_responses` is set) and
some as `Awaitable[...] | ...` (the same class serves sync and async clients). This service never
sets `decode_responses`, so replies are bytes; these helpers say so once, and fail loudly if a
reply is not what the caller expects instead of letting a `str` or `None` travel on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def text(value: Any) -> str:
    """A bulk-string reply as text."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string reply from Redis, got {type(value).__name__}")


def optional_text(value: Any) -> str | None:
    """A bulk-string reply that may be nil."""
    return None if value is None else text(value)


def raw(value: Any) -> bytes:
    """A bulk-string reply as bytes (msgpack payloads, job data)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"expected a string reply from Redis, got {type(value).__name__}")


def optional_raw(value: Any) -> bytes | None:
    return None if value is None else raw(value)


def raw_hash(value: Any) -> dict[bytes, bytes]:
    """An HGETALL reply (empty when the key does not exist)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a hash reply from Redis, got {type(value).__name__}")
    return {raw(k): raw(v) for k, v in value.items()}


def scored(value: Any) -> list[tuple[str, float]]:
    """A Z*RANGE* WITHSCORES reply as (member, score) pairs."""
    return [(text(member), float(score)) for member, score in value]
