"""Reading the shards' RQ queues: how deep each is and how long its head job has waited.

The one reader of queue depth, for the API's admission and metrics and for `recog status`. Like
`shared.heartbeats`, reads are staged on a pipeline the caller executes, sync or async, so each
caller folds them into its own round trips.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rq import Queue
from rq.job import Job
from rq.utils import utcparse

from shared import replies
from shared.heartbeats import AnyPipeline
from shared.shards import ingest_queue_name, queue_name


def queue_key(shard: int) -> str:
    """The Redis list RQ keeps shard `shard`'s queued search job ids in."""
    return Queue.redis_queue_namespace_prefix + queue_name(shard)


def ingest_queue_key(shard: int) -> str:
    """The Redis list RQ keeps shard `shard`'s queued upload job ids in."""
    return Queue.redis_queue_namespace_prefix + ingest_queue_name(shard)


def every_key(shards: int) -> list[str]:
    """The search and upload queues of every shard: what the API lists where RQ keeps its queue
    names, so `rq info` shows them."""
    return [key(shard) for key in (queue_key, ingest_queue_key) for shard in range(shards)]


def stage_depths(pipe: AnyPipeline, shards: int, key: Callable[[int], str] = queue_key) -> None:
    """Stages one LLEN per shard of its search queue (or of the queue `key` names, e.g. uploads)."""
    for shard in range(shards):
        pipe.llen(key(shard))


def stage_heads(pipe: AnyPipeline, shards: int) -> None:
    """Stages one LINDEX 0 per shard: the id of each queue's oldest job."""
    for shard in range(shards):
        pipe.lindex(queue_key(shard), 0)


def stage_enqueued_at(pipe: AnyPipeline, heads: Sequence[object]) -> list[int]:
    """Stages the read of each head job's `enqueued_at`; returns the shards it was staged for."""
    queued = [shard for shard, head in enumerate(heads) if head]
    for shard in queued:
        pipe.hget(Job.key_for(replies.text(heads[shard])), "enqueued_at")
    return queued


def job_age(enqueued_at: object, now: float) -> float | None:
    """Seconds since an RQ job was queued, from its hash's `enqueued_at`; None if the hash is gone."""
    text = replies.optional_text(enqueued_at)
    if not text:
        return None
    return max(now - utcparse(text).timestamp(), 0.0)
