"""Sends a search to the shard that owns its collection and waits for the worker's reply.

The job goes through RQ (msgpack-serialised, on the shard's queue); the answer comes back on a
per-job reply list that the front end waits on with a blocking BLPOP through redis.asyncio, so
no request polls. RQ's enqueue is synchronous; rather than hand it to a thread (a thread hop and
GIL contention cost more CPU than the enqueue itself), RQ stages its writes on a pipeline that is
never executed, and those commands are sent through redis.asyncio in one MULTI round trip: RQ still
decides what a job looks like in Redis, and nothing blocks the event loop.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from rq import Queue
from rq.job import Job

from api import metrics
from api.admission import Admission
from shared import keys, replies
from shared.codec import MsgpackSerializer, SearchJob, SearchReply, decode_reply, encode_job
from shared.config import Settings
from shared.errors import ServerBusy, ServerError, Timeout, by_code
from shared.shards import queue_name, shard_of

JOB_FUNCTION = "workers.jobs.search"


class UncompressedJob(Job):
    """An RQ job whose data is stored as is, not zlib-compressed.

    The data is mostly a JPEG, which zlib cannot shrink, and compressing it took 1.4 ms of the
    front end's 3 ms of CPU per search (measured). Workers read it back unchanged: RQ falls back
    to the raw bytes when they are not zlib data, and a msgpack array never is.
    """

    def to_dict(self, include_meta: bool = True, include_result: bool = True) -> dict[str, Any]:
        data = self.data
        self._data = b""  # what the parent compresses: nothing
        try:
            stored = super().to_dict(include_meta=include_meta, include_result=include_result)
        finally:
            self._data = data
        stored["data"] = data
        return stored


@dataclass(frozen=True)
class Outcome:
    reply: SearchReply
    shard: int
    round_trip_ms: float


class Dispatcher:
    def __init__(self, settings: Settings, redis_async: aioredis.Redis) -> None:
        self._settings = settings
        self._redis = redis_async
        # Only for staging RQ's commands: it never sends anything itself.
        self._stager = redis.Redis.from_url(settings.redis_url)
        self._queues = [
            Queue(queue_name(s), connection=self._stager, serializer=MsgpackSerializer, job_class=UncompressedJob)
            for s in range(settings.shards)
        ]
        self._admission = Admission(redis_async, settings.shards, settings.deadline_ms / 1000)
        self.in_flight = 0

    async def search(self, collection: str, image: bytes, max_results: int, min_score: float) -> Outcome:
        """Queues one search and returns the worker's reply; raises the contract's errors.

        ServerBusy when this process already has `max_in_flight` searches waiting or the shard's
        queue is deeper than its workers can drain before the deadline; Timeout when no
        reply arrives by the deadline (the worker then drops the job unanswered); a worker-side error
        code (IMAGE_NO_DETAILS, ...) as its error class.
        """
        if self.in_flight >= self._settings.max_in_flight:
            raise ServerBusy(retry_after=1)
        self.in_flight += 1
        metrics.IN_FLIGHT.inc()
        try:
            return await self._round_trip(collection, image, max_results, min_score)
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.dec()

    async def _round_trip(self, collection: str, image: bytes, max_results: int, min_score: float) -> Outcome:
        started = time.time()
        deadline_s = self._settings.deadline_ms / 1000
        job_id = uuid.uuid4().hex
        job = SearchJob(
            job_id=job_id,
            collection=collection,
            image=image,
            deadline=started + deadline_s,
            reply_key=keys.reply(job_id),
            max_results=max_results,
            min_score=min_score,
        )
        shard = shard_of(collection, self._settings.shards)
        await self._admission.check(shard)
        queue = self._queues[shard]
        ttl = max(1, int(deadline_s + 1))
        try:
            if queue.redis_server_version is None:
                await self._learn_server_version()
            staging = self._stager.pipeline(transaction=False)
            queue.enqueue_call(
                JOB_FUNCTION,
                args=(encode_job(job),),
                job_id=job_id,
                # RQ would otherwise describe the job by repr() of its arguments: the whole image.
                description=f"search {job_id}",
                ttl=ttl,
                result_ttl=0,
                failure_ttl=60,  # a failed job keeps its image in Redis this long: keep it short
                timeout=ttl + 30,
                pipeline=staging,
            )
            async with self._redis.pipeline(transaction=True) as pipe:
                for args, options in staging.command_stack:
                    pipe.execute_command(*args, **options)
                await pipe.execute()
        except redis.RedisError as exc:
            raise ServerBusy("The job queue is unavailable; retry shortly.", retry_after=1) from exc
        remaining = job.deadline - time.time()
        try:
            popped = await self._redis.blpop([job.reply_key], timeout=max(remaining, 0.01)) if remaining > 0 else None
        except redis.TimeoutError:
            # redis-py's own read timeout on a blocking pop can fire just before the server's
            # (seen under load): either way no reply came by the deadline.
            popped = None
        except redis.RedisError as exc:
            raise ServerBusy("Redis stopped answering; retry shortly.", retry_after=1) from exc
        if popped is None:
            raise Timeout()
        reply = decode_reply(replies.raw(popped[1]))
        self._admission.observe(reply.timings.get("total", 0.0))
        if reply.error:
            error = by_code(reply.error)
            raise error() if error.status < 500 else ServerError()
        return Outcome(reply=reply, shard=shard, round_trip_ms=(time.time() - started) * 1000)

    async def _learn_server_version(self) -> None:
        """RQ asks the server's version before its first enqueue, synchronously: answer it here."""
        info = await self._redis.info("server")
        major, minor, patch = (int(part) for part in f"{info['redis_version']}.0.0".split(".")[:3])
        version = (major, minor, patch)
        for queue in self._queues:
            queue.redis_server_version = version

    def close(self) -> None:
        self._stager.close()
