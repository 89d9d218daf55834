"""Sends a search to the shard that owns its collection and waits for the worker's reply.

The job goes through RQ (msgpack-serialised, on the shard's queue), admitted and pushed by a
Redis script (`api.enqueue`); the answer comes back on a per-job reply list that the front end
waits on with a blocking BLPOP through redis.asyncio, so no request polls.

A worker that dies (kill -9, OOM) or stalls with a search in hand would leave its client waiting
for the deadline. So the wait is cut in intervals of a few recent p95 worker times; at the end of
an interval without a reply the front end asks whether the job is still queued (LPOS). A job that
is out of the queue for two intervals in a row was taken by a worker that has not answered in
several times the usual time: it is pushed back, once, at the head of the queue, where a live
replica takes it next. Whichever reply comes first is the answer: this request pops one and only
one, so a late duplicate never reaches the client, and a search never runs more than twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from api import metrics
from api.admission import Admission
from api.enqueue import Enqueuer, JobTemplate, Verdict
from api.fanout import PartCounts, merge
from api.pacing import RefusalPacer
from shared import keys, queues, replies
from shared.codec import SearchJob, SearchReply, decode_reply, encode_job
from shared.config import Settings
from shared.errors import ServerBusy, ServerError, Timeout, TokenInvalid, by_code
from shared.ids import JobIds
from shared.parts import part_key
from shared.shards import shard_of

log = logging.getLogger("recog.api.dispatch")

# Shortest interval between two looks at a job that has not been answered yet.
_MIN_CHECK_SECONDS = 0.2
# An interval is this many recent p95 worker times: a live worker answers well within it.
_CHECK_P95S = 4
# Least time between two refusals on one connection (api.pacing): a client that ignores Retry-After
# gets at most 40 refusals a second per connection, each still under the 50 ms a refusal may take.
_REFUSAL_GAP_SECONDS = 0.025


@dataclass(frozen=True)
class Outcome:
    reply: SearchReply
    shard: int
    round_trip_ms: float


class Dispatcher:
    def __init__(self, settings: Settings, redis_async: aioredis.Redis) -> None:
        self._settings = settings
        self._redis = redis_async
        deadline_s = settings.deadline_ms / 1000
        # Only to let RQ build the job hash template: it sends nothing through this connection.
        self._rq_connection = redis.Redis.from_url(settings.redis_url)
        template = JobTemplate(self._rq_connection, settings.shards, ttl=max(1, int(deadline_s + 1)))
        self._enqueuer = Enqueuer(redis_async, template)
        self.admission = Admission(redis_async, settings.shards, settings.queue_target_ms / 1000)
        self.parts = PartCounts(redis_async)
        self.in_flight = 0
        self._job_ids = JobIds()
        self.pacer = RefusalPacer(_REFUSAL_GAP_SECONDS)

    def refuse_if_full(self) -> None:
        """ServerBusy when no search can be admitted now, whatever its collection: this process has
        `max_in_flight` searches waiting, or every worker was found full a moment ago. Checked
        before the upload is read, so a refusal under overload costs little."""
        self._refuse_if_process_full()
        if self._enqueuer.full():
            metrics.observe_refusal("capacity")
            raise ServerBusy(retry_after=1)

    async def search(
        self, token: str, collection: str, image: bytes, max_results: int, min_score: float, arrived: float
    ) -> Outcome:
        """Queues one search and returns the worker's reply; raises the contract's errors.

        ServerBusy when this process already has `max_in_flight` searches waiting or admission
        refuses (the workers cannot answer it in time); Timeout when no reply arrives by the
        deadline; TokenInvalid when `token` (which opens `collection`) has been deleted; a worker-side
        error code (IMAGE_NO_DETAILS, ...) as its error class. The deadline runs from `arrived`
        (Unix seconds), when the upload had been read.
        """
        self._refuse_if_process_full()  # again: others may have started while this one was read
        parts = await self.parts.of(collection)
        self.in_flight += 1
        metrics.IN_FLIGHT.inc()
        try:
            if parts == 1:
                return await self._round_trip(token, collection, image, max_results, min_score, arrived)
            return await self._fan_out(token, collection, parts, image, max_results, min_score, arrived)
        finally:
            self.in_flight -= 1
            metrics.IN_FLIGHT.dec()

    async def _fan_out(
        self, token: str, collection: str, parts: int, image: bytes, max_results: int, min_score: float, arrived: float
    ) -> Outcome:
        """One search per part of the collection, each on its part's shard, answered as one; the
        first part to fail (a 504 if its worker misses the deadline) fails the whole search."""
        tasks = [
            asyncio.ensure_future(
                self._round_trip(token, part_key(collection, part), image, max_results, min_score, arrived)
            )
            for part in range(parts)
        ]
        try:
            outcomes = await asyncio.gather(*tasks)
        except BaseException as exc:
            for task in tasks:
                task.cancel()
            if isinstance(exc, Timeout):
                metrics.PARTS_MISSED.inc()
            raise
        merged = merge([o.reply for o in outcomes], [o.round_trip_ms for o in outcomes], max_results)
        return Outcome(reply=merged.reply, shard=outcomes[0].shard, round_trip_ms=merged.round_trip_ms)

    def _refuse_if_process_full(self) -> None:
        if self.in_flight >= self._settings.max_in_flight:
            metrics.observe_refusal("process")
            raise ServerBusy(retry_after=1)

    async def _round_trip(
        self, token: str, collection: str, image: bytes, max_results: int, min_score: float, arrived: float
    ) -> Outcome:
        started = time.time()
        job_id = self._job_ids.next()
        job = SearchJob(
            job_id=job_id,
            collection=collection,
            image=image,
            deadline=arrived + self._settings.deadline_ms / 1000,
            reply_key=keys.reply(job_id),
            max_results=max_results,
            min_score=min_score,
        )
        shard = shard_of(collection, self._settings.shards)
        try:
            limits = await self.admission.limits(shard, job.deadline - started)
            verdict = await self._enqueuer.enqueue(
                shard=shard,
                job_id=job_id,
                token=token,
                payload=lambda: encode_job(job),
                now=started,
                deadline=job.deadline,
                limits=limits,
            )
        except redis.RedisError as exc:
            raise ServerBusy("The job queue is unavailable; retry shortly.", retry_after=1) from exc
        if verdict is Verdict.TOKEN_GONE:
            raise TokenInvalid()
        if verdict is not Verdict.ADMITTED:
            metrics.observe_refusal("capacity")
            raise ServerBusy(retry_after=1)
        reply = await self._await_reply(job, shard)
        self.admission.observe(reply.timings.get("total", 0.0))
        if reply.error:
            error = by_code(reply.error)
            if error is ServerBusy:
                raise ServerBusy("The workers could not start this search in time; retry shortly.", retry_after=1)
            raise error() if error.status < 500 else ServerError()
        return Outcome(reply=reply, shard=shard, round_trip_ms=(time.time() - started) * 1000)

    async def _await_reply(self, job: SearchJob, shard: int) -> SearchReply:
        """The job's reply; pushes the job back once if the worker that took it went silent."""
        interval = max(_MIN_CHECK_SECONDS, _CHECK_P95S * self.admission.p95_seconds())
        taken_at_last_look = requeued = False
        try:
            while (remaining := job.deadline - time.time()) > 0:
                popped = await self._redis.blpop([job.reply_key], timeout=min(remaining, interval))
                if popped is not None:
                    return decode_reply(replies.raw(popped[1]))
                if requeued or remaining <= interval:
                    continue
                taken = await self._redis.lpos(queues.queue_key(shard), job.job_id) is None
                if taken and taken_at_last_look:
                    await self._redis.lpush(queues.queue_key(shard), job.job_id)
                    requeued = True
                    metrics.REQUEUED.inc()
                    log.warning("search %s: its worker has not answered in %.2f s; queued again", job.job_id, interval)
                taken_at_last_look = taken
        except redis.TimeoutError:
            # redis-py's own read timeout on a blocking pop can fire just before the server's
            # (seen under load): either way no reply came by the deadline.
            pass
        except redis.RedisError as exc:
            raise ServerBusy("Redis stopped answering; retry shortly.", retry_after=1) from exc
        raise Timeout()

    def close(self) -> None:
        self._rq_connection.close()
