"""Every Redis key the service uses, in one place (RQ's own `rq:*` keys excepted).

Layout (all under the `recog:` prefix):

| key | type | holds |
|---|---|---|
| `collections` | zset | collection ids, scored by creation time (listing order) |
| `collection:{id}` | hash | a collection's fields |
| `collection-names` | hash | name -> collection id (names are unique) |
| `collection:{id}:items` | zset | the collection's item ids by creation time |
| `collection:{id}:tokens` | zset | the collection's tokens by creation time |
| `collection:{id}:references[:{part}]` | hash | image id -> item id: what workers index, per part (`shared.parts`) |
| `collection:{id}:pictures` | hash | SHA-256 of an image's bytes (base64url) -> image id: one picture, one reference |
| `collection:{id}:features` | hash | old versions: image id -> feature record (`shared.migration` moves them) |
| `items` / `item:{id}` | zset / hash | all items by creation time / an item's fields |
| `item:{id}:images` | zset | the item's image ids by creation time |
| `images` / `image:{id}` | zset / hash | all images by creation time / an image's fields |
| `tokens` / `token:{token}` | zset / hash | all tokens / a token's fields (its collection) |
| `apikeys` | set | SHA-256 hex digests of management API keys |
| `apikey-info` | hash | API key digest -> JSON {prefix, created_at, label}, for listing keys |
| `shard:{n}:collections` | set | the collection parts shard n owns (`shared.parts.part_key`) |
| `shard:{n}:events` | stream | index changes for shard n's workers (add / remove / drop) |
| `rate:{token}:{second}` | string | searches a rate-limited token made in that second; expires |
| `reply:{job_id}` | list | a search's or an upload's msgpack reply, pushed once by a worker; expires |
| `migration` | string | held while a process moves features out of Redis (`shared.migration`) |
| `in-flight` | zset | admitted searches not yet answered, scored by their deadline (admission) |
| `shard:{n}:in-flight` | zset | the same, of shard n's collections |
| `worker:{name}` | hash | a worker's heartbeat: shards served, indexed images, jobs done |
| `workers` | zset | worker names scored by last heartbeat time |
"""

from __future__ import annotations

PREFIX = "recog:"

COLLECTIONS = PREFIX + "collections"
COLLECTION_NAMES = PREFIX + "collection-names"
ITEMS = PREFIX + "items"
IMAGES = PREFIX + "images"
TOKENS = PREFIX + "tokens"
APIKEYS = PREFIX + "apikeys"
APIKEY_INFO = PREFIX + "apikey-info"
WORKERS = PREFIX + "workers"
IN_FLIGHT = PREFIX + "in-flight"
MIGRATION = PREFIX + "migration"


def collection(collection_id: str) -> str:
    return f"{PREFIX}collection:{collection_id}"


def collection_items(collection_id: str) -> str:
    return f"{PREFIX}collection:{collection_id}:items"


def collection_tokens(collection_id: str) -> str:
    return f"{PREFIX}collection:{collection_id}:tokens"


def collection_references(collection_id: str, part: int = 0) -> str:
    """Part 0's references keep the name they had before collections had parts."""
    suffix = f":{part}" if part else ""
    return f"{PREFIX}collection:{collection_id}:references{suffix}"


def collection_pictures(collection_id: str) -> str:
    return f"{PREFIX}collection:{collection_id}:pictures"


def legacy_features(collection_id: str) -> str:
    """Where features were kept before the blob store; read only to move them out."""
    return f"{PREFIX}collection:{collection_id}:features"


def item(item_id: str) -> str:
    return f"{PREFIX}item:{item_id}"


def item_images(item_id: str) -> str:
    return f"{PREFIX}item:{item_id}:images"


def image(image_id: str) -> str:
    return f"{PREFIX}image:{image_id}"


def token(token: str) -> str:
    return f"{PREFIX}token:{token}"


def shard_collections(shard: int) -> str:
    return f"{PREFIX}shard:{shard}:collections"


def shard_in_flight(shard: int) -> str:
    return f"{PREFIX}shard:{shard}:in-flight"


def shard_events(shard: int) -> str:
    return f"{PREFIX}shard:{shard}:events"


def rate(token: str, second: int) -> str:
    return f"{PREFIX}rate:{token}:{second}"


def reply(job_id: str) -> str:
    return f"{PREFIX}reply:{job_id}"


def worker(name: str) -> str:
    return f"{PREFIX}worker:{name}"
