"""The worker process: preload the served shards' indexes, then run RQ jobs in-process.

RQ's default worker forks per job; with an index of gigabytes that costs 25-115 ms a job, while
`SimpleWorker` runs the job in this process against the index already in memory (~2 ms). Two
threads run beside it: one applies index changes from the shards' event streams, one heartbeats.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import redis
from rq import Queue, SimpleWorker

from shared.codec import MsgpackSerializer
from shared.config import Settings
from shared.shards import queue_name
from workers import heartbeat, jobs
from workers.shard_state import ShardState

log = logging.getLogger("recog.worker")


def main(settings: Settings | None = None) -> int:
    settings = settings or Settings.from_env()
    connection = redis.Redis.from_url(settings.redis_url)
    shards = settings.worker_shards
    name = f"recog-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"

    started = time.perf_counter()
    state = ShardState(connection, shards, settings.shards)
    images = state.load()
    log.info(
        "worker %s loaded %d images of shards %s in %.2f s",
        name, images, ",".join(map(str, sorted(shards))), time.perf_counter() - started,
    )
    context = jobs.WorkerContext(name=name, state=state, connection=connection, reply_ttl_seconds=settings.reply_ttl_seconds)
    jobs.CONTEXT = context

    stop = threading.Event()
    threads = [
        threading.Thread(target=state.follow, args=(stop,), name="index-events", daemon=True),
        threading.Thread(target=heartbeat.run, args=(context, stop), name="heartbeat", daemon=True),
    ]
    for thread in threads:
        thread.start()
    queues = [Queue(queue_name(s), connection=connection, serializer=MsgpackSerializer) for s in sorted(shards)]
    worker = SimpleWorker(queues, connection=connection, serializer=MsgpackSerializer, name=name)
    try:
        worker.work(with_scheduler=False, logging_level=settings.log_level)
    finally:
        stop.set()
        heartbeat.forget(context)
        log.info("worker %s stopped after %d searches", name, context.done)
    return 0
