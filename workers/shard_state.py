"""The indexes a worker holds: one `CollectionIndex` per collection of the shards it serves.

Loaded once at start from the features hashes in Redis, then kept current by tailing each shard's
event stream (`keys.shard_events`), so an uploaded image is searchable within a second without a
restart. The stream position is read *before* loading, so an event that races the load is applied
again afterwards; applying an event twice is harmless (add replaces, remove ignores the absent).
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
    def __init__(self, connection: redis.Redis, shards: frozenset[int], total_shards: int) -> None:
        self._redis = connection
        self.shards = shards
        self._total = total_shards
        self._collections: dict[str, Collection] = {}
        self._lock = threading.Lock()  # guards the dict of collections, not the indexes themselves
        self._cursors = {keys.shard_events(s): "0-0" for s in sorted(shards)}

    def get(self, collection_id: str) -> Collection | None:
        return self._collections.get(collection_id)

    def images_per_shard(self) -> dict[int, int]:
        counts = dict.fromkeys(self.shards, 0)
        with self._lock:
            for collection in self._collections.values():
                counts[collection.shard] += len(collection.items)
        return counts

    def load(self) -> int:
        """Indexes every image of every collection of the served shards; returns how many."""
        for stream in self._cursors:
            last = self._redis.xrevrange(stream, count=1)
            self._cursors[stream] = last[0][0].decode() if last else "0-0"
        total = 0
        for shard in sorted(self.shards):
            for raw in self._redis.smembers(keys.shard_collections(shard)):
                total += self._load_collection(raw.decode())
        return total

    def _load_collection(self, collection_id: str) -> int:
        collection = self._collection(collection_id)
        count = 0
        for image_id, record in self._redis.hscan_iter(keys.collection_features(collection_id), count=_SCAN_BATCH):
            count += self._add(collection, image_id.decode(), record)
        return count

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
        else:
            log.warning("ignoring unknown index event %r", event.op)

    def follow(self, stop: threading.Event) -> None:
        """Applies the shards' index events until `stop` is set (runs on its own thread)."""
        while not stop.is_set():
            try:
                batches = self._redis.xread(self._cursors, block=_BLOCK_MS)  # type: ignore[arg-type]
            except redis.RedisError as exc:
                log.warning("index event stream unavailable (%s); retrying", exc)
                stop.wait(1.0)
                continue
            for stream, entries in batches or []:
                for entry_id, fields in entries:
                    self._cursors[stream.decode()] = entry_id.decode()
                    try:
                        self.apply(decode_event(fields))
                    except CodecError as exc:
                        log.warning("skipping unreadable index event %s: %s", entry_id, exc)
