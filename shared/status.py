"""`recog status`: each shard's queue and owners and each worker's heartbeat, read from Redis.

The operator's view of what `/metrics` exports, for when no Prometheus is at hand; heartbeats are
read with `shared.heartbeats`, like the API's scrape and the workers' ownership loop do.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import redis

from shared import heartbeats, keys, queues
from shared.config import Settings
from shared.heartbeats import Heartbeat, indexed_images, owners_by_shard
from shared.tables import table

# A status command must not hang on a stalled Redis; reads here are a few small commands.
_REDIS_TIMEOUT_SECONDS = 5.0
# Moves the cursor home and clears the terminal, so each `--watch` frame replaces the last.
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


@dataclass(frozen=True, kw_only=True)
class ShardStatus:
    shard: int
    queued: int
    # Seconds since the head job was queued. None when the queue is empty, or when its head job's
    # hash has expired (no worker took it within its TTL; workers will skip it).
    oldest_job_age_seconds: float | None
    uploads: int  # reference uploads waiting in the shard's upload queue
    owners: tuple[str, ...]  # live workers serving the shard, by name
    collections: int
    images: int  # the most any owner reports: owners still loading report fewer


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    taken_at: float  # Unix seconds
    shards: list[ShardStatus]
    workers: list[Heartbeat]  # live ones first, then by name


def read(connection: redis.Redis, shards: int) -> Snapshot:
    """Two pipelined round trips: queue depths and heads, collection counts and the worker list,
    then the heads' job hashes and the workers' heartbeat hashes."""
    now = time.time()
    with connection.pipeline(transaction=False) as pipe:
        queues.stage_depths(pipe, shards)
        queues.stage_heads(pipe, shards)
        for shard in range(shards):
            pipe.scard(keys.shard_collections(shard))
        queues.stage_depths(pipe, shards, queues.ingest_queue_key)
        heartbeats.stage_roster(pipe, now, live_only=False)
        *lists, roster = pipe.execute()
        depths, heads = lists[:shards], lists[shards : 2 * shards]
        collections, uploads = lists[2 * shards : 3 * shards], lists[3 * shards :]
        queued = queues.stage_enqueued_at(pipe, heads)
        names = heartbeats.stage_beats(pipe, roster)
        fetched = pipe.execute() if queued or names else []
    enqueued = dict(zip(queued, fetched[: len(queued)], strict=True))
    beats = heartbeats.parse_beats(names, fetched[len(queued) :])
    owners = owners_by_shard(beats, shards, now)
    return Snapshot(
        taken_at=now,
        shards=[
            ShardStatus(
                shard=s,
                queued=depths[s],
                oldest_job_age_seconds=queues.job_age(enqueued.get(s), now),
                uploads=uploads[s],
                owners=tuple(sorted(beat.name for beat in owners[s])),
                collections=collections[s],
                images=indexed_images(owners[s], s),
            )
            for s in range(shards)
        ],
        workers=sorted(beats, key=lambda beat: (not beat.is_live(now), beat.name)),
    )


def to_json(snapshot: Snapshot) -> str:
    """One line of JSON; each worker gains `live` and `last_beat_age_seconds`."""
    document: dict[str, Any] = asdict(snapshot)
    for worker, beat in zip(document["workers"], snapshot.workers, strict=True):
        worker["live"] = beat.is_live(snapshot.taken_at)
        worker["last_beat_age_seconds"] = round(max(snapshot.taken_at - beat.beat_at, 0.0), 3)
    return json.dumps(document)


def render(snapshot: Snapshot) -> str:
    """Two plain-text tables; a shard no live worker serves shows NONE as its owners."""
    now = snapshot.taken_at
    live = sum(beat.is_live(now) for beat in snapshot.workers)
    title = (
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}  {len(snapshot.shards)} shards, "
        f"{live} live workers, {len(snapshot.workers) - live} stale"
    )
    shard_rows = [
        [
            str(s.shard),
            str(s.queued),
            _oldest(s),
            str(s.uploads),
            ",".join(s.owners) or "NONE",
            str(s.collections),
            str(s.images),
        ]
        for s in snapshot.shards
    ]
    worker_rows = [
        [
            beat.name,
            "live" if beat.is_live(now) else "stale",
            ",".join(map(str, beat.shards)) or "-",
            str(beat.jobs_done),
            str(beat.jobs_dropped),
            _duration(now - beat.beat_at),
            _kib(beat.rss_kb) if beat.rss_kb else "-",
        ]
        for beat in snapshot.workers
    ]
    return "\n\n".join(
        [
            title,
            table(["shard", "queued", "oldest", "uploads", "owners", "collections", "images"], shard_rows, ">>>><>>"),
            table(["worker", "state", "shards", "done", "dropped", "last beat", "peak rss"], worker_rows, "<<<>>>>")
            if worker_rows
            else "No worker has sent a heartbeat.",
        ]
    )


def _oldest(shard: ShardStatus) -> str:
    if shard.oldest_job_age_seconds is not None:
        return _duration(shard.oldest_job_age_seconds)
    return "expired" if shard.queued else "-"


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _kib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB" if kib < 10 * 1024 * 1024 else f"{kib / 1024 / 1024:.1f} GiB"


def run(settings: Settings, *, watch: float | None, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Prints one snapshot, or with `watch` one every `watch` seconds until Ctrl-C (exit 0).

    A Redis failure ends a single snapshot with exit code 1; a watch reports it and keeps trying,
    so it outlives a Redis restart.
    """
    show: Callable[[Snapshot], str] = to_json if as_json else render
    connection = redis.Redis.from_url(
        settings.redis_url, socket_timeout=_REDIS_TIMEOUT_SECONDS, socket_connect_timeout=_REDIS_TIMEOUT_SECONDS
    )
    try:
        if watch is None:
            return 0 if _print_frame(connection, settings.shards, show, out) else 1
        # JSON lines and redirected output are for programs: no escape codes there.
        clear = _CLEAR_SCREEN if not as_json and out.isatty() else ""
        while True:
            _print_frame(connection, settings.shards, show, out, clear)
            time.sleep(watch)
    except KeyboardInterrupt:
        return 0
    finally:
        connection.close()


def _print_frame(
    connection: redis.Redis, shards: int, show: Callable[[Snapshot], str], out: TextIO, prefix: str = ""
) -> bool:
    """Prints one snapshot; False, having said why on stderr, if Redis failed."""
    try:
        frame = show(read(connection, shards))
    except redis.RedisError as exc:
        print(f"recog: Redis failed: {exc}", file=sys.stderr, flush=True)
        return False
    print(prefix + frame, file=out, flush=True)
    return True
