"""Removes what a crash left in the blob store: the files of images the catalogue does not hold.

Deleting an image, item or collection removes its files right after the catalogue change
(`api.resources`); an upload stores its original before its catalogue entry (`api.uploads`). A
process that dies in between, or a worker still writing thumbnails for an upload whose client gave
up, leaves files no image owns. An image folder is swept when the catalogue has no such image (of
that item and collection) and none of its files was written for `grace_seconds`, so an upload in
progress is never touched.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from shared import keys
from shared.blobs import BlobStore

log = logging.getLogger("recog.sweep")

_BATCH = 500


@dataclass
class Swept:
    """What a sweep did: image folders looked at, and those removed."""

    images: int = 0
    removed: int = 0


def sweep(
    connection: redis.Redis,
    blobs: BlobStore,
    grace_seconds: float,
    progress: Callable[[int], None] | None = None,
) -> Swept:
    """Removes the image folders no catalogued image owns; `progress(n)` after each batch checked."""
    newest: dict[str, float] = {}
    for blob in blobs.list(""):
        parts = blob.key.split("/")
        if len(parts) == 4:  # {collection}/{item}/{image}/{name}; anything else is not ours to judge
            prefix = "/".join(parts[:3])
            newest[prefix] = max(newest.get(prefix, 0.0), blob.modified)
    settled = sorted(prefix for prefix, written in newest.items() if written < time.time() - grace_seconds)
    swept = Swept(images=len(newest))
    for start in range(0, len(settled), _BATCH):
        batch = settled[start : start + _BATCH]
        for prefix in _orphans(connection, batch):
            blobs.delete_prefix(prefix)
            swept.removed += 1
            log.info("removed %s from the blob store: no such image in the catalogue", prefix)
        if progress:
            progress(len(batch))
    return swept


def _orphans(connection: redis.Redis, prefixes: list[str]) -> list[str]:
    """The image prefixes whose image is not catalogued under that collection and item."""
    with connection.pipeline(transaction=False) as pipe:
        for prefix in prefixes:
            pipe.hmget(keys.image(prefix.split("/")[2]), ["collection", "item"])
        found = pipe.execute()
    orphans = []
    for prefix, (collection, item) in zip(prefixes, found, strict=True):
        owner = [json.loads(collection), json.loads(item)] if collection and item else None
        if owner != prefix.split("/")[:2]:
            orphans.append(prefix)
    return orphans
