"""Backpressure: refuse at once the searches a shard cannot answer before their deadline.

Queueing a job that will time out only makes the queue deeper for the next request, so the front
end compares each shard's queue depth with what its live workers can drain in one deadline and
answers 503 SERVER_BUSY (with Retry-After) when the queue is already too deep, or when no live
worker serves the shard at all. The depths and worker counts come from one pipelined Redis read,
refreshed at most every `_REFRESH_SECONDS` and shared by all requests of this process.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from api.metrics import live_workers
from shared import queues
from shared.errors import ServerBusy

_REFRESH_SECONDS = 0.25
# Worker time assumed before the first reply, and the weight of each new reply in the average.
_INITIAL_JOB_SECONDS = 0.05
_SMOOTHING = 0.05
_MAX_RETRY_AFTER = 30


@dataclass(frozen=True)
class ShardLoad:
    depth: int
    workers: int


class Admission:
    def __init__(self, redis: aioredis.Redis, shards: int, deadline_seconds: float) -> None:
        self._redis = redis
        self._shards = shards
        self._deadline = deadline_seconds
        self._loads: list[ShardLoad] = []
        self._read_at = -math.inf
        self.job_seconds = _INITIAL_JOB_SECONDS

    def observe(self, worker_ms: float) -> None:
        """Feeds one reply's worker time into the running average used to estimate drain speed."""
        self.job_seconds += _SMOOTHING * (worker_ms / 1000 - self.job_seconds)

    async def check(self, shard: int) -> None:
        load = (await self._snapshot())[shard]
        if load.workers == 0:
            raise ServerBusy("No worker serves this collection right now; retry shortly.", retry_after=2)
        drain_seconds = load.depth * self.job_seconds / load.workers
        if drain_seconds >= self._deadline:
            retry = min(_MAX_RETRY_AFTER, max(1, math.ceil(drain_seconds - self._deadline)))
            raise ServerBusy(retry_after=retry)

    async def _snapshot(self) -> list[ShardLoad]:
        now = time.monotonic()
        if now - self._read_at < _REFRESH_SECONDS:
            return self._loads
        async with self._redis.pipeline(transaction=False) as pipe:
            queues.stage_depths(pipe, self._shards)
            depths = await pipe.execute()
        workers = await live_workers(self._redis, self._shards)
        self._loads = [ShardLoad(depth=d, workers=len(workers[s])) for s, d in enumerate(depths)]
        self._read_at = now
        return self._loads
