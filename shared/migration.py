"""Moves reference features out of Redis into the blob store, once, when a deployment upgrades.

Before the blob store, each collection kept its images' feature records in a Redis hash
(`keys.legacy_features`): ~115 KB of Redis memory per image. Each record is written to the blob
store (`shared.blobs.FEATURES`, unchanged: it carries its item and extraction digest), then the
image is added to the collection's references and its record deleted from the hash, in that order,
so a crash at any point leaves every image either still in the hash or already moved: running
again finishes the job. Every worker runs it before it loads its shards (under a lock, so one
moves and the others wait), and `recog migrate` runs it by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis

from shared import keys, replies
from shared.blobs import FEATURES, BlobStore, image_prefix
from shared.codec import decode_feature_record
from shared.errors import CodecError

log = logging.getLogger("recog.migration")

_BATCH = 200
_LOCK_SECONDS = 60  # renewed per batch; a crashed migrator's lock frees itself this fast


@dataclass
class Moved:
    """What a migration did."""

    collections: int = 0
    images: int = 0
    bytes: int = 0
    unreadable: int = 0


def pending(connection: redis.Redis) -> list[str]:
    """The ids of the collections that still keep features in Redis."""
    pattern = keys.legacy_features("*")
    return [replies.text(key).split(":")[-2] for key in connection.scan_iter(match=pattern, count=1000)]


def waiting(connection: redis.Redis) -> int:
    """How many images still have their features in Redis."""
    return sum(int(connection.hlen(keys.legacy_features(c))) for c in pending(connection))


def migrate(connection: redis.Redis, blobs: BlobStore, progress: Callable[[int], None] | None = None) -> Moved:
    """Moves every collection's features to the blob store; `progress(n)` after each batch of n
    images. Safe to run at any time, by several processes at once (they take turns)."""
    moved = Moved()
    if not pending(connection):
        return moved
    with connection.lock(keys.MIGRATION, timeout=_LOCK_SECONDS, blocking_timeout=None) as lock:
        for collection in pending(connection):  # again: another process may have moved them meanwhile
            moved.collections += 1
            while batch := _batch(connection, collection):
                _move(connection, blobs, collection, batch, moved)
                lock.extend(_LOCK_SECONDS, replace_ttl=True)
                if progress:
                    progress(len(batch))
            log.info("collection %s: features moved to the blob store", collection)
    if moved.images or moved.unreadable:
        log.warning(
            "moved the features of %d image(s) of %d collection(s) out of Redis into the blob store "
            "(%.1f MB); %d unreadable record(s) dropped",
            moved.images,
            moved.collections,
            moved.bytes / 1e6,
            moved.unreadable,
        )
    return moved


def _batch(connection: redis.Redis, collection: str) -> dict[str, bytes]:
    """Up to `_BATCH` image id -> feature record pairs still in the collection's legacy hash."""
    _, found = connection.hscan(keys.legacy_features(collection), 0, count=_BATCH)
    pairs = replies.raw_hash(found)
    return {replies.text(image): record for image, record in list(pairs.items())[:_BATCH]}


def _move(connection: redis.Redis, blobs: BlobStore, collection: str, batch: dict[str, bytes], moved: Moved) -> None:
    references: dict[str, str] = {}
    for image, record in batch.items():
        try:
            item = decode_feature_record(record).item
        except CodecError:
            moved.unreadable += 1
            log.warning("image %s of collection %s: unreadable feature record, dropped", image, collection)
            continue
        blobs.put(f"{image_prefix(collection, item, image)}/{FEATURES}", record)
        references[image] = item
        moved.images += 1
        moved.bytes += len(record)
    with connection.pipeline(transaction=True) as pipe:
        if references:
            pipe.hset(keys.collection_references(collection), mapping=references)  # type: ignore[arg-type]
        pipe.hdel(keys.legacy_features(collection), *batch)
        pipe.execute()
