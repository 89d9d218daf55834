"""The indexes a worker holds: one `CollectionIndex` per collection of the shards it serves.

A shard is loaded from the features hashes in Redis, then kept current by tailing the shard's
event stream (`keys.shard_events`), so an uploaded image is searchable within a second without a
restart. The stream position is read *before* loading, so an event that races the load is applied
again afterwards; applying an event twice is harmless (add replaces, remove ignores the absent).
Shards come and go at run time as ownership moves between workers (`workers.ownership`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

import redis

from shared import keys
from shared.codec import IndexEvent, decode_event, decode_feature_record
from shared.errors import CodecError
from shared.shards import shard_of
from workers.features import Features
from workers.index import CollectionIndex

log = logging.getLogger("recog.worker.index")

_SCAN_BATCH = 500
_BLOCK_MS = 1000


@dataclass
class Collection:
    """A collection's index and the item of each indexed image (results are per item)."""

    shard: int
    index: CollectionIndex = field(default_factory=CollectionIndex)
    items: dict[str, str] = field(default_factory=dict)


class ShardState:
    def __init__(self, connection: redis.Redis, total_shards: int) -> None:
        self._redis = connection
        self._total = total_shards
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
        last = self._redis.xrevrange(keys.shard_events(shard), count=1)
        cursor = last[0][0].decode() if last else "0-0"
        total = 0
        for raw in self._redis.smembers(keys.shard_collections(shard)):
            collection = self._collection(raw.decode())
            for image_id, record in self._redis.hscan_iter(keys.collection_features(raw.decode()), count=_SCAN_BATCH):
                total += self._add(collection, image_id.decode(), record)
        with self._lock:
            self._cursors[shard] = cursor
        return total

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

    def _add(self, collection: Collection, image_id: str, record: bytes) -> int:
        try:
            item, blob = decode_feature_record(record)
            features = Features.from_bytes(blob)
        except CodecError:
            log.warning("skipping image %s: its stored features cannot be read", image_id)
            return 0
        collection.index.add(image_id, features)
        collection.items[image_id] = item
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
                self._add(self._collection(event.collection), event.image, record)
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
                batches = self._redis.xread(streams, block=_BLOCK_MS)  # type: ignore[arg-type]
            except redis.RedisError as exc:
                log.warning("index event stream unavailable (%s); retrying", exc)
                stop.wait(1.0)
                continue
            for stream, entries in batches or []:
                shard = shard_of_stream[stream.decode()]
                for entry_id, fields in entries:
                    with self._lock:
                        if shard not in self._cursors:
                            break  # unloaded meanwhile
                        self._cursors[shard] = entry_id.decode()
                    try:
                        self.apply(decode_event(fields))
                    except CodecError as exc:
                        log.warning("skipping unreadable index event %s: %s", entry_id, exc)
