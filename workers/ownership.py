"""Keeps the set of shards this worker serves in line with the live workers' rendezvous hashing.

Every second it reads the heartbeats, works out the shards this worker should own, loads the index
of each new one *before* listening on its queue, and lets go of a shard it no longer owns only once
every new owner reports serving it, so a shard is never left without a worker while ownership
moves. Letting go takes two steps: stop listening, then drop the index once the worker's pop in
progress and the job it brought have moved past that shard's queue (`in_use`), so a job popped
just before the queue change still finds its index. With a fixed `RECOG_WORKER_SHARDS`
list it just loads that list.
"""

from __future__ import annotations

import logging
import threading
import time

import redis

from shared import heartbeats
from shared.ownership import owners, shards_of
from workers.shard_state import ShardState

log = logging.getLogger("recog.worker.ownership")

INTERVAL_SECONDS = 1.0


class ShardManager:
    def __init__(
        self,
        connection: redis.Redis,
        state: ShardState,
        name: str,
        total: int,
        replicas: int,
        fixed: frozenset[int] | None,
    ) -> None:
        self._redis = connection
        self._state = state
        self._name = name
        self._total = total
        self._replicas = replicas
        self._fixed = fixed
        self._listening: frozenset[int] = frozenset()
        self.load_seconds: dict[int, float] = {}  # how long each served shard's index took to load
        self.settled = False  # serving every shard it should (what the container healthcheck asks)
        # The shards whose queues the RQ worker's current pop (and the job it pops) came from: set
        # by the worker when it changes queues. An index is dropped only once it is not among them.
        self.in_use: frozenset[int] = frozenset()

    @property
    def listening(self) -> frozenset[int]:
        """The shards whose queues this worker takes jobs from (and reports serving)."""
        return self._listening

    def target(self, live: dict[str, frozenset[int]]) -> frozenset[int]:
        if self._fixed is not None:
            return self._fixed
        return shards_of(self._name, live, self._total, self._replicas)

    def step(self) -> None:
        """One reconciliation: load what this worker should newly own, release what it may."""
        live = heartbeats.live_serving(self._redis)
        target = self.target(live)
        loaded = self._state.shards
        for shard in sorted(loaded - self._listening - target - self.in_use):
            self._state.unload_shard(shard)  # no longer listened to, nor a job of it running
            self.load_seconds.pop(shard, None)
        for shard in sorted(target - loaded):
            started = time.perf_counter()
            images = self._state.load_shard(shard)
            self.load_seconds[shard] = time.perf_counter() - started
            log.info("now serving shard %d (%d images loaded in %.2f s)", shard, images, self.load_seconds[shard])
        released = set()
        for shard in sorted(self._listening - target):
            heirs = [w for w in owners(shard, live.keys() | {self._name}, self._replicas) if w != self._name]
            if heirs and all(shard in live.get(w, frozenset()) for w in heirs):
                released.add(shard)
                log.info("releasing shard %d to %s", shard, ", ".join(heirs))
        self._listening = (self._listening | target) - released
        self.settled = target <= self._listening

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.step()
            except redis.RedisError as exc:
                log.warning("shard ownership check failed: %s", exc)
            stop.wait(INTERVAL_SECONDS)
