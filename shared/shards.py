"""The shard map: which shard owns a collection, and the names of that shard's RQ queues.

The hash must be stable across processes and Python versions (so not `hash()`): every API process
and worker has to agree on it without talking to each other.
"""

from __future__ import annotations

import zlib


def shard_of(collection_id: str, shards: int) -> int:
    """The shard (0..shards-1) that owns `collection_id`."""
    return zlib.crc32(collection_id.encode("ascii")) % shards


def queue_name(shard: int) -> str:
    """The RQ queue that carries the search jobs of `shard`."""
    return f"recog-shard-{shard}"


def ingest_queue_name(shard: int) -> str:
    """The RQ queue that carries the uploads of `shard`'s collections; every worker serves it after
    its search queues (`workers.worker`)."""
    return f"recog-ingest-{shard}"
