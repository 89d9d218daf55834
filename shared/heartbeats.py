"""Reading workers' heartbeats back: the `keys.worker(name)` hashes that workers/heartbeat.py writes.

Pure functions over raw Redis values, so the API's asynchronous scrape (api/metrics.py), the
workers' ownership loop and `recog status` read them the same way; only their round trips differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from rq.utils import utcparse

from shared.ownership import LIVE_SECONDS


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
    images: dict[int, int] = field(default_factory=dict)  # shard -> reference images indexed
    load_seconds: dict[int, float] = field(default_factory=dict)  # shard -> time its index took to load

    @classmethod
    def parse(cls, name: str, beat_at: float, fields: Mapping[bytes, bytes]) -> Heartbeat:
        text = {k.decode(): v.decode() for k, v in fields.items()}
        return cls(
            name=name,
            beat_at=beat_at,
            host=text.get("host", ""),
            pid=int(text["pid"]) if "pid" in text else None,
            shards=parse_shards(text.get("shards", "")),
            jobs_done=int(text.get("jobs_done", 0)),
            jobs_dropped=int(text.get("jobs_dropped", 0)),
            rss_kb=int(text.get("rss_kb", 0)),
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


def job_age(enqueued_at: bytes | None, now: float) -> float | None:
    """Seconds since an RQ job was queued, from its hash's `enqueued_at`; None if the hash is gone."""
    if not enqueued_at:
        return None
    return max(now - utcparse(enqueued_at.decode()).timestamp(), 0.0)
