"""Reading workers' heartbeats back: the `keys.worker(name)` hashes that workers/heartbeat.py writes.

The one reader of which workers are alive and what they serve. The reads are staged on a pipeline
(`stage_roster`, then `stage_beats` with the roster's reply) and parsed by pure functions, so the
API (asynchronous), the workers' ownership loop and `recog status` (synchronous, folding them into
round trips of their own) read them the same way; only who executes the pipeline differs.
`read` and `read_async` are the two round trips for callers that need nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.client import Pipeline

from shared import keys, replies
from shared.ownership import LIVE_SECONDS

AnyPipeline = Pipeline | AsyncPipeline


@dataclass(frozen=True, kw_only=True)
class Heartbeat:
    """One worker's heartbeat as read back: the `keys.worker(name)` hash that workers/heartbeat.py
    writes, and the worker's score in `keys.WORKERS` (Unix seconds of its last beat).

    The hash expires a while after the worker stops (the zset entry lasts longer), so every field
    but the name and the score may be missing; they then read as empty or zero.
    """

    name: str
    beat_at: float
    host: str = ""
    pid: int | None = None
    shards: tuple[int, ...] = ()
    jobs_done: int = 0
    jobs_dropped: int = 0
    rss_kb: int = 0  # the process's peak resident set size (getrusage ru_maxrss), KiB
    settled: bool = False  # serving every shard it should (what the container healthcheck asks)
    images: dict[int, int] = field(default_factory=dict)  # shard -> reference images indexed
    load_seconds: dict[int, float] = field(default_factory=dict)  # shard -> time its index took to load

    @classmethod
    def parse(cls, name: str, beat_at: float, fields: Mapping[bytes, bytes]) -> Heartbeat:
        text = {k.decode(): v.decode() for k, v in replies.raw_hash(fields).items()}
        return cls(
            name=name,
            beat_at=beat_at,
            host=text.get("host", ""),
            pid=int(text["pid"]) if "pid" in text else None,
            shards=parse_shards(text.get("shards", "")),
            jobs_done=int(text.get("jobs_done", 0)),
            jobs_dropped=int(text.get("jobs_dropped", 0)),
            rss_kb=int(text.get("rss_kb", 0)),
            settled=text.get("settled") == "1",
            images={shard: int(v) for shard, v in _per_shard(text, "images")},
            load_seconds={shard: float(v) for shard, v in _per_shard(text, "load_seconds")},
        )

    def is_live(self, now: float) -> bool:
        return now - self.beat_at <= LIVE_SECONDS


def parse_shards(field: str) -> tuple[int, ...]:
    """A heartbeat's `shards` field ("0,1,2"; empty while the worker serves none), sorted."""
    return tuple(sorted(int(shard) for shard in field.split(",") if shard))


def _per_shard(fields: Mapping[str, str], name: str) -> Iterator[tuple[int, str]]:
    """The `{name}:{shard}` fields of a heartbeat, as (shard, raw value)."""
    for key, value in fields.items():
        prefix, _, shard = key.partition(":")
        if prefix == name:
            yield int(shard), value


def owners_by_shard(beats: Iterable[Heartbeat], shards: int, now: float) -> dict[int, list[Heartbeat]]:
    """Shard -> the live heartbeats that report serving it; shards outside 0..shards-1 are ignored."""
    owners: dict[int, list[Heartbeat]] = {s: [] for s in range(shards)}
    for beat in beats:
        if beat.is_live(now):
            for shard in beat.shards:
                if shard in owners:
                    owners[shard].append(beat)
    return owners


def indexed_images(owners: Iterable[Heartbeat], shard: int) -> int:
    return max((beat.images.get(shard, 0) for beat in owners), default=0)


def stage_roster(pipe: AnyPipeline, now: float, live_only: bool = True) -> None:
    """Stages the read of the workers' names and last-beat times (only the live ones by default)."""
    low: float | str = now - LIVE_SECONDS if live_only else "-inf"
    pipe.zrangebyscore(keys.WORKERS, low, "+inf", withscores=True)


def stage_beats(pipe: AnyPipeline, roster: object) -> list[tuple[str, float]]:
    """Stages the read of each rostered worker's hash; returns the roster, parsed, for `parse_beats`."""
    names = replies.scored(roster)
    for name, _ in names:
        pipe.hgetall(keys.worker(name))
    return names


def parse_beats(names: list[tuple[str, float]], hashes: list[object]) -> list[Heartbeat]:
    return [
        Heartbeat.parse(name, score, replies.raw_hash(raw)) for (name, score), raw in zip(names, hashes, strict=True)
    ]


def read(connection: redis.Redis, now: float, live_only: bool = True) -> list[Heartbeat]:
    """The heartbeats, in two round trips."""
    with connection.pipeline(transaction=False) as pipe:
        stage_roster(pipe, now, live_only)
        (roster,) = pipe.execute()
        names = stage_beats(pipe, roster)
        return parse_beats(names, pipe.execute() if names else [])


async def read_async(connection: aioredis.Redis, now: float, live_only: bool = True) -> list[Heartbeat]:
    """`read` for the API's event loop."""
    async with connection.pipeline(transaction=False) as pipe:
        stage_roster(pipe, now, live_only)
        (roster,) = await pipe.execute()
        names = stage_beats(pipe, roster)
        return parse_beats(names, await pipe.execute() if names else [])


def serving(beats: Iterable[Heartbeat]) -> dict[str, frozenset[int]]:
    """Worker name -> the shards it reports serving."""
    return {beat.name: frozenset(beat.shards) for beat in beats}


def live_serving(connection: redis.Redis) -> dict[str, frozenset[int]]:
    """Live worker name -> the shards it reports serving."""
    return serving(read(connection, time.time()))
