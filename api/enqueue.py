"""Admits a search with one atomic Redis call, so a burst cannot slip past the limit, then queues it.

Admission counts *leases*: one member per admitted search in a sorted set per shard and in one for
the whole deployment, scored by the search's deadline. The admission script drops leases past
their deadline, refuses if either set is at its limit, else adds the leases. Because the check
and the count are one script, every API process sees every other's searches at once: a burst of
200 concurrent searches is cut at the limit, not after a stale depth read. While searches are
being admitted, the same call also writes the RQ job hash and pushes the job id on the shard's RQ
queue (one round trip). Once searches are being refused, only an admitted search sends its photo,
in a second call (under a 10x overload, refused photos would otherwise be most of what Redis
reads). The worker that answers removes the leases in the same transaction as its reply
(`workers.jobs`); a lease whose worker died, or whose push failed, expires with its deadline.

The job hash is the one RQ writes (built by RQ's `Job` from a template, see `JobTemplate`), so
`rq info`, RQ's workers and our monitoring see ordinary RQ jobs; only the bookkeeping RQ adds
around them (registries, per-job heartbeats) is left out, as `workers.worker` leaves it out too.
"""

from __future__ import annotations

import datetime
import enum
import math
import time
from collections.abc import Callable
from typing import Any

import msgpack
import redis
import redis.asyncio as aioredis
from rq.job import Job, JobStatus
from rq.utils import utcformat

from shared import keys, queues
from shared.codec import SEARCH_FUNCTION, MsgpackSerializer
from shared.shards import queue_name

# Writes the job hash from ARGV[first] (the template's fields, a msgpack array) and the per-search
# fields and values after it, and queues the job.
_PUSH_FUNCTION = """
local function push(job_key, queue_key, job_id, ttl, first)
  local fields = cmsgpack.unpack(ARGV[first])
  for i = first + 1, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', job_key, unpack(fields))
  redis.call('EXPIRE', job_key, ttl)
  redis.call('RPUSH', queue_key, job_id)
end
"""
# KEYS: the shard's leases, all leases, the job's hash, the shard's queue, the search's token.
# ARGV: now, deadline, shard limit, total limit, job id, then optionally the TTL and the job's
# fields: then an admitted job is queued in the same call. Returns a `Verdict`.
_ADMIT = (
    _PUSH_FUNCTION
    + """
if redis.call('EXISTS', KEYS[5]) == 0 then
  return -2
end
local now, deadline = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[4]) then
  return -1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], deadline, ARGV[5])
redis.call('ZADD', KEYS[2], deadline, ARGV[5])
if #ARGV > 5 then push(KEYS[3], KEYS[4], ARGV[5], ARGV[6], 7) end
return 1
"""
)
# KEYS: the job's hash, the shard's queue. ARGV: job id, TTL, the job's fields.
PUSH = _PUSH_FUNCTION + "push(KEYS[1], KEYS[2], ARGV[1], ARGV[2], 3)"


# The fields of the job hash that differ between searches; the others are the template's.
_PER_SEARCH = ("created_at", "enqueued_at", "description", "data")


class JobTemplate:
    """The RQ job hash of a search (or of another job `function`, on the queues `queue` names),
    built by RQ once per shard and filled in per job.

    Building a `Job` and calling `to_dict` per search cost more front-end CPU than the rest of
    the enqueue; the fields that differ between searches are the times, the description and the
    data, so only those are sent as they are. The others go as one msgpack array the script
    unpacks: encoding them one by one as command arguments cost another fifth of the enqueue.
    """

    def __init__(
        self,
        connection: redis.Redis,
        shards: int,
        ttl: int,
        function: str = SEARCH_FUNCTION,
        queue: Callable[[int], str] = queue_name,
    ) -> None:
        self._ttl = ttl
        self._function = function
        self._queue = queue
        self._static = [
            msgpack.packb(  # raw strings: Redis's cmsgpack reads no bin type
                [
                    _as_redis_string(part)
                    for name, value in self._build(connection, shard).items()
                    if name not in _PER_SEARCH
                    for part in (name, value)
                ],
                use_bin_type=False,
            )
            for shard in range(shards)
        ]

    def _build(self, connection: redis.Redis, shard: int) -> dict[str, Any]:
        job = Job.create(
            self._function,
            args=(b"",),
            connection=connection,
            id="0" * 32,
            ttl=self._ttl,
            result_ttl=0,
            failure_ttl=60,  # a failed job keeps its image in Redis this long: keep it short
            timeout=self._ttl + 30,
            serializer=MsgpackSerializer,
            origin=self._queue(shard),
            status=JobStatus.QUEUED,
        )
        job.enqueued_at = job.created_at
        return job.to_dict()

    def fields(self, shard: int, job_id: str, payload: bytes) -> list[Any]:
        """The script's job arguments: the template's fields (one msgpack array), then the
        per-job ones as field, value, ... of the job that runs `function(payload)`."""
        stamp = utcformat(datetime.datetime.now(datetime.UTC))
        return [
            self._static[shard],
            "created_at",
            stamp,
            "enqueued_at",
            stamp,
            # RQ would otherwise describe the job by repr() of its arguments: the whole image.
            "description",
            f"{self._function.rpartition('.')[2]} {job_id}",
            # Not zlib-compressed as RQ's own enqueue would: the data is mostly a JPEG, which zlib
            # cannot shrink, and compressing it took 1.4 ms of the front end's 3 ms of CPU per
            # search (measured). Workers read it back unchanged: RQ falls back to the raw bytes
            # when they are not zlib data, and a msgpack array never is.
            "data",
            MsgpackSerializer.dumps((self._function, None, (payload,), {})),
        ]

    @property
    def ttl(self) -> int:
        return self._ttl


def _as_redis_string(value: object) -> bytes:
    """What Redis stores for a field value redis-py would send (str enums as their value)."""
    if isinstance(value, bytes):
        return value
    return value.encode() if isinstance(value, str) else str(value).encode()


# After a refusal, searches are admitted before their photo is sent for this long.
_REFUSING_SECONDS = 1.0
# After a refusal because every worker is full, searches are refused before their upload is even
# read for this long: a refusal then costs a fifth of the CPU. Short next to the queue-wait
# target, so the queues do not run dry meanwhile.
_FULL_SECONDS = 0.02


class Verdict(enum.IntEnum):
    """What the admission script answered."""

    ADMITTED = 1
    SHARD_FULL = 0  # the workers of the search's shard cannot take it in time
    ALL_FULL = -1  # no worker can
    TOKEN_GONE = -2  # the token was revoked since this process cached it


class Enqueuer:
    """Runs the admission and push scripts; one per API process."""

    def __init__(self, redis_async: aioredis.Redis, template: JobTemplate) -> None:
        self._admit = redis_async.register_script(_ADMIT)
        self._push = redis_async.register_script(PUSH)
        self._template = template
        self._refused_at = -math.inf
        self._full_until = -math.inf

    def full(self) -> bool:
        """Whether every worker was found full a moment ago: no search can be admitted now."""
        return time.monotonic() < self._full_until

    async def enqueue(
        self,
        *,
        shard: int,
        job_id: str,
        token: str,
        payload: Callable[[], bytes],
        now: float,
        deadline: float,
        limits: tuple[int, int],
    ) -> Verdict:
        """Whether the search was admitted and queued (nothing is queued otherwise). The token is
        checked in the same call, so a search that starts after its token's deletion is refused
        whatever the token cache holds. `payload` makes the job's data, only when it is sent."""
        job_keys = [
            keys.shard_in_flight(shard),
            keys.IN_FLIGHT,
            Job.key_for(job_id),
            queues.queue_key(shard),
            keys.token(token),
        ]
        args: list[Any] = [now, deadline, limits[0], limits[1], job_id]
        pushing = time.monotonic() - self._refused_at > _REFUSING_SECONDS
        if pushing:
            args += [self._template.ttl, *self._template.fields(shard, job_id, payload())]
        verdict = Verdict(await self._admit(keys=job_keys, args=args))
        if verdict in (Verdict.SHARD_FULL, Verdict.ALL_FULL):
            self._refused_at = time.monotonic()
            if verdict is Verdict.ALL_FULL:
                self._full_until = self._refused_at + _FULL_SECONDS
        elif verdict is Verdict.ADMITTED and not pushing:
            fields = self._template.fields(shard, job_id, payload())
            await self._push(keys=job_keys[2:4], args=[job_id, self._template.ttl, *fields])
        return verdict
