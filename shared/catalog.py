"""The catalogue: collections, items, images and tokens, in Redis (layout: `shared.keys`).

Each object is a hash whose values are JSON, so types (the item's `content` object, `trackable`)
survive a round trip and a partial update is one HSET. Every object is also listed in two zsets
scored by creation time: all objects of its kind, and its parent's children (a collection's items
and tokens, an item's images); those zsets give listing order and cascades.

Writes that touch several keys run in MULTI under WATCH of the parent, so a crash or a concurrent
delete never leaves an object half made or a child without its parent. Index changes are published
on the owning shard's event stream inside the same transaction as the change of the collection's
references (image -> item), which is what lets workers pick up an image within a second. An image's
features are in the blob store before its catalogue entry is written, so no event comes without
its data.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from shared import keys
from shared.codec import IndexEvent, encode_event
from shared.errors import NotFound, ValidationError
from shared.ids import new_id, new_token
from shared.parts import part_key
from shared.shards import shard_of

Record = dict[str, Any]

# Bounds each shard's event stream; workers read it within a second, so old entries are dead weight.
EVENTS_MAXLEN = 10_000


@dataclass(frozen=True)
class Kind:
    """How one resource is stored: its hash, the zset of all of them, and (for children) the parent
    kind, whose name is also the field holding the parent's id, and the parent's zset listing them."""

    name: str
    key: Callable[[str], str]
    index: str
    id_field: str = "uuid"
    parent: Kind | None = None
    siblings: Callable[[str], str] | None = None

    def parent_index(self, record: Record) -> str | None:
        return self.siblings(record[self.parent.name]) if self.parent and self.siblings else None


COLLECTION = Kind("collection", keys.collection, keys.COLLECTIONS)
ITEM = Kind("item", keys.item, keys.ITEMS, parent=COLLECTION, siblings=keys.collection_items)
IMAGE = Kind("image", keys.image, keys.IMAGES, parent=ITEM, siblings=keys.item_images)
TOKEN = Kind("token", keys.token, keys.TOKENS, id_field="token", parent=COLLECTION, siblings=keys.collection_tokens)

ITEM_DEFAULTS: Record = {"name": "", "url": "", "custom": "", "tracking": "", "content": {}, "trackable": False}


def _now() -> tuple[float, str]:
    """The creation time as a zset score (Unix seconds) and as ISO-8601 UTC."""
    moment = datetime.now(UTC)
    return moment.timestamp(), moment.isoformat(timespec="milliseconds")


def _str(raw: object) -> str:
    """Redis replies are bytes here (the client does not decode them); ids and names are ASCII/UTF-8."""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _decode(raw: Mapping[bytes | str, bytes | str]) -> Record:
    return {_str(name): json.loads(value) for name, value in raw.items()}


def _encode(fields: Record) -> dict[str, str]:
    return {name: json.dumps(value) for name, value in fields.items()}


def _multi(pipe: Pipeline) -> None:
    """Ends a transaction's WATCH-and-read phase: what follows is queued and runs atomically at EXEC."""
    pipe.multi()  # type: ignore[no-untyped-call]  # not annotated in redis-py


async def _transact(redis: aioredis.Redis, body: Callable[[Pipeline], Awaitable[Record]], *watch: str) -> Record:
    """Runs `body` (WATCH-and-read, then `_multi`, then queued writes) until no watched key changed
    in between, and returns what `body` returned."""
    result: Record = await redis.transaction(body, *watch, value_from_callable=True)
    return result


def _link(pipe: Pipeline, kind: Kind, record: Record, score: float) -> None:
    """Queues the writes that make `record` exist: its hash and its place in both listings."""
    object_id = record[kind.id_field]
    pipe.hset(kind.key(object_id), mapping=_encode(record))  # type: ignore[arg-type]
    pipe.zadd(kind.index, {object_id: score})
    parent_index = kind.parent_index(record)
    if parent_index:
        pipe.zadd(parent_index, {object_id: score})


def _unlink(pipe: Pipeline, kind: Kind, record: Record) -> None:
    object_id = record[kind.id_field]
    pipe.delete(kind.key(object_id))
    pipe.zrem(kind.index, object_id)
    parent_index = kind.parent_index(record)
    if parent_index:
        pipe.zrem(parent_index, object_id)


def _publish(pipe: Pipeline, event: IndexEvent, shards: int) -> None:
    stream = keys.shard_events(shard_of(event.collection, shards))
    pipe.xadd(stream, encode_event(event), maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type]


# --- reads -----------------------------------------------------------------------------------


async def get(redis: aioredis.Redis | Pipeline, kind: Kind, object_id: str, field: str | None = None) -> Record:
    """One object, or NotFound; with `field` (a reference in a request), a missing object is that
    field's VALIDATION_ERROR instead."""
    raw = await redis.hgetall(kind.key(object_id))
    if raw:
        return _decode(raw)
    if field:
        raise ValidationError(f"There is no {kind.name} {object_id}.", details={field: f"no such {kind.name}"})
    raise NotFound(f"There is no {kind.name} {object_id}.")


async def get_many(redis: aioredis.Redis, kind: Kind, object_ids: Iterable[str]) -> dict[str, Record]:
    """The objects that exist among `object_ids`, in one round trip, keyed by id."""
    wanted = list(dict.fromkeys(object_ids))
    async with redis.pipeline(transaction=False) as pipe:
        for object_id in wanted:
            pipe.hgetall(kind.key(object_id))
        found = await pipe.execute()
    return {object_id: _decode(raw) for object_id, raw in zip(wanted, found, strict=True) if raw}


async def page(
    redis: aioredis.Redis, kind: Kind, *, offset: int, limit: int, parent: str | None = None
) -> tuple[list[Record], int]:
    """Objects `offset`..`offset+limit-1` in creation order (all, or the children of `parent`), and
    how many there are in all."""
    index = kind.siblings(parent) if parent is not None and kind.siblings else kind.index
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zcard(index)
        pipe.zrange(index, offset, offset + limit - 1)
        total, raw_ids = await pipe.execute()
    records = await get_many(redis, kind, [_str(raw) for raw in raw_ids])
    return list(records.values()), int(total)


async def find_collections(
    redis: aioredis.Redis, *, name: str | None, contains: str | None, offset: int, limit: int
) -> tuple[list[Record], int]:
    """Collections whose name is `name` and/or contains `contains` (case-sensitive), in creation order."""
    if name is not None:
        found = await redis.hget(keys.COLLECTION_NAMES, name)
        names = {name: _str(found)} if found else {}
    else:
        names = {_str(n): _str(i) for n, i in (await redis.hgetall(keys.COLLECTION_NAMES)).items()}
    ids = [cid for cname, cid in names.items() if contains is None or contains in cname]
    scores = await redis.zmscore(keys.COLLECTIONS, ids) if ids else []
    ordered = [cid for _, cid in sorted((score or 0.0, cid) for score, cid in zip(scores, ids, strict=True))]
    records = await get_many(redis, COLLECTION, ordered[offset : offset + limit])
    return list(records.values()), len(ordered)


async def token_grant(redis: aioredis.Redis, token: str) -> tuple[str, int | None] | None:
    """What `token` allows: its collection id and its rate limit (searches per second, None for
    none); None when the token does not exist or was revoked."""
    collection, rate_limit = await redis.hmget(keys.token(token), ["collection", "rate_limit"])
    if not collection:
        return None
    return str(json.loads(collection)), json.loads(rate_limit) if rate_limit else None


async def get_items(redis: aioredis.Redis, item_ids: Iterable[str]) -> dict[str, Record]:
    """Items by id, for rendering search results: uuid, collection, name, url, custom, tracking,
    content (decoded JSON), trackable (bool), created_at. Missing items are left out."""
    return await get_many(redis, ITEM, item_ids)


async def item_image_ids(redis: aioredis.Redis, item_ids: Iterable[str]) -> dict[str, list[str]]:
    """Each item's image ids in creation order, in one round trip."""
    wanted = list(dict.fromkeys(item_ids))
    async with redis.pipeline(transaction=False) as pipe:
        for item_id in wanted:
            pipe.zrange(keys.item_images(item_id), 0, -1)
        found = await pipe.execute()
    return {item_id: [_str(raw) for raw in ids] for item_id, ids in zip(wanted, found, strict=True)}


# --- writes ----------------------------------------------------------------------------------


async def create_collection(redis: aioredis.Redis, name: str, shards: int) -> Record:
    """A new collection with its first token; VALIDATION_ERROR when the name is taken."""
    score, created = _now()
    record = {"uuid": new_id(), "name": name, "created_at": created}
    token = {"token": new_token(), "collection": record["uuid"], "created_at": created}

    async def create(pipe: Pipeline) -> Record:
        await _claim_name(pipe, name)
        _multi(pipe)
        pipe.hset(keys.COLLECTION_NAMES, name, record["uuid"])
        _link(pipe, COLLECTION, record, score)
        pipe.sadd(keys.shard_collections(shard_of(record["uuid"], shards)), record["uuid"])
        _link(pipe, TOKEN, token, score)
        return record

    return await _transact(redis, create, keys.COLLECTION_NAMES)


async def _claim_name(pipe: Pipeline, name: str, owner: str | None = None) -> None:
    taken_by = await pipe.hget(keys.COLLECTION_NAMES, name)
    if taken_by is not None and _str(taken_by) != owner:
        raise ValidationError("A collection with this name exists already.", details={"name": "already taken"})


async def rename_collection(redis: aioredis.Redis, collection_id: str, name: str) -> Record:
    async def rename(pipe: Pipeline) -> Record:
        record = await get(pipe, COLLECTION, collection_id)
        await _claim_name(pipe, name, owner=collection_id)
        _multi(pipe)
        pipe.hdel(keys.COLLECTION_NAMES, record["name"])
        pipe.hset(keys.COLLECTION_NAMES, name, collection_id)
        pipe.hset(keys.collection(collection_id), "name", json.dumps(name))
        return {**record, "name": name}

    return await _transact(redis, rename, keys.COLLECTION_NAMES, keys.collection(collection_id))


async def create_child(redis: aioredis.Redis, kind: Kind, fields: Record) -> Record:
    """A new item or token under the parent named in `fields` (VALIDATION_ERROR if it is gone)."""
    parent = kind.parent
    assert parent is not None
    parent_id = fields[parent.name]
    score, created = _now()
    object_id = new_token() if kind is TOKEN else new_id()
    record = {kind.id_field: object_id, **fields, "created_at": created}

    async def create(pipe: Pipeline) -> Record:
        await get(pipe, parent, parent_id, field=parent.name)
        _multi(pipe)
        _link(pipe, kind, record, score)
        return record

    return await _transact(redis, create, parent.key(parent_id))


async def update(redis: aioredis.Redis, kind: Kind, object_id: str, fields: Record) -> Record:
    """Overwrites `fields` of an existing object (partial update); NotFound when it is gone."""

    async def write(pipe: Pipeline) -> Record:
        record = await get(pipe, kind, object_id)
        _multi(pipe)
        if fields:
            pipe.hset(kind.key(object_id), mapping=_encode(fields))  # type: ignore[arg-type]
        return {**record, **fields}

    return await _transact(redis, write, kind.key(object_id))


def picture_digest(data: bytes) -> str:
    """How an image's SHA-256 is kept: base64url, 43 characters. As hex (64, 66 as JSON) it would
    push the image's hash past Redis's compact-encoding limit for values (64 bytes) and add a third to
    what each image costs in Redis (measured over 10,000 images: 1,663 bytes an image, not 1,207)."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def digest_hex(kept: str) -> str:
    """A kept `picture_digest` as the hex the API shows (what `sha256sum` prints)."""
    return base64.urlsafe_b64decode(kept + "=").hex()


async def refuse_duplicate(redis: aioredis.Redis | Pipeline, collection_id: str, digest: str) -> None:
    """VALIDATION_ERROR when the collection has a reference image with exactly these bytes: a second
    copy, under another item, would shadow the first in every search (an exact copy only; a
    re-encoded picture is not caught)."""
    found = await redis.hget(keys.collection_pictures(collection_id), digest)
    if found is not None:
        image = _str(found)
        raise ValidationError(
            f"This picture is already reference image {image} of this collection; delete that one first "
            "to move it to another item.",
            details={"file": f"the same picture as image {image}"},
        )


async def create_image(
    redis: aioredis.Redis,
    *,
    image_id: str,
    item_id: str,
    recognisability: int,
    sha256: str,
    shards: int,
    part_images: int = 0,
) -> Record:
    """Records an image whose features are in the blob store and makes it searchable: its entry in
    its part's references and an `add` event on the part's shard's stream go atomically with the
    image itself. `sha256` is the `picture_digest` of its bytes (`refuse_duplicate`). The image goes
    to the collection's last part, or to a new one when that holds `part_images` (0: no limit;
    `shared.parts`)."""
    score, created = _now()

    async def create(pipe: Pipeline) -> Record:
        item = await get(pipe, ITEM, item_id, field="item")
        collection = item["collection"]
        await pipe.watch(keys.collection_pictures(collection), keys.collection(collection))
        await refuse_duplicate(pipe, collection, sha256)
        parts = int(json.loads(await pipe.hget(keys.collection(collection), "parts") or "1"))
        last = parts - 1
        opening = bool(part_images) and await pipe.hlen(keys.collection_references(collection, last)) >= part_images
        part = parts if opening else last
        record = {
            "uuid": image_id,
            "item": item_id,
            "collection": collection,
            "status": "indexed",
            "recognisability": recognisability,
            "sha256": sha256,
            "created_at": created,
            **({"part": part} if part else {}),
        }
        _multi(pipe)
        if opening:
            pipe.hset(keys.collection(collection), "parts", json.dumps(parts + 1))
            pipe.sadd(keys.shard_collections(shard_of(part_key(collection, part), shards)), part_key(collection, part))
        _link(pipe, IMAGE, record, score)
        pipe.hset(keys.collection_references(collection, part), image_id, item_id)
        pipe.hset(keys.collection_pictures(collection), sha256, image_id)
        event = IndexEvent(op="add", collection=part_key(collection, part), image=image_id, item=item_id)
        _publish(pipe, event, shards)
        return record

    return await _transact(redis, create, keys.item(item_id))


def _unlink_image(pipe: Pipeline, image: Record, shards: int) -> None:
    _unlink(pipe, IMAGE, image)
    part = int(image.get("part", 0))
    pipe.hdel(keys.collection_references(image["collection"], part), image["uuid"])
    if "sha256" in image:  # not recorded for images uploaded before it was
        pipe.hdel(keys.collection_pictures(image["collection"]), image["sha256"])
    event = IndexEvent(op="remove", collection=part_key(image["collection"], part), image=image["uuid"])
    _publish(pipe, event, shards)


async def delete_image(redis: aioredis.Redis, image_id: str, shards: int) -> Record:
    """Deletes an image and takes it out of the index; returns what it was."""
    return await _delete_one(redis, IMAGE, image_id, lambda pipe, image: _unlink_image(pipe, image, shards))


async def _delete_one(
    redis: aioredis.Redis, kind: Kind, object_id: str, unlink: Callable[[Pipeline, Record], None]
) -> Record:
    async def delete(pipe: Pipeline) -> Record:
        record = await get(pipe, kind, object_id)
        _multi(pipe)
        unlink(pipe, record)
        return record

    return await _transact(redis, delete, kind.key(object_id))


async def _children(pipe: Pipeline, kind: Kind, parent_id: str) -> list[Record]:
    """Reads (under WATCH of the parent's zset) every child of `parent_id`."""
    assert kind.siblings is not None
    await pipe.watch(kind.siblings(parent_id))
    ids = [_str(raw) for raw in await pipe.zrange(kind.siblings(parent_id), 0, -1)]
    children = []
    for child_id in ids:
        raw = await pipe.hgetall(kind.key(child_id))
        if raw:
            children.append(_decode(raw))
    return children


async def delete_item(redis: aioredis.Redis, item_id: str, shards: int) -> Record:
    """Deletes an item and its images (each taken out of the index); returns what it was."""

    async def delete(pipe: Pipeline) -> Record:
        item = await get(pipe, ITEM, item_id)
        images = await _children(pipe, IMAGE, item_id)
        _multi(pipe)
        for image in images:
            _unlink_image(pipe, image, shards)
        pipe.delete(keys.item_images(item_id))
        _unlink(pipe, ITEM, item)
        return item

    return await _transact(redis, delete, keys.item(item_id))


async def delete_collection(redis: aioredis.Redis, collection_id: str, shards: int) -> Record:
    """Deletes a collection with its items, images, tokens and references, and tells the workers of
    each of its parts to drop it (one `drop` event per part, not one `remove` per image)."""

    async def delete(pipe: Pipeline) -> Record:
        collection = await get(pipe, COLLECTION, collection_id)
        items = await _children(pipe, ITEM, collection_id)
        images = [image for item in items for image in await _children(pipe, IMAGE, item["uuid"])]
        tokens = await _children(pipe, TOKEN, collection_id)
        _multi(pipe)
        for kind, records in ((IMAGE, images), (ITEM, items), (TOKEN, tokens)):
            for record in records:
                _unlink(pipe, kind, record)
        parts = [part_key(collection_id, part) for part in range(int(collection.get("parts", 1)))]
        pipe.delete(
            *(keys.item_images(item["uuid"]) for item in items),
            keys.collection_items(collection_id),
            keys.collection_tokens(collection_id),
            *(keys.collection_references(collection_id, part) for part in range(len(parts))),
            keys.collection_pictures(collection_id),
        )
        pipe.hdel(keys.COLLECTION_NAMES, collection["name"])
        for key in parts:
            pipe.srem(keys.shard_collections(shard_of(key, shards)), key)
        _unlink(pipe, COLLECTION, collection)
        for key in parts:
            _publish(pipe, IndexEvent(op="drop", collection=key), shards)
        return collection

    return await _transact(redis, delete, keys.collection(collection_id))


async def delete_token(redis: aioredis.Redis, token: str) -> Record:
    """Revokes a token at once (the search path's cache trusts a lookup for under a second)."""
    return await _delete_one(redis, TOKEN, token, lambda pipe, record: _unlink(pipe, TOKEN, record))
