"""The catalogue's reads for the search path and atomicity, on fakeredis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import fakeredis
import pytest

from shared import catalog, keys
from shared.codec import decode_event
from shared.errors import NotFound, ValidationError
from shared.ids import new_id
from shared.parts import part_key
from shared.shards import shard_of

pytestmark = pytest.mark.anyio
SHARDS = 2


@pytest.fixture
async def redis() -> AsyncIterator[fakeredis.FakeAsyncRedis]:
    connection = fakeredis.FakeAsyncRedis()
    yield connection
    await connection.aclose()


async def item_in_new_collection(redis: fakeredis.FakeAsyncRedis, **fields: object) -> catalog.Record:
    collection = await catalog.create_collection(redis, "posters", SHARDS)
    return await catalog.create_child(
        redis, catalog.ITEM, {**catalog.ITEM_DEFAULTS, "collection": collection["uuid"], **fields}
    )


async def add_images(
    redis: fakeredis.FakeAsyncRedis, item: catalog.Record, count: int, part_images: int = 0
) -> list[catalog.Record]:
    return [
        await catalog.create_image(
            redis,
            image_id=new_id(),
            item_id=item["uuid"],
            recognisability=3,
            sha256=new_id(),
            shards=SHARDS,
            part_images=part_images,
        )
        for _ in range(count)
    ]


async def test_items_and_their_images_for_search_results(redis: fakeredis.FakeAsyncRedis) -> None:
    item = await item_in_new_collection(redis, name="poster", content={"k": [1, 2]}, trackable=True)
    images = await add_images(redis, item, 2)
    missing = new_id()
    found = await catalog.get_items(redis, [item["uuid"], missing, item["uuid"]])
    assert list(found) == [item["uuid"]]
    assert found[item["uuid"]]["content"] == {"k": [1, 2]} and found[item["uuid"]]["trackable"] is True
    assert await catalog.item_image_ids(redis, [item["uuid"], missing]) == {
        item["uuid"]: [i["uuid"] for i in images],
        missing: [],
    }


async def test_token_lookup_and_revocation(redis: fakeredis.FakeAsyncRedis) -> None:
    collection = await catalog.create_collection(redis, "posters", SHARDS)
    token = (await catalog.page(redis, catalog.TOKEN, offset=0, limit=10, parent=collection["uuid"]))[0][0]["token"]
    assert await catalog.token_grant(redis, token) == (collection["uuid"], None)
    await catalog.delete_token(redis, token)
    assert await catalog.token_grant(redis, token) is None
    with pytest.raises(NotFound):
        await catalog.delete_token(redis, token)


async def test_children_of_a_deleted_parent_are_refused(redis: fakeredis.FakeAsyncRedis) -> None:
    item = await item_in_new_collection(redis)
    await catalog.delete_collection(redis, item["collection"], SHARDS)
    with pytest.raises(ValidationError) as refused:
        await catalog.create_child(redis, catalog.TOKEN, {"collection": item["collection"]})
    assert refused.value.details == {"collection": "no such collection"}
    with pytest.raises(ValidationError):
        await add_images(redis, item, 1)
    streams = {keys.shard_events(shard).encode() for shard in range(SHARDS)}
    assert set(await redis.keys("*")) <= streams  # nothing but the event streams is left


async def test_concurrent_creates_with_one_name_yield_one_collection() -> None:
    """Each create runs on its own connection, so the WATCH on the names hash is what decides."""
    server = fakeredis.FakeServer()
    outcomes: list[str] = []

    async def create() -> None:
        connection = fakeredis.FakeAsyncRedis(server=server)
        try:
            await catalog.create_collection(connection, "same", SHARDS)
            outcomes.append("created")
        except ValidationError:
            outcomes.append("refused")
        finally:
            await connection.aclose()

    async with anyio.create_task_group() as tasks:
        for _ in range(8):
            tasks.start_soon(create)
    assert sorted(outcomes) == ["created"] + ["refused"] * 7


def events_of(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[str, str]]:
    return [(e.op, e.collection) for e in (decode_event(fields) for _, fields in entries)]


async def test_a_collection_fills_parts_in_order_and_each_is_sharded_on_its_own(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    item = await item_in_new_collection(redis)
    collection = item["collection"]
    images = await add_images(redis, item, 5, part_images=2)
    assert [image.get("part", 0) for image in images] == [0, 0, 1, 1, 2]
    assert (await catalog.get(redis, catalog.COLLECTION, collection))["parts"] == 3
    for part, expected in enumerate([images[:2], images[2:4], images[4:]]):
        stored = await redis.hkeys(keys.collection_references(collection, part))
        assert sorted(k.decode() for k in stored) == sorted(i["uuid"] for i in expected)
        key = part_key(collection, part)
        assert await redis.sismember(keys.shard_collections(shard_of(key, SHARDS)), key)

    await catalog.delete_image(redis, images[2]["uuid"], SHARDS)  # from part 1: its shard hears of it
    assert await redis.hlen(keys.collection_references(collection, 1)) == 1
    await catalog.delete_collection(redis, collection, SHARDS)
    streams = [keys.shard_events(shard).encode() for shard in range(SHARDS)]
    heard = [event for stream in streams for event in events_of(await redis.xrange(stream))]
    assert ("remove", part_key(collection, 1)) in heard
    assert {key for op, key in heard if op == "drop"} == {part_key(collection, part) for part in range(3)}
    assert set(await redis.keys("*")) <= set(streams)  # every part's references and shard entry gone
