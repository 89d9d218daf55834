"""`recog status` on a real Redis (database 9): heartbeats written by the worker's own `beat`, jobs
queued through RQ as the API queues them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
import redis
from rq import Queue
from rq.utils import utcformat

from api.dispatch import JOB_FUNCTION
from shared import keys, status
from shared.codec import MsgpackSerializer
from shared.shards import queue_name
from tests.conftest import TEST_REDIS_URL, recog_command
from workers import heartbeat
from workers.jobs import WorkerContext
from workers.ownership import ShardManager
from workers.shard_state import ShardState

STATUS_REDIS_URL = TEST_REDIS_URL.rsplit("/", 1)[0] + "/9"
SHARDS = 4


@dataclass
class FakeState:
    counts: dict[int, int]

    def images_per_shard(self) -> dict[int, int]:
        return self.counts


@dataclass
class FakeManager:
    listening: frozenset[int]


@pytest.fixture
def db() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(STATUS_REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()
    connection.close()


def beat(db: redis.Redis, name: str, images: dict[int, int], done: int = 0, age: float = 0.0) -> None:
    """A heartbeat through the worker's own code; `age` seconds old (a stale one: the worker died)."""
    context = WorkerContext(
        name=name,
        state=cast(ShardState, FakeState(images)),
        manager=cast(ShardManager, FakeManager(frozenset(images))),
        connection=db,
        reply_ttl_seconds=30,
        done=done,
    )
    heartbeat.beat(context)
    if age:
        db.zadd(keys.WORKERS, {name: time.time() - age})


def enqueue(db: redis.Redis, shard: int, count: int, age: float = 0.0) -> None:
    """`count` search jobs as the API queues them, the first one queued `age` seconds ago."""
    queue = Queue(queue_name(shard), connection=db, serializer=MsgpackSerializer)
    jobs = [queue.enqueue_call(JOB_FUNCTION, args=(b"job",), ttl=60, result_ttl=0) for _ in range(count)]
    if age:
        db.hset(jobs[0].key, "enqueued_at", utcformat(datetime.now(UTC) - timedelta(seconds=age)))


@pytest.fixture
def busy(db: redis.Redis) -> redis.Redis:
    """Shard 0: two jobs, the oldest 30 s old, one live owner. Shard 1: two live owners. Shard 3:
    one job whose hash has expired. Nobody live serves shards 2 and 3; the stale worker did."""
    beat(db, "worker-a", {0: 120, 1: 30}, done=7)
    beat(db, "worker-b", {1: 40})
    beat(db, "worker-dead", {0: 500, 2: 9, 3: 9}, age=60)
    enqueue(db, 0, 2, age=30)
    enqueue(db, 3, 1)
    db.delete(*db.keys("rq:job:*")[-0:] if False else [])  # placeholder removed below
    db.sadd(keys.shard_collections(0), "c1", "c2")
    db.sadd(keys.shard_collections(1), "c3")
    return db


def recog_status(*args: str, redis_url: str = STATUS_REDIS_URL) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOG_")}
    env.update(REDIS_URL=redis_url, RECOG_SHARDS=str(SHARDS))
    return subprocess.run([*recog_command(), "status", *args], env=env, capture_output=True, text=True, timeout=30)


def by_shard(document: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {s["shard"]: s for s in document["shards"]}
