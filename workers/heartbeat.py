"""A worker's heartbeat in Redis: which shards it serves, how many images it holds, jobs done.

The front end's `/readyz` and `/metrics` read these to tell whether every shard has a live worker.
"""

from __future__ import annotations

import logging
import os
import resource
import socket
import threading
import time

import redis
from redis.typing import EncodableT, FieldT

from shared import heartbeats, keys
from workers.jobs import WorkerContext

log = logging.getLogger("recog.worker.heartbeat")

INTERVAL_SECONDS = 1.0
# The hash outlives a few missed beats; readers judge liveness by the zset score.
_KEY_TTL_SECONDS = 30
# Names of workers silent this long are dropped from the zset.
_FORGET_SECONDS = 3600


def beat(context: WorkerContext) -> None:
    now = time.time()
    serving = context.manager.listening
    images = context.state.images_per_shard()
    fields: dict[FieldT, EncodableT] = {
        "name": context.name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "shards": ",".join(str(s) for s in sorted(serving)),
        "settled": int(context.manager.settled),
        "jobs_done": context.done,
        "jobs_dropped": context.dropped,
        "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "beat_at": now,
        **{f"images:{shard}": images.get(shard, 0) for shard in serving},
        **{f"load_seconds:{shard}": round(context.manager.load_seconds.get(shard, 0.0), 3) for shard in serving},
    }
    # MULTI, so a reader never sees the hash between the delete (dropping released shards'
    # fields) and the write.
    with context.connection.pipeline(transaction=True) as pipe:
        pipe.delete(keys.worker(context.name))
        pipe.hset(keys.worker(context.name), mapping=fields)
        pipe.expire(keys.worker(context.name), _KEY_TTL_SECONDS)
        pipe.zadd(keys.WORKERS, {context.name: now})
        pipe.zremrangebyscore(keys.WORKERS, "-inf", now - _FORGET_SECONDS)
        pipe.execute()


def healthy(connection: redis.Redis, host: str) -> bool:
    """Whether a worker of this host (a container's hostname is its id) beats and serves every
    shard it should: what the compose healthcheck asks."""
    beats = heartbeats.read(connection, time.time())
    return any(beat.settled for beat in beats if beat.name.startswith(f"recog-{host}-"))


def forget(context: WorkerContext) -> None:
    """Withdraws the heartbeat at a clean stop, so readiness changes at once, not after a timeout."""
    with context.connection.pipeline(transaction=False) as pipe:
        pipe.delete(keys.worker(context.name))
        pipe.zrem(keys.WORKERS, context.name)
        pipe.execute()


def run(context: WorkerContext, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            beat(context)
        except redis.RedisError as exc:
            log.warning("heartbeat failed: %s", exc)
        stop.wait(INTERVAL_SECONDS)
