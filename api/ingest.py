"""Hands a stored upload to the workers and waits for their verdict, the way a search does.

The job goes through RQ (msgpack, on the upload queue of the collection's shard, which every worker
serves after its search queues) with the same one-call push as a search (`api.enqueue`); the
answer comes back on a per-job reply list read with a blocking BLPOP. A job not answered in
`RECOG_INGEST_TIMEOUT_SECONDS` is taken back out of its queue and the upload refused with 503 (the
workers are busy with searches or a bigger import): a worker that had already started on it finds
its original gone, and anything it wrote is left for `recog sweep`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aioredis
from rq.job import Job

from api.admission import Admission
from api.enqueue import PUSH, JobTemplate
from shared import keys, queues, replies
from shared.codec import INGEST_FUNCTION, IngestJob, decode_ingest_reply, encode_ingest
from shared.config import Settings
from shared.errors import ServerBusy, ServerError, by_code
from shared.ids import JobIds
from shared.shards import ingest_queue_name, shard_of


class Ingester:
    """Queues upload jobs; one per API process."""

    def __init__(self, settings: Settings, redis_async: aioredis.Redis, admission: Admission) -> None:
        self._redis = redis_async
        self._admission = admission
        self._shards = settings.shards
        self._timeout = settings.ingest_timeout_seconds
        # A blocking pop must end before the connection's own read timeout (the search deadline + 2 s).
        self._pop_seconds = max(1.0, settings.deadline_ms / 1000)
        with redis.Redis.from_url(settings.redis_url) as unused:  # RQ builds the template; nothing is sent
            self._template = JobTemplate(
                unused,
                settings.shards,
                ttl=math.ceil(self._timeout) + 1,
                function=INGEST_FUNCTION,
                queue=ingest_queue_name,
            )
        self._push = redis_async.register_script(PUSH)
        self._job_ids = JobIds()
        self._max_waiting = settings.max_uploads_in_flight
        self.waiting = 0

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Holds one of this process's `RECOG_MAX_UPLOADS_IN_FLIGHT` upload places for the length of
        an upload: each waits on a Redis connection that searches need too. ServerBusy at once when
        none is free, or when no worker runs (the upload would only wait out its timeout)."""
        if self.waiting >= self._max_waiting:
            raise ServerBusy("Too many uploads are waiting for the workers; retry shortly.", retry_after=2)
        self.waiting += 1
        try:
            if await self._admission.live_workers() == 0:
                raise ServerBusy("No worker is running to prepare the image; retry shortly.", retry_after=2)
            yield
        finally:
            self.waiting -= 1

    async def prepare(self, collection: str, item: str, image: str) -> int:
        """Has a worker check the stored original of `image`, extract its features and make its
        thumbnails; returns its 1..5 recognisability rating. Raises the IMAGE_* error the worker
        found, or ServerBusy when no worker answered in time."""
        job_id = self._job_ids.next()
        job = IngestJob(
            job_id=job_id,
            collection=collection,
            item=item,
            image=image,
            deadline=time.time() + self._timeout,
            reply_key=keys.reply(job_id),
        )
        shard = shard_of(collection, self._shards)
        queue = queues.ingest_queue_key(shard)
        fields = self._template.fields(shard, job_id, encode_ingest(job))
        await self._push(keys=[Job.key_for(job_id), queue], args=[job_id, self._template.ttl, *fields])
        while (remaining := job.deadline - time.time()) > 0:
            popped = await self._redis.blpop([job.reply_key], timeout=min(remaining, self._pop_seconds))
            if popped is not None:
                reply = decode_ingest_reply(replies.raw(popped[1]))
                if reply.error:
                    error = by_code(reply.error)
                    raise error(reply.message or None) if error.status < 500 else ServerError()
                return reply.recognisability
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrem(queue, 1, job_id)
            pipe.delete(Job.key_for(job_id))
            await pipe.execute()
        raise ServerBusy(
            f"No worker could index the image within {self._timeout:g} s; retry shortly.",
            retry_after=max(1, round(self._timeout / 10)),
        )
