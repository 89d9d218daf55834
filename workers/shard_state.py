"""The indexes a worker holds: one `CollectionIndex` per collection of the shards it serves.

A shard is loaded from the features hashes in Redis, then kept current by tailing the shard's
event stream (`keys.shard_events`), so an uploaded image is searchable within a second without a
restart. The stream position is read *before* loading, so an event that races the load is applied
again afterwards; applying an event twice is harmless (add replaces, remove ignores the absent).
Shards come and go at run time as ownership moves between workers (`workers.ownership`).

With snapshots (`workers.snapshots`), a collection is opened from its saved index and only the
events after the snapshot are replayed; a collection loaded from Redis is saved for the next start.

Stored features record the digest of the settings they were extracted with. Features of other
settings than the index's are not indexed (they would be compared with queries extracted
differently); the originals are with the API (a worker container does not mount them), so they
are not re-extracted: uploading the image again indexes it. Features stored before the digest was
recorded are indexed as they are, as they always were. Either is logged once per collection
loaded, and per image for an image added while the worker runs.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys, replies
from shared.codec import IndexEvent, decode_event, decode_feature_record
from shared.errors import CodecError
from shared.shards import shard_of
from workers import metrics
from workers.features import Features
from workers.index import CollectionIndex
from workers.snapshots import Snapshots, stream_id
from workers.tuning import extraction_id

log = logging.getLogger("recog.worker.index")

_SCAN_BATCH = 500
_BLOCK_MS = 1000
_RESAVE_EVENTS = 1000  # a snapshot this many events behind is saved again after its replay
_UNRECORDED = "unrecorded"  # the extraction digest of features stored before it was recorded


@dataclass
class Collection:
    """A collection's index and the item of each indexed image (results are per item)."""

    shard: int
    index: CollectionIndex = field(default_factory=CollectionIndex)
    items: dict[str, str] = field(default_factory=dict)


class ShardState:
    def __init__(self, connection: redis.Redis, total_shards: int, snapshots: Snapshots | None = None) -> None:
        self._redis = connection
        self._total = total_shards
        self._snapshots = snapshots
        self._collections: dict[str, Collection] = {}
        self._cursors: dict[int, str] = {}  # shard -> last applied event id of its stream
        self._lock = threading.Lock()  # guards the two dicts above, not the indexes themselves

    @property
    def shards(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._cursors)

    def get(self, collection_id: str) -> Collection | None:
        return self._collections.get(collection_id)

    def images_per_shard(self) -> dict[int, int]:
        with self._lock:
            counts = dict.fromkeys(self._cursors, 0)
            for collection in self._collections.values():
                if collection.shard in counts:
                    counts[collection.shard] += len(collection.items)
        return counts

    def load_shard(self, shard: int) -> int:
        """Indexes every image of every collection of `shard`, then follows its events; returns
        how many images it indexed."""
        stream = keys.shard_events(shard)
        last = self._redis.xrevrange(stream, count=1)
        cursor = replies.text(last[0][0]) if last else "0-0"
        first = self._redis.xrange(stream, count=1)
        oldest = replies.text(first[0][0]) if first else None
        total = sum(
            self._load_collection(shard, replies.text(raw), cursor, oldest)
            for raw in self._redis.smembers(keys.shard_collections(shard))
        )
        with self._lock:
            self._cursors[shard] = cursor
        return total

    def _load_collection(self, shard: int, collection_id: str, cursor: str, oldest: str | None) -> int:
        snapshot = self._snapshots.load(collection_id) if self._snapshots else None
        if snapshot is not None and _replayable(snapshot.cursor, cursor, oldest):
            with self._lock:
                self._collections[collection_id] = Collection(shard, snapshot.index, dict(snapshot.items))
            replayed = self._replay(shard, snapshot.cursor, cursor, collection_id)
            log.info("opened the saved index of collection %s, %d events replayed", collection_id, replayed)
            collection = self.get(collection_id)
            if collection is None:  # dropped by a replayed event
                return 0
            if replayed >= _RESAVE_EVENTS:
                self._save(collection_id, collection, cursor)
            return len(collection.items)
        collection = self._collection(collection_id)
        total = 0
        foreign: Counter[str] = Counter()
        for image_id, record in self._redis.hscan_iter(keys.collection_features(collection_id), count=_SCAN_BATCH):
            total += self._add(collection, replies.text(image_id), replies.raw(record), foreign)
        _report_foreign(foreign, extraction_id(collection.index.settings), f"collection {collection_id}")
        if self._snapshots:  # it skips collections below its size threshold
            self._save(collection_id, collection, cursor)
        return total

    def _replay(self, shard: int, after: str, upto: str, collection_id: str) -> int:
        """Applies the events of `collection_id` in (after, upto] of the shard's stream."""
        replayed = 0
        start = f"({after}"
        while entries := self._redis.xrange(keys.shard_events(shard), min=start, max=upto, count=_SCAN_BATCH):
            for entry_id, fields in entries:
                try:
                    event = decode_event(replies.raw_hash(fields))
                except CodecError as exc:
                    log.warning("skipping unreadable index event %s: %s", entry_id, exc)
                    continue
                if event.collection == collection_id:
                    self.apply(event)
                    replayed += 1
            start = f"({replies.text(entries[-1][0])}"
        return replayed

    def _save(self, collection_id: str, collection: Collection, cursor: str) -> None:
        """Saves a snapshot before the shard is served: its searches would otherwise wait on the
        index while it is written (seconds at 100,000 images). `cursor` was read before the index
        was built, so the snapshot holds at least every event up to it (replaying more is harmless)."""
        assert self._snapshots is not None
        self._snapshots.save(collection_id, collection.index, dict(collection.items), cursor)

    def unload_shard(self, shard: int) -> None:
        with self._lock:
            self._cursors.pop(shard, None)
            for collection_id in [c for c, col in self._collections.items() if col.shard == shard]:
                del self._collections[collection_id]

    def _collection(self, collection_id: str) -> Collection:
        with self._lock:
            found = self._collections.get(collection_id)
            if found is None:
                found = self._collections[collection_id] = Collection(shard_of(collection_id, self._total))
            return found

    def _add(self, collection: Collection, image_id: str, record: bytes, foreign: Counter[str] | None = None) -> int:
        """Indexes an image's stored record; 1 if it did. Features recorded under other extraction
        settings than the index's are not indexed, those recorded under none (stored before the
        digest was) are; both are counted in `foreign` by digest for the caller to report, or
        reported here without a `foreign`."""
        try:
            stored = decode_feature_record(record)
            features = Features.from_bytes(stored.features)
        except CodecError:
            log.warning("skipping image %s: its stored features cannot be read", image_id)
            metrics.SKIPPED_IMAGES.labels("unreadable").inc()
            return 0
        found, expected = stored.extraction or _UNRECORDED, extraction_id(collection.index.settings)
        if found != expected:
            if foreign is None:
                _report_foreign(Counter([found]), expected, f"image {image_id}")
            else:
                foreign[found] += 1
            if found != _UNRECORDED:
                return 0
        collection.index.add(image_id, features)
        collection.items[image_id] = stored.item
        return 1

    def apply(self, event: IndexEvent) -> None:
        if event.op == "drop":
            with self._lock:
                self._collections.pop(event.collection, None)
        elif event.op == "remove":
            collection = self.get(event.collection)
            if collection is not None:
                collection.index.remove(event.image)
                collection.items.pop(event.image, None)
        elif event.op == "add":
            record = self._redis.hget(keys.collection_features(event.collection), event.image)
            if record is not None:  # None: deleted again since; its remove event follows
                self._add(self._collection(event.collection), event.image, replies.raw(record))
                log.debug("indexed image %s of collection %s", event.image, event.collection)
        else:
            log.warning("ignoring unknown index event %r", event.op)

    def follow(self, stop: threading.Event) -> None:
        """Applies the served shards' index events until `stop` is set (runs on its own thread)."""
        while not stop.is_set():
            with self._lock:
                streams = {keys.shard_events(s): cursor for s, cursor in self._cursors.items()}
                shard_of_stream = {keys.shard_events(s): s for s in self._cursors}
            if not streams:
                stop.wait(_BLOCK_MS / 1000)
                continue
            try:
                batches: Any = self._redis.xread(streams, block=_BLOCK_MS)  # type: ignore[arg-type]
            except redis.RedisError as exc:
                log.warning("index event stream unavailable (%s); retrying", exc)
                stop.wait(1.0)
                continue
            for stream, entries in batches or []:
                shard = shard_of_stream[replies.text(stream)]
                for entry_id, fields in entries:
                    with self._lock:
                        if shard not in self._cursors:
                            break  # unloaded meanwhile
                        self._cursors[shard] = replies.text(entry_id)
                    try:
                        self.apply(decode_event(replies.raw_hash(fields)))
                    except CodecError as exc:
                        log.warning("skipping unreadable index event %s: %s", entry_id, exc)


def _report_foreign(found: Counter[str], expected: str, where: str) -> None:
    """Logs (and counts) the features of other and of unrecorded extraction settings `_add` met."""
    unrecorded = found.pop(_UNRECORDED, 0)
    if skipped := sum(found.values()):
        metrics.SKIPPED_IMAGES.labels("settings").inc(skipped)
        log.warning(
            "%s: not indexing %d image(s) whose features were extracted under other settings "
            "(found %s; this worker extracts under %s): re-upload them to make them searchable",
            where,
            skipped,
            ", ".join(f"{digest} x {count}" for digest, count in found.most_common()),
            expected,
        )
    if unrecorded:
        log.warning(
            "%s: indexing %d image(s) whose features were stored before extraction settings were recorded "
            "(their settings are unknown; this worker extracts under %s): re-upload them to record them",
            where,
            unrecorded,
            expected,
        )


def _replayable(saved: str, current: str, oldest: str | None) -> bool:
    """Whether every event after a snapshot's stream id is still in the stream: the stream's
    oldest entry is not after it (nothing after it was trimmed), and Redis is not older than it."""
    if saved == current:
        return True
    if oldest is None or stream_id(saved) > stream_id(current):
        return False
    return stream_id(oldest) <= stream_id(saved)
