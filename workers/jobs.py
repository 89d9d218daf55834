"""The function RQ runs for each search job, in the worker's own process.

RQ calls jobs by import path with only their arguments, so the preloaded indexes are reached
through `CONTEXT`, which `workers.worker` sets before the worker takes its first job.

The reply, the end of the job's admission leases (`api.enqueue`) and the deletion of its RQ hash
are one transaction: a search is answered and its place freed for the next one at the same time.
A job that can no longer be answered before its deadline is not searched: one whose deadline has
passed is dropped (its client has had its 504), one that would finish too late is answered
SERVER_BUSY at once, so its client gets a 503 it can retry instead of a 504 at the deadline.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from rq.job import Job

from shared import keys
from shared.codec import Hit, SearchJob, SearchReply, decode_job, encode_reply
from shared.errors import RecogError, ServerBusy, ServerError
from shared.shards import shard_of
from workers import metrics
from workers.index import Match
from workers.ownership import ShardManager
from workers.recognize import recognize
from workers.shard_state import Collection, ShardState

log = logging.getLogger("recog.worker.jobs")


@dataclass
class WorkerContext:
    name: str
    state: ShardState
    manager: ShardManager
    connection: redis.Redis
    reply_ttl_seconds: int
    shards: int
    done: int = 0
    dropped: int = 0
    # Moving average of this worker's search time, seconds: whether a job can still finish in time.
    job_seconds: float = 0.05


# Weight of each new search in `job_seconds`.
_SMOOTHING = 0.05


CONTEXT: WorkerContext | None = None


def best_per_item(matches: list[Match], items: dict[str, str], job: SearchJob) -> list[Hit]:
    """One hit per item (its best image), above `min_score`, at most `max_results`, best first."""
    hits: dict[str, Hit] = {}
    for match in sorted(matches, key=lambda m: m.score, reverse=True):
        item = items.get(match.image_id)
        if item is None or item in hits or match.score < job.min_score:
            continue
        hits[item] = Hit(item=item, image=match.image_id, score=float(match.score), corners=match.corners.tolist())
        if len(hits) == job.max_results:
            break
    return list(hits.values())


def _answer(job: SearchJob, collection: Collection | None, worker: str) -> SearchReply:
    if collection is None or len(collection.index) == 0:
        return SearchReply(job_id=job.job_id, worker=worker)
    try:
        # Ask for more images than items wanted: several images of one item may match.
        matches, timings = recognize(collection.index, job.image, job.max_results * 3)
    except RecogError as exc:
        return SearchReply(job_id=job.job_id, error=exc.code, worker=worker)
    except Exception:
        # A bug must not leave the client waiting for its deadline: answer 500 now, keep the trace.
        log.exception("search %s failed", job.job_id)
        return SearchReply(job_id=job.job_id, error=ServerError.code, worker=worker)
    hits = best_per_item(matches, collection.items, job)
    return SearchReply(job_id=job.job_id, hits=hits, timings=timings, worker=worker)


def search(payload: bytes) -> None:
    """Recognises the job's image in its collection and pushes the reply to the job's reply key."""
    if CONTEXT is None:
        raise RuntimeError("workers.jobs.CONTEXT is not set: run jobs through `recog worker`")
    started = time.perf_counter()
    job = decode_job(payload)
    late = time.time() - job.deadline
    if late > 0:
        # The front end has already answered 504; working on it would only delay the next job.
        CONTEXT.dropped += 1
        metrics.observe("dropped", {})
        log.info("dropped search %s: its deadline passed %.0f ms ago", job.job_id, late * 1000)
        finish(CONTEXT.connection, CONTEXT.shards, CONTEXT.reply_ttl_seconds, job, None)
        return
    if late + CONTEXT.job_seconds > 0:
        CONTEXT.dropped += 1
        metrics.observe("refused", {})
        log.info(
            "refused search %s: %.0f ms left, searches take %.0f ms",
            job.job_id,
            -late * 1000,
            CONTEXT.job_seconds * 1000,
        )
        finish(
            CONTEXT.connection,
            CONTEXT.shards,
            CONTEXT.reply_ttl_seconds,
            job,
            SearchReply(job_id=job.job_id, error=ServerBusy.code, worker=CONTEXT.name),
        )
        return
    reply = _answer(job, CONTEXT.state.get(job.collection), CONTEXT.name)
    seconds = time.perf_counter() - started
    reply.timings["total"] = seconds * 1000
    CONTEXT.job_seconds += _SMOOTHING * (seconds - CONTEXT.job_seconds)
    metrics.observe("error" if reply.error else "answered", reply.timings)
    finish(CONTEXT.connection, CONTEXT.shards, CONTEXT.reply_ttl_seconds, job, reply)
    CONTEXT.done += 1


def finish(
    connection: redis.Redis, shards: int, reply_ttl_seconds: int, job: SearchJob, reply: SearchReply | None
) -> None:
    """Pushes the reply (if any), frees the job's admission leases and deletes its RQ hash, at once."""
    shard = shard_of(job.collection, shards)
    with connection.pipeline(transaction=True) as pipe:
        if reply is not None:
            pipe.rpush(job.reply_key, encode_reply(reply))
            pipe.expire(job.reply_key, reply_ttl_seconds)
        pipe.zrem(keys.shard_in_flight(shard), job.job_id)
        pipe.zrem(keys.IN_FLIGHT, job.job_id)
        pipe.delete(Job.key_for(job.job_id))
        pipe.execute()
