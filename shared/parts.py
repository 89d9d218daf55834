"""Collections bigger than one worker: a collection's images are filled into parts of at most
`RECOG_PART_IMAGES` images, each part indexed, sharded and served like a collection of its own.

Parts fill in order: an image goes to the collection's last part, and once that holds the limit a
new, empty part is opened (on the shard its key hashes to). Nothing ever moves between parts, so a
growing collection rebalances without downtime: a new part starts empty on its shard's workers and
fills through the usual `add` events. A search fans out to every part and the front end merges the
replies by score (`api.dispatch`). Part 0's key is the collection id itself, so a collection that
never grows past the limit is exactly what it was before parts existed.
"""

from __future__ import annotations

_SEPARATOR = "~"


def part_key(collection: str, part: int) -> str:
    """What workers index, shards hash, and events and jobs name for part `part` of `collection`."""
    return collection if part == 0 else f"{collection}{_SEPARATOR}{part}"


def split_key(key: str) -> tuple[str, int]:
    """The collection and part number of a `part_key`."""
    collection, _, part = key.partition(_SEPARATOR)
    return collection, int(part) if part else 0
