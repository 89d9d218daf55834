"""The indexes a worker holds: one `CollectionIndex` per collection of the shards it serves.

A shard is loaded from the collections' references in Redis (image -> item) and their features in
the blob store (`workers.references`), then kept current by tailing the shard's event stream
(`keys.shard_events`), so an uploaded image is searchable within a second without a restart. The
stream position is read *before* loading, so an event that races the load is applied again
afterwards; applying an event twice is harmless (add replaces, remove ignores the absent). Shards
come and go at run time as ownership moves between workers (`workers.ownership`).

With snapshots (`workers.snapshots`), a collection is opened from its saved index and only the
events after the snapshot are replayed; a collection built from the blob store is saved for the
next start, and then served from the saved files as a restarted worker would be: its postings and
keypoints are memory-mapped pages of the page cache (shared by the workers of one host, given back
under memory pressure), not the build's anonymous memory (~160 KB per reference).

What this module calls a collection is a part of one (`shared.parts`): its id is the part's key,
which events and jobs name; part 0's key is the collection id.

Features stored under other extraction settings than the worker's are extracted again from the
originals (`workers.references`); what was not indexed is logged once per collection loaded.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from shared import keys, replies
from shared.blobs import BlobStore
from shared.codec import IndexEvent, decode_event
from shared.errors import CodecError
from shared.parts import split_key
from shared.shards import shard_of
from workers import metrics, references
from workers.index import CollectionIndex
from workers.memory import release_freed_memory
from workers.references import Outcome
from workers.snapshots import Snapshots, stream_id
from workers.tuning import extraction_id

log = logging.getLogger("recog.worker.index")

_SCAN_BATCH = 500
_BLOCK_MS = 1000
_RESAVE_EVENTS = 1000  # a snapshot this many events behind is saved again after its replay


@dataclass
class Collection:
    """A collection's index and the item of each indexed image (results are per item)."""

    shard: int
    index: CollectionIndex = field(default_factory=CollectionIndex)
    items: dict[str, str] = field(default_factory=dict)


class ShardState:
    def __init__(
        self, connection: redis.Redis, blobs: BlobStore, total_shards: int, snapshots: Snapshots | None = None
    ) -> None:
        self._redis = connection
        self._blobs = blobs
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
        found: Counter[Outcome] = Counter()
        references = keys.collection_references(*split_key(collection_id))
        for image_id, item_id in self._redis.hscan_iter(references, count=_SCAN_BATCH):
            found[self._add(collection, collection_id, replies.text(image_id), replies.text(item_id))] += 1
        _report(found, extraction_id(collection.index.settings), f"collection {collection_id}")
        total = found[Outcome.STORED] + found[Outcome.UNRECORDED] + found[Outcome.REEXTRACTED]
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
        saved = self._snapshots.save(collection_id, collection.index, dict(collection.items), cursor)
        if saved is None:
            return
        try:
            mapped = CollectionIndex.open(saved, collection.index.settings)
        except (OSError, ValueError) as exc:  # just written: only a failing disk gets here
            log.warning("serving collection %s from memory: its saved index cannot be opened (%s)", collection_id, exc)
            return
        # The shard is not followed yet (`load_shard`): no event lands on the built index meanwhile.
        collection.index = mapped
        release_freed_memory()  # the built index's lists, freed in pieces, stay with the heap otherwise

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

    def _add(self, collection: Collection, key: str, image_id: str, item_id: str) -> Outcome:
        """Indexes an image's stored features, if it has usable ones (`workers.references.load`)."""
        collection_id, _ = split_key(key)
        features, outcome = references.load(self._blobs, collection_id, item_id, image_id, collection.index.settings)
        if features is not None:
            collection.index.add(image_id, features)
            collection.items[image_id] = item_id
        return outcome

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
            item = event.item or replies.optional_text(
                self._redis.hget(keys.collection_references(*split_key(event.collection)), event.image)
            )
            if not item:
                return  # deleted again since; its remove event follows
            collection = self._collection(event.collection)
            outcome = self._add(collection, event.collection, event.image, item)
            if outcome is not Outcome.MISSING:  # missing: deleted since, as above
                _report(Counter([outcome]), extraction_id(collection.index.settings), f"image {event.image}")
            log.debug("image %s of collection %s: %s", event.image, event.collection, outcome.value)
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


def _report(found: Counter[Outcome], expected: str, where: str) -> None:
    """Logs (and counts) the images of a collection load that were not indexed as stored."""
    if reextracted := found[Outcome.REEXTRACTED]:
        metrics.REEXTRACTED_IMAGES.inc(reextracted)
        log.warning(
            "%s: extracted the features of %d image(s) again from their originals: they were stored "
            "under other settings than this worker's (%s)",
            where,
            reextracted,
            expected,
        )
    if unrecorded := found[Outcome.UNRECORDED]:
        log.warning(
            "%s: indexing %d image(s) whose features were stored before extraction settings were recorded "
            "(their settings are unknown; this worker extracts under %s)",
            where,
            unrecorded,
            expected,
        )
    for outcome in (Outcome.MISSING, Outcome.UNREADABLE):
        if skipped := found[outcome]:
            metrics.SKIPPED_IMAGES.labels(outcome.value).inc(skipped)
            log.warning(
                "%s: not indexing %d image(s): their features are %s in the blob store", where, skipped, outcome.value
            )


def _replayable(saved: str, current: str, oldest: str | None) -> bool:
    """Whether every event after a snapshot's stream id is still in the stream: the stream's
    oldest entry is not after it (nothing after it was trimmed), and Redis is not older than it."""
    if saved == current:
        return True
    if oldest is None or stream_id(saved) > stream_id(current):
        return False
    return stream_id(oldest) <= stream_id(saved)
