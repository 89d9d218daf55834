"""Searches of a collection in parts (`shared.parts`): how many parts it has, and one answer from
the parts' answers.

The part count is read from the collection's hash and trusted for `PARTS_SECONDS`, so a search of a
collection that never grew past one part costs one Redis read per collection and half second, not
one per search; a part opened meanwhile is searched from the next read on (new parts start empty).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import keys
from shared.codec import Hit, SearchReply

PARTS_SECONDS = 0.5


class PartCounts:
    """How many parts each collection has, as this process last read it."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._read: dict[str, tuple[int, float]] = {}

    async def of(self, collection: str) -> int:
        cached = self._read.get(collection)
        now = time.monotonic()
        if cached is not None and now - cached[1] < PARTS_SECONDS:
            return cached[0]
        raw = await self._redis.hget(keys.collection(collection), "parts")
        count = int(json.loads(raw)) if raw else 1
        if len(self._read) > 100_000:  # collections come and go: forget them all now and then
            self._read.clear()
        self._read[collection] = (count, now)
        return count


@dataclass(frozen=True)
class Merged:
    reply: SearchReply
    round_trip_ms: float


def merge(replies: list[SearchReply], round_trips_ms: list[float], max_results: int) -> Merged:
    """One reply from the parts' replies: each item's best hit, best first, at most `max_results`
    (an item's images may lie in several parts); the slowest part's times."""
    best: dict[str, Hit] = {}
    for hit in sorted((h for r in replies for h in r.hits), key=lambda h: h.score, reverse=True):
        best.setdefault(hit.item, hit)
    reply = SearchReply(
        job_id=replies[0].job_id,
        hits=list(best.values())[:max_results],
        timings={"total": max(r.timings.get("total", 0.0) for r in replies)},
        worker=",".join(r.worker for r in replies),
    )
    return Merged(reply, max(round_trips_ms))
