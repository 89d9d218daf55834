"""The function RQ runs for each search job, in the worker's own process.

RQ calls jobs by import path with only their arguments, so the preloaded indexes are reached
through `CONTEXT`, which `workers.worker` sets before the worker takes its first job.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from shared.codec import Hit, SearchJob, SearchReply, decode_job, encode_reply
from shared.errors import RecogError, ServerError
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
    done: int = 0
    dropped: int = 0


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
    if time.time() > job.deadline:
        # The front end has already answered 504; working on it would only delay the next job.
        CONTEXT.dropped += 1
        metrics.observe("dropped", {})
        log.info("dropped search %s: its deadline passed %.0f ms ago", job.job_id, (time.time() - job.deadline) * 1000)
        return
    reply = _answer(job, CONTEXT.state.get(job.collection), CONTEXT.name)
    reply.timings["total"] = (time.perf_counter() - started) * 1000
    metrics.observe("error" if reply.error else "answered", reply.timings)
    with CONTEXT.connection.pipeline(transaction=True) as pipe:
        pipe.rpush(job.reply_key, encode_reply(reply))
        pipe.expire(job.reply_key, CONTEXT.reply_ttl_seconds)
        pipe.execute()
    CONTEXT.done += 1
