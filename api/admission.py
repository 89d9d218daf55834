"""Admission: how many searches may be in flight, per shard and in all, to be answered in time.

A search that waits in a queue past its deadline costs a worker its time and its client the
whole deadline, and makes the queue deeper for the next one: under overload almost every search
then times out. So the front end keeps in flight only what the workers can finish with a queue
wait under a target (`RECOG_QUEUE_TARGET_MS`, a quarter of the deadline by default) and refuses
the rest at once with 503 SERVER_BUSY. By Little's law a worker accounts for the search it runs
plus `target / service time` queued behind it. A shard may hold its live owners' worth, the
deployment its live workers' worth: the same workers serve several shards, so the shards' limits
alone would admit a multiple of what the workers can do. `api.enqueue` enforces both limits
atomically in Redis, so every API process shares them.

Service time is a moving average of the worker time in this process's replies; owners and live
workers come from the heartbeats, re-read at most every `REFRESH_SECONDS`, by one request at a
time while the others use the previous reading.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared import heartbeats
from shared.errors import ServerBusy
from shared.heartbeats import owners_by_shard

REFRESH_SECONDS = 0.5
# Worker time assumed before the first reply, and the weight of each new reply in the average.
_INITIAL_JOB_SECONDS = 0.05
_SMOOTHING = 0.2
# Time a worker spends per job outside the search it reports (pop, reply): a floor on service time.
_JOB_OVERHEAD_SECONDS = 0.002
# Recent worker times kept for the p95 that paces the lost-job check (api.dispatch).
_RECENT = 200


@dataclass(frozen=True)
class Roster:
    """Live workers serving each shard, and live workers in all, at one reading of the heartbeats."""

    owners: tuple[int, ...]
    workers: int


class Admission:
    def __init__(self, redis: aioredis.Redis, shards: int, queue_target_seconds: float) -> None:
        self._redis = redis
        self._shards = shards
        self._target = queue_target_seconds
        self._roster: Roster | None = None
        self._read_at = -math.inf
        self._reading = asyncio.Lock()
        self._recent: collections.deque[float] = collections.deque(maxlen=_RECENT)
        self.job_seconds = _INITIAL_JOB_SECONDS
        self._replies = 0
        self._p95 = _INITIAL_JOB_SECONDS
        self._p95_at = -math.inf

    def observe(self, worker_ms: float) -> None:
        """Feeds one reply's worker time into the service-time estimates."""
        seconds = worker_ms / 1000
        self._recent.append(seconds)
        # The plain mean of the first replies, then a moving average: the initial guess is gone
        # after one reply instead of after dozens.
        self._replies += 1
        weight = max(_SMOOTHING, 1 / self._replies)
        self.job_seconds += weight * (seconds - self.job_seconds)

    def p95_seconds(self) -> float:
        """The 95th percentile of recent worker times (the initial guess before any reply), sorted
        again at most every REFRESH_SECONDS rather than on every search."""
        now = time.monotonic()
        if self._recent and now - self._p95_at >= REFRESH_SECONDS:
            ordered = sorted(self._recent)
            self._p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
            self._p95_at = now
        return self._p95

    async def limits(self, shard: int, remaining_seconds: float) -> tuple[int, int]:
        """(searches in flight allowed for `shard`, for the whole deployment) for a search that
        must be answered within `remaining_seconds`; ServerBusy if no live worker serves the shard.

        A worker's share is the search it runs plus what it finishes within the queue-wait target,
        and never more than it finishes before this search's deadline."""
        roster = await self._current()
        owners = roster.owners[shard]
        if owners == 0:
            raise ServerBusy("No worker serves this collection right now; retry shortly.", retry_after=2)
        service = self.job_seconds + _JOB_OVERHEAD_SECONDS
        per_worker = min(1 + self._target / service, remaining_seconds / service)
        return math.floor(owners * per_worker), math.floor(roster.workers * per_worker)

    async def live_workers(self) -> int:
        """Live workers that serve shards (as of the last reading, at most `REFRESH_SECONDS` old)."""
        return (await self._current()).workers

    async def _current(self) -> Roster:
        stale = time.monotonic() - self._read_at >= REFRESH_SECONDS
        if self._roster is not None and (not stale or self._reading.locked()):
            return self._roster
        async with self._reading:
            if self._roster is None or time.monotonic() - self._read_at >= REFRESH_SECONDS:
                now = time.time()
                beats = await heartbeats.read_async(self._redis, now)
                by_shard = owners_by_shard(beats, self._shards, now)
                self._roster = Roster(
                    owners=tuple(len(by_shard[s]) for s in range(self._shards)),
                    workers=sum(1 for beat in beats if beat.is_live(now) and beat.shards),
                )
                self._read_at = time.monotonic()
            return self._roster
